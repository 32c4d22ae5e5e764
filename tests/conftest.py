import os
import sys

# Before MindSpore is imported anywhere: the CPU settings train.py makes (see resdist.runtime).
from resdist import runtime

runtime.prefer_fast_cpu_kernels()
runtime.prefer_blocking_host_dispatch("CPU")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
CIFAR10_DIR = os.path.join(SHARED_DATA, "cifar-10-batches-bin")
JPEG_DIR = os.path.join(SHARED_DATA, "cifar10-jpeg-mini")
# CI sets this: there the real files must be present, and a test that would skip for want of them fails instead
REQUIRE_SHARED = os.environ.get("RESDIST_REQUIRE_SHARED_DATA") == "1"
sys.path.insert(0, ROOT)  # train.py / eval.py are importable as modules


@pytest.fixture(autouse=True)
def pynative_cpu():
    """Tests run eagerly on CPU unless they compile on purpose."""
    import mindspore as ms

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    _absorb_numpy_notice_once()
    yield


_ABSORBED = []


def _absorb_numpy_notice_once():
    """The first eager operation of a process under NumPy 2 fails in MindSpore 2.10 (runtime.absorb_numpy_abi_notice,
    which train.py runs too): done once here, so that no test's first operation is that one, whatever the order."""
    if not _ABSORBED:
        runtime.absorb_numpy_abi_notice()
        _ABSORBED.append(True)


def _shared(path):
    if os.path.isdir(path):
        return path
    message = f"needs the real data in {path}, which is not beside this clone"
    if REQUIRE_SHARED:
        pytest.fail(message + " (RESDIST_REQUIRE_SHARED_DATA=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_cifar10():
    return _shared(CIFAR10_DIR)


@pytest.fixture(scope="session")
def real_jpegs():
    return _shared(JPEG_DIR)


def write_cifar10(folder, seed=0):
    """CIFAR-10 in the official binary layout (data_batch_1..5.bin, 10,000 records each: a label byte and the
    R, G, B planes of a 32x32 image), with random pixels and labels; MindSpore's reader needs full files."""
    from resdist.data import CIFAR10_RECORD

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(1, 6):
        records = rng.integers(0, 256, (10000, CIFAR10_RECORD), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, 10000)
        records.tofile(os.path.join(folder, f"data_batch_{i}.bin"))
    return folder


def write_image_folder(folder, classes=10, train_per_class=50, val_per_class=10, size=32, seed=0):
    """An ImageNet-style folder (train/<class>/*.jpg, val/<class>/*.jpg) of random JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            d = os.path.join(folder, split, f"class{c:02d}")
            os.makedirs(d, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(d, f"{i}.jpg"), quality=90)
    return folder


@pytest.fixture(scope="session")
def made_cifar10(tmp_path_factory):
    return write_cifar10(str(tmp_path_factory.mktemp("made") / "cifar-10-batches-bin"))


@pytest.fixture(scope="session")
def made_jpegs(tmp_path_factory):
    return write_image_folder(str(tmp_path_factory.mktemp("made") / "jpeg-mini"))


@pytest.fixture(params=["made", "real"])
def cifar10_dir(request):
    """Both a CIFAR-10 folder the tests write themselves and the real one (skipped where it is absent)."""
    return request.getfixturevalue(f"{request.param}_cifar10")


@pytest.fixture(params=["made", "real"])
def jpeg_dir(request):
    return request.getfixturevalue(f"{request.param}_jpegs")
