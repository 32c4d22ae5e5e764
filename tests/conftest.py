import os
import sys

# Before MindSpore is imported anywhere: the CPU settings train.py makes (see resdist.runtime).
from resdist import runtime

runtime.prefer_fast_cpu_kernels()
runtime.prefer_blocking_host_dispatch("CPU")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
CIFAR10_DIR = os.path.join(SHARED_DATA, "cifar-10-batches-bin")
JPEG_DIR = os.path.join(SHARED_DATA, "cifar10-jpeg-mini")
sys.path.insert(0, ROOT)  # train.py / eval.py are importable as modules


@pytest.fixture(autouse=True)
def pynative_cpu():
    """Tests run eagerly on CPU unless they compile on purpose."""
    import mindspore as ms

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
