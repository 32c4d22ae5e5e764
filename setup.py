"""Install with `pip install -e .` (add `.[test]` for the test tools)."""
from setuptools import find_packages, setup

setup(
    name="resdist",
    version="0.1.0",
    description="Residual Distillation (NeurIPS 2020) in MindSpore: train plain CNNs without shortcuts "
                "with the help of a frozen ResNet teacher.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    python_requires=">=3.9",
    install_requires=[
        # ms.set_device() needs 2.5; 2.10.0 is what the tests ran on. Ascend users install the build
        # matching their CANN inside this range.
        "mindspore>=2.5,<2.11",
        # verified: the whole test suite under 1.26.4 and 2.4.6 (scripts/test_numpy2.sh); README "Install"
        "numpy>=1.24,<2.5",
        "pyyaml>=5.4",
        "pillow>=9",
    ],
    extras_require={
        # onnxruntime: `eval.py --onnx` and the export checks (tested with 1.32.0); onnx: the network record
        # export.py writes into ONNX files (tested with 1.23.2)
        "onnx": ["onnxruntime>=1.16", "onnx>=1.14"],
        # INT8 ONNX export (`export.py --quantize int8`): onnxruntime's quantization tools need onnx
        # (tested with onnx 1.23.2, onnxruntime 1.32.0)
        "quant": ["onnxruntime>=1.16", "onnx>=1.14"],
        # MNN, a mobile inference engine: `export.py --file_format MNN`, `eval.py --mnn` (tested with 3.6.1). Only its
        # C extensions are used: its mnnconvert/mnnquant wrapper scripts phone home (src/resdist/deploy/mnn.py)
        "mnn": ["MNN>=3.6,<3.7"],
        # ruff: the linter .ci/run runs before the tests (its settings: pyproject.toml)
        "test": ["pytest>=7", "onnxruntime>=1.16", "onnx>=1.14", "MNN>=3.6,<3.7", "ruff>=0.4", "matplotlib>=3.5",
                 "pytest-xdist>=3"],
        # the benchmarks' and studies' plots (bench/plotting.py; tested with 3.11.2)
        "bench": ["matplotlib>=3.5"],
        # bench/transfer.py's downstream task: the handwritten digits bundled with scikit-learn (tested with 1.9.1)
        "transfer": ["scikit-learn>=1.0"],
    },
)
