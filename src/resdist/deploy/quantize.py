"""INT8 post-training quantization: an INT8 ONNX model with onnxruntime's own tools, and the calibration files and
configuration of MindSpore Lite's full quantization (``converter_lite``, which does not install here).

ONNX, run here (``export.py --file_format ONNX --quantize int8 --calib_data DIR``):
  float ONNX (export.py writes opset 11)
  -> opset 13 (``onnx.version_converter``): a per-channel DequantizeLinear needs its ``axis`` attribute
  -> ``onnxruntime.quantization.quantize_static``: QDQ format, weights per output channel (int8; uint8 in the
     first convolution by default, see below), activations uint8 (default) or int8, calibrated on images of the
     data set's training split, evaluation transform
  -> reloaded by onnxruntime and compared with the float model on the calibration images.

Why uint8 activations by default: onnxruntime's x86 CPU provider (1.32) turns a QDQ graph with uint8 activations
into QLinearConv and, for a ResNet's shortcut additions, QLinearAdd throughout. With int8 activations it keeps
every shortcut Add, and the convolutions that read the additions' outputs, in float between DequantizeLinear and
QuantizeLinear nodes (bench/int8.py counts them): the INT8 ResNet then runs slower than the float one, a plain
network does not (it has no Add). NPUs that want symmetric int8 activations: ``quant_activations: int8``.

Why uint8 weights in the first convolution (``first_conv_weights: uint8``, default): on x86 CPUs without VNNI
(AVX2, AVX-512 before VNNI) onnxruntime's integer convolutions add pairs of uint8 x int8 products in 16 bits,
which saturate when large weights meet large activations. The first convolution reads the image, a dense,
full-range input, and that is where it happens (later layers read ReLU outputs, mostly small); with uint8
weights onnxruntime takes its uint8 x uint8 kernel there, which does not saturate, at full 8-bit precision.
Measured on an AVX2-only machine (docs/deployment.md, "INT8"): the converged ResNet-20 scores 87.92% in float,
86.56% in INT8 with int8 weights throughout, 87.84% when the same file is computed without this CPU's integer
kernels (as a CPU with VNNI or an NPU computes it), and 87.90% with the first convolution's weights in uint8.
onnxruntime's own remedy, 7-bit weights everywhere (``reduce_range``), cost the short study's plain-56 0.3-0.4
points more. ``first_conv_weights: int8`` keeps symmetric int8 weights throughout, for runtimes that want them.
"""
import os
import re

import numpy as np

from ..errors import ConfigError
from ..fsutil import published

OPSET = 13
# The INT8 model passes its after-write check when its top-1 class agrees with the float model's on at least this
# share of held-out images (as many as calibrate it, from the validation split: docs/deployment.md); the logit
# difference is reported, not bounded: INT8 rounding moves every logit a little.
MIN_TOP1_AGREEMENT = 0.95
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd", "QGemm",
                 "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
ONNX_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
LITE_METHODS = {"minmax": "MAX_MIN", "entropy": "KL", "percentile": "REMOVAL_OUTLIER"}


def require_onnx():
    try:
        import onnx
        import onnxruntime  # noqa: F401  (quantize_static runs the model to calibrate)
    except ImportError:
        raise ConfigError("INT8 quantization needs the onnx and onnxruntime packages: "
                          "pip install -e '.[quant]'") from None
    return onnx


