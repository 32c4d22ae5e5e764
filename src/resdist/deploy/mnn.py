"""MNN (Alibaba's mobile inference engine; PyPI ``MNN``, the optional extra ``.[mnn]``): a ``.mnn`` file made from
an exported ONNX file, and run by MNN's own runtime, as a phone would run it.

Only MNN's C extensions are used: the converter ``_tools.mnnconvert`` and the runtime ``MNN.Interpreter``. The
package's command-line wrappers (``mnnconvert``, ``mnnquant``: ``MNN/tools/*.py``) import a logger that runs
``pip install`` and sends the machine's id and each conversion's details to a remote log service; nothing here
imports them (tests/test_mnn.py checks that a conversion installs nothing and imports no such module).

A ``.mnn`` file carries export.py's record of the network (arch, plain variant, classes, data set) as JSON in
the model's ``bizCode`` string, read back here without MNN, so that eval.py refuses a file of another network
as it does for MindIR and ONNX.
"""
import json
import os
import struct
import sys

from ..errors import ConfigError
from ..runtime import CapturedOutput

INSTALL = "pip install -e '.[mnn]'"


def require_mnn():
    """MNN's runtime module; a clear error where the optional extra is not installed."""
    try:
        with CapturedOutput(1):  # its import prints the CPU features it found
            import MNN
    except ImportError:
        raise ConfigError(f"a .mnn model needs MNN (Alibaba's mobile inference engine): {INSTALL}") from None
    return MNN


def convert_onnx(onnx_path, mnn_path, record=None):
    """Convert ``onnx_path`` to ``mnn_path`` with MNN's converter (its C extension, not the wrapper script),
    ``record`` ({key: text}) stored as JSON in the model's bizCode. Returns what the converter printed."""
    require_mnn()
    with CapturedOutput(1):
        import _tools  # MNN's converter, shipped beside the runtime in the same wheel

    argv = ["mnnconvert", "-f", "ONNX", "--modelFile", onnx_path, "--MNNModel", mnn_path,
            "--bizCode", json.dumps(record or {}, sort_keys=True)]
    with CapturedOutput(1) as quiet:
        ok = _tools.mnnconvert(argv)
    if not ok or not os.path.isfile(mnn_path) or os.path.getsize(mnn_path) == 0:
        last = [line for line in quiet.text.splitlines() if line.strip()][-1:] or ["no output"]
        raise ConfigError(f"MNN's converter could not convert {onnx_path} ({last[0][:200]})")
    return quiet.text


def read_record(path):
    """The bizCode string of a .mnn file (a FlatBuffers ``Net`` table whose first field it is), parsed as
    export.py's JSON record; {} where it is absent or not such a record. Read without MNN."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        table = struct.unpack_from("<I", data, 0)[0]
        vtable = table - struct.unpack_from("<i", data, table)[0]
        if struct.unpack_from("<H", data, vtable)[0] < 6:  # the vtable has no slot for field 0
            return {}
        field = struct.unpack_from("<H", data, vtable + 4)[0]
        if not field:
            return {}
        start = table + field + struct.unpack_from("<I", data, table + field)[0]
        length = struct.unpack_from("<I", data, start)[0]
        record = json.loads(data[start + 4:start + 4 + length].decode("utf-8"))
    except (struct.error, ValueError):  # ValueError: JSON and UTF-8 errors
        return {}
    return {str(k): str(v) for k, v in record.items()} if isinstance(record, dict) else {}


def _session(path, threads):
    """(MNN module, interpreter, session) for ``path`` on the CPU; MNN refuses an empty, corrupt or truncated
    file (its loader verifies the FlatBuffers data)."""
    MNN = require_mnn()
    with CapturedOutput(1):
        interpreter = MNN.Interpreter(path)
        session = interpreter.createSession({"numThread": threads, "precision": "high", "backend": "CPU"})
    return MNN, interpreter, session


def load(path, threads=1):
    """(run(images) -> logits, input shape, output shape, record, ops) of a .mnn file, as exported.load_exported
    wants them."""
    MNN, interpreter, session = _session(path, threads)
    source, sink = interpreter.getSessionInput(session), interpreter.getSessionOutput(session)
    input_shape, output_shape = list(source.getShape()), list(sink.getShape())

    def run(images):
        import numpy as np

        source.copyFrom(MNN.Tensor(tuple(images.shape), MNN.Halide_Type_Float,
                                   np.ascontiguousarray(images, np.float32), MNN.Tensor_DimensionType_Caffe))
        interpreter.runSession(session)
        out = interpreter.getSessionOutput(session)
        host = MNN.Tensor(out, MNN.Tensor_DimensionType_Caffe)
        out.copyToHostTensor(host)
        return np.array(host.getNumpyData(), np.float32).reshape(output_shape)
    return run, input_shape, output_shape, read_record(path), None


def session_memory_mb(path, threads=1):
    """The memory MNN's session plans for ``path`` (MB, weights included): MNN's own figure."""
    _, interpreter, session = _session(path, threads)
    return float(interpreter.getSessionInfo(session, 0))


MNN_METHODS = {"entropy": "KL", "minmax": "EMA"}  # MNN's feature methods for export.py's --calib_method


def quantize(float_mnn, int8_mnn, images, mean, std, method="entropy"):
    """An INT8 .mnn file of ``float_mnn`` by MNN's own post-training quantizer (its C extension), calibrated on
    ``images`` (float32 NCHW, normalised as at inference with ``mean``/``std`` on the 0-1 scale). MNN calibrates
    from image files: the images are written as lossless PNGs with the normalisation undone (exact: the pipeline
    normalises 8-bit pixels) and the normalisation goes into its config. Runs in a child process: MNN's quantizer
    aborts its process on input it cannot take (std::length_error when called as its wrapper script calls it)."""
    import subprocess

    import numpy as np
    from PIL import Image

    if method not in MNN_METHODS:
        raise ConfigError(f"MNN's quantizer calibrates with {' or '.join(MNN_METHODS)} (--calib_method), "
                          f"not {method}")
    folder = f"{int8_mnn}.calibration"
    os.makedirs(folder)
    pixels = images.transpose(0, 2, 3, 1) * (255 * np.asarray(std)) + 255 * np.asarray(mean)
    for i, image in enumerate(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)):
        Image.fromarray(image).save(os.path.join(folder, f"{i:05d}.png"))
    config = {"format": "RGB", "mean": [255 * m for m in mean], "normal": [1 / (255 * s) for s in std],
              "width": images.shape[3], "height": images.shape[2], "path": folder + os.sep,
              "used_image_num": len(images), "feature_quantize_method": MNN_METHODS[method],
              "weight_quantize_method": "MAX_ABS", "batch_size": min(32, len(images))}
    with open(f"{int8_mnn}.json", "w", encoding="utf-8") as f:
        json.dump(config, f)
    code = "import sys, _tools; _tools.mnnquant(sys.argv)"  # the argv form: the C extension's own
    done = subprocess.run([sys.executable, "-c", code, float_mnn, int8_mnn, f"{int8_mnn}.json"],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0 or not os.path.isfile(int8_mnn):
        last = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()][-1:] or ["no output"]
        raise ConfigError(f"MNN's quantizer failed on {float_mnn} (exit {done.returncode}: {last[0][:200]})")
    return done.stdout