def read_float_onnx(path):
    """The ONNX model at ``path``, checked to be one export.py could have written and not yet quantized.
    Returns (model, input name, input shape, number of classes)."""
    onnx = require_onnx()
    if not os.path.isfile(path):
        raise ConfigError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(path)
    except Exception as exc:  # the protobuf decoder's errors have no common base class
        raise ConfigError(f"{path} is not a readable ONNX file ({type(exc).__name__}); export it again with "
                          f"export.py --file_format ONNX") from None
    quantized = sorted({n.op_type for n in model.graph.node} & QUANTIZED_OPS)
    if quantized:
        raise ConfigError(f"{path} is already quantized (it has {', '.join(quantized)} nodes); quantize the float "
                          f"model export.py wrote")
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ConfigError(f"{path} has {len(inputs)} inputs and {len(model.graph.output)} outputs; a classifier "
                          f"exported by export.py has one of each")
    shape = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    classes = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(shape) != 4 or min(shape) < 1 or len(classes) != 2 or classes[1] < 1:
        raise ConfigError(f"{path}: input shape {shape} / output shape {classes} is not a fixed-size image "
                          f"classifier (N, 3, H, W) -> (N, classes) as export.py writes")
    return model, inputs[0].name, shape, classes[1]


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over an array, in the model's fixed batch size (the last
    batch is filled up with the first images: repeating an image does not move a min/max or histogram much)."""

    def __init__(self, images, batch, input_name):
        n = -(-len(images) // batch) * batch
        padded = np.concatenate([images] * -(-n // len(images)))[:n]
        self._batches = iter([{input_name: padded[i:i + batch]} for i in range(0, n, batch)])

    def get_next(self):
        return next(self._batches, None)


def first_conv_weight(model):
    """The weight initializer of the convolution that reads the graph's input (None if no convolution does)."""
    inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    return next((n.input[1] for n in model.graph.node if n.op_type == "Conv" and n.input[0] in inputs), None)


ACTIVATION_TYPES = {"uint8": "QUInt8", "int8": "QInt8", "uint16": "QUInt16"}  # uint16: bench/int8_settings.py
WEIGHT_TYPES = {"int8": "QInt8", "int16": "QInt16"}


def quantize_onnx(float_path, int8_path, images, activations="uint8", method="minmax", first_conv_weights="uint8",
                  weights="int8", float_nodes=()):
    """Write the INT8 (QDQ) version of the float ONNX model ``float_path`` to ``int8_path``, calibrated on
    ``images``; per-channel int8 weights (``first_conv_weights`` uint8 or int8 in the convolution reading the
    input), ``activations`` uint8 or int8. The opset-13 copy is written beside ``int8_path`` and removed.
    For studies of where accuracy goes (export.py uses neither): ``weights`` int16 or ``activations`` uint16
    (16 bits for one of them), ``float_nodes`` (names of convolutions left in float).
    Returns the first convolution's weight type as written (None: no convolution reads the input)."""
    onnx = require_onnx()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model, input_name, shape, _ = read_float_onnx(float_path)
    converted = int8_path + ".opset13.onnx"
    model = onnx.version_converter.convert_version(model, OPSET)
    onnx.save(model, converted)
    first = first_conv_weight(model)
    overrides = {}
    if first and first_conv_weights == "uint8" and weights == "int8":  # per output channel, as every other weight
        overrides[first] = [{"quant_type": QuantType.QUInt8, "axis": 0}]
    reader, ranges = _Batches(images, shape[0], input_name), None
    try:
        if method == "entropy":
            reader, ranges = None, entropy_ranges(converted, reader, int8_path, activations)
        quantize_static(converted, int8_path, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=getattr(QuantType, WEIGHT_TYPES[weights]),
                        activation_type=getattr(QuantType, ACTIVATION_TYPES[activations]),
                        calibrate_method=getattr(CalibrationMethod, ONNX_METHODS[method]),
                        nodes_to_exclude=list(float_nodes), extra_options={"TensorQuantOverrides": overrides},
                        calibration_cache_path=ranges)
    finally:
        for leftover in (converted, converted + ".data", ranges):
            if leftover and os.path.exists(leftover):
                os.remove(leftover)
    return (first_conv_weights if weights == "int8" else weights) if first else None


# Entropy (KL) calibration: histograms of ENTROPY_BINS bins over [-max |x|, max |x|], searched for the range that
# loses least when held in as many quantized bins as the activation type gives it (docs/deployment.md, "INT8").
ENTROPY_BINS = 2048


def entropy_ranges(model_path, reader, int8_path, activations):
    """Calibrate ``model_path`` by onnxruntime's entropy calibrator with enough histogram bins to choose a range,
    writing the ranges where ``quantize_static(calibration_cache_path=...)`` reads them; returns that path.
    Why not ``quantize_static(calibrate_method=Entropy)`` alone: it passes no bin counts, and the calibrator's
    defaults (128 bins, 128 quantized bins) leave the KL search one candidate, the full range: MinMax's."""
    from pathlib import Path

    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    if activations not in ("uint8", "int8"):
        raise ConfigError(f"entropy calibration is for 8-bit activations, not {activations}")
    # uint8 activations follow a ReLU: their 256 levels cover the positive half of the symmetric histogram
    quantized_bins = 512 if activations == "uint8" else 256
    augmented, ranges = int8_path + ".calibration.onnx", int8_path + ".ranges.json"
    try:
        calibrator = create_calibrator(Path(model_path), None, augmented_model_path=augmented,
                                       calibrate_method=CalibrationMethod.Entropy,
                                       extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": quantized_bins})
        calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), ranges)
    finally:
        for leftover in (augmented, augmented + ".data"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return ranges


def conv_node_names(path):
    """The names of the ONNX model's convolutions, in graph order (what ``float_nodes`` takes)."""
    return [n.name for n in require_onnx().load(path).graph.node if n.op_type == "Conv"]


def compare_with_float(float_predict, int8_predict, images, labels=None):
    """How far the INT8 model's logits are from the float model's on ``images``; with ``labels``, both models'
    top-1 accuracy (%) on them too."""
    reference, quantized = float_predict(images), int8_predict(images)
    diff = float(np.abs(quantized - reference).max())
    out = {"images": len(images), "max_abs_diff": diff,
           "max_abs_logit": float(np.abs(reference).max()),
           "top1_agreement": float((quantized.argmax(1) == reference.argmax(1)).mean())}
    if labels is not None:
        out.update(float_top1=100.0 * float((reference.argmax(1) == labels).mean()),
                   int8_top1=100.0 * float((quantized.argmax(1) == labels).mean()))
    return out


# --- MindSpore Lite full quantization (converter_lite --configFile) ----------------------------------------------

def lite_config(input_name, calib_dir, calib_size, method="minmax"):
    """converter_lite's full-quantization configuration (MindSpore Lite docs, "Quantization": the sections
    [common_quant_param], [data_preprocess_param], [full_quant_param]) for BIN calibration files."""
    return "\n".join([
        "# MindSpore Lite full (weights and activations) INT8 quantization; written by scripts/run_convert_lite.sh",
        "[common_quant_param]",
        "quant_type=FULL_QUANT",
        "bit_num=8",
        "",
        "[data_preprocess_param]",
        "# one .bin file per calibration image: the preprocessed float32 input buffer, NHWC",
        f"calibrate_path={input_name}:{os.path.abspath(calib_dir)}",
        f"calibrate_size={calib_size}",
        "input_type=BIN",
        "",
        "[full_quant_param]",
        f"activation_quant_method={LITE_METHODS[method]}",
        "bias_correction=true",
        "per_channel=true",
        "",
    ])


def write_calibration_bins(images, folder, layout="nhwc"):
    """One float32 .bin file per image: NHWC for converter_lite (its default input layout for 4-D BIN data), NCHW
    for Ascend's AMCT (``amct_onnx calibration --data_dir``, the ONNX model's own layout)."""
    os.makedirs(folder)
    for i, image in enumerate(images):
        data = image.transpose(1, 2, 0) if layout == "nhwc" else image
        np.ascontiguousarray(data, np.float32).tofile(os.path.join(folder, f"{i:05d}.bin"))


def prepare_lite_full_quant(mindir, calib_dir, output, dataset="", calib_size=512, method="minmax",
                            val_split="auto", layout="nhwc"):
    """The files ``converter_lite --configFile`` needs for a full-quantization INT8 ``.ms`` of ``mindir``:
    ``<output>.calibration/`` (one .bin a calibration image) and ``<output>.full_quant.cfg``. Both are made anew
    each time (written aside, then renamed into place). Returns the config file's path."""

    from ..data import calibration_images, guess_dataset
    from .exported import mindir_io

    if not os.path.isfile(mindir):
        raise ConfigError(f"model file {mindir} does not exist")
    if not os.path.isdir(calib_dir):
        raise ConfigError(f"calibration data folder {calib_dir} does not exist; pass the training data set folder")
    dataset = dataset or guess_dataset(calib_dir)
    if not dataset:
        raise ConfigError(f"{calib_dir} is neither a CIFAR binary folder nor an image folder (train/<class>/); "
                          f"pass --dataset cifar10|cifar100|imagefolder")
    try:
        input_name, shape, output_shape = mindir_io(mindir)
    except Exception as exc:  # protobuf decode errors have no common base class
        raise ConfigError(f"{mindir} is not a readable MindIR file ({type(exc).__name__}); export it again with "
                          f"export.py --file_format MINDIR") from None
    if len(shape) != 4 or len(output_shape) != 2:
        raise ConfigError(f"{mindir}: input shape {shape} -> output {output_shape} is not an image classifier "
                          f"((N, 3, H, W) -> (N, classes))")
    num_classes = output_shape[1]
    folder, config = output + ".calibration", output + ".full_quant.cfg"
    if os.path.lexists(folder):  # replaced whole below: only if it holds nothing but an earlier run's .bin files
        foreign = sorted(f for f in os.listdir(folder) if not re.fullmatch(r"\d{5}\.bin", f)) \
            if os.path.isdir(folder) and not os.path.islink(folder) else [os.path.basename(folder)]
        if foreign:
            raise ConfigError(f"{folder} exists and holds what this script did not write ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}); it would be replaced: move it, or choose "
                              f"another output name")
    images, _ = calibration_images(dataset, calib_dir, shape, num_classes, calib_size, val_split)
    with published(config) as config_staging, published(folder, replace_folder=True) as staging:
        write_calibration_bins(images, staging, layout)
        with open(config_staging, "w", encoding="utf-8") as f:
            # converter_lite names a MindIR input by its parameter (the part after the graph's "scope:" prefix)
            f.write(lite_config(input_name.rsplit(":", 1)[-1], folder, len(images), method))
    return config


def main(argv=None):
    """``python -m resdist.deploy.quantize``: what run_convert_lite.sh --quant int8 runs before converter_lite."""
    import argparse
    import sys

    from ..errors import UserError

    parser = argparse.ArgumentParser(description="Write MindSpore Lite's full-quantization (INT8) calibration "
                                                 "files and configuration for a MindIR model.")
    parser.add_argument("--mindir", required=True, help="the float MindIR file (export.py --file_format MINDIR)")
    parser.add_argument("--calib_dir", required=True, help="the training data set folder (CIFAR binary files or "
                                                           "an image folder with train/<class>/)")
    parser.add_argument("--output", required=True, help="path without suffix of the .ms model to come")
    parser.add_argument("--dataset", default="", help="cifar10, cifar100 or imagefolder (default: from the folder)")
    parser.add_argument("--calib_size", type=int, default=512, help="calibration images (default 512)")
    parser.add_argument("--calib_method", default="minmax", choices=sorted(LITE_METHODS),
                        help="activation ranges: minmax (MAX_MIN), entropy (KL), percentile (REMOVAL_OUTLIER)")
    parser.add_argument("--val_split", default="auto", help="held-out validation split kept out of calibration")
    parser.add_argument("--layout", default="nhwc", choices=("nhwc", "nchw"),
                        help="layout of the .bin files: nhwc for converter_lite (default), nchw for Ascend's AMCT")
    args = parser.parse_args(argv)
    if args.calib_size < 1:
        parser.error("--calib_size must be >= 1")
    try:
        print(prepare_lite_full_quant(args.mindir, args.calib_dir, args.output, args.dataset, args.calib_size,
                                      args.calib_method, args.val_split, args.layout))
    except (UserError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
