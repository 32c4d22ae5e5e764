"""Reading exported files: their operators, their input and output, export.py's record in them, and running
them (MindIR with MindSpore, ONNX with onnxruntime) on numpy batches. Imported by export (its after-write
checks), quantize, evaluate (``eval.py --mindir/--onnx``) and the tests."""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


def graph_ops(path):
    """Operator types of an exported MindIR or ONNX file, in graph order (None for ONNX without the onnx
    package: pip install -e ".[onnx]")."""
    if file_format(path) == "mindir":
        return _mindir_ops(_mindir_model(path))
    try:
        import onnx
    except ImportError:
        return None
    return [node.op_type for node in onnx.load(path, load_external_data=False).graph.node]


RECORD_PREFIX = "resdist."  # export.py's record of the network, in the file (MindIR user_info, ONNX metadata,
#                             MNN bizCode)
FLAG = {"mindir": "--mindir", "onnx": "--onnx", "mnn": "--mnn"}
NAMES = {"mindir": "MindIR", "onnx": "ONNX", "mnn": "MNN"}


@dataclass
class Exported:
    """An exported model loaded for inference, and what the file declares about itself."""
    format: str            # "mindir", "onnx" or "mnn"
    predict: object        # float32 NCHW numpy batch of any size -> numpy logits
    batch: int             # the file's fixed batch dimension (smaller batches are padded, larger ones split)
    input_shape: list
    num_classes: int
    record: dict           # export.py's record (arch, plain_variant, stem, ...) without the prefix; {} if none
    ops: list              # operator types in graph order; None where they cannot be read (ONNX without onnx)

    @property
    def residual(self):
        """The graph adds tensors (shortcuts; a plain network's export has none); None: unknown."""
        return None if self.ops is None else "Add" in self.ops


def file_format(path):
    """"mindir" or "onnx" from the file's first byte, not its name: both are protocol buffers whose field 1 is
    the IR version, text in MindIR (0x0a) and an integer in ONNX (0x08). None for anything else (a .mnn file
    starts with a FlatBuffers offset, at least 32 for MNN's Net table)."""
    with open(path, "rb") as f:
        return {b"\x0a": "mindir", b"\x08": "onnx"}.get(f.read(1))


def load_exported(path, expected=None, optimize=True):
    """Load an exported MindIR file with MindSpore, an ONNX file with onnxruntime or a .mnn file with MNN
    (``expected``: the format the caller was told it is; default: by its suffix). A missing, empty, corrupt or
    truncated file, or one of another format, is refused with one line. ``optimize=False`` (ONNX): onnxruntime's
    graph optimisation off, so an INT8 (QDQ) graph is computed as written, without fusing it into this CPU's
    integer kernels."""
    if not os.path.isfile(path):
        raise ConfigError(f"exported model {path} does not exist")
    expected = expected or next((f for f in FLAG if path.endswith("." + f)), None)
    if expected is None:
        raise ConfigError(f"{path}: an exported model ends in .mindir, .onnx or .mnn")
    found = file_format(path)
    if found != expected and (found or expected != "mnn" or os.path.getsize(path) == 0):
        what = "empty" if os.path.getsize(path) == 0 else (
            f"{NAMES[found]}, not {NAMES[expected]}: pass {FLAG[found]} {path}" if found else
            f"not a{'n' if expected != 'mindir' else ''} {NAMES[expected]} file")
        raise ConfigError(f"exported model {path} is {what}")
    try:
        if expected == "mnn":  # MNN's loader verifies the file (FlatBuffers) itself
            from . import mnn
            loaded = mnn.load(path)
        else:
            loaded = _load_mindir(path) if expected == "mindir" else _load_onnx(path, optimize)
    except ConfigError:
        raise
    except Exception as exc:  # the runtime's own parse errors; the file is untrusted input
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
        raise ConfigError(f"exported model {path} cannot be loaded ({reason}); it is corrupt or truncated: export "
                          f"it again") from None
    run, input_shape, output_shape, record, ops = loaded
    batch = input_shape[0]

    def predict(images):
        if tuple(images.shape[1:]) != tuple(input_shape[1:]):
            raise ConfigError(f"{path} takes inputs of shape {input_shape}, not {list(images.shape)}")
        out = []
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            padded = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            out.append(run(padded)[:len(chunk)])
        return np.concatenate(out)
    return Exported(expected, predict, batch, input_shape, int(output_shape[-1]),
                    {k[len(RECORD_PREFIX):]: v for k, v in record.items() if k.startswith(RECORD_PREFIX)}, ops)


def _load_mindir(path):
    import mindspore as ms
    from mindspore import nn

    model = _mindir_model(path)  # parsed once: shapes, record and operators
    _, input_shape, output_shape = _mindir_io(model)
    graph = nn.GraphCell(ms.load(path))
    return ((lambda images: graph(ms.Tensor(images)).asnumpy()), input_shape, output_shape, dict(model.user_info),
            _mindir_ops(model))


def _load_onnx(path, optimize=True):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("running an ONNX file needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return ((lambda images: session.run(None, {name: images})[0]), list(session.get_inputs()[0].shape),
            list(session.get_outputs()[0].shape), dict(session.get_modelmeta().custom_metadata_map),
            graph_ops(path))


def _mindir_model(path):
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    return model


def mindir_io(path):
    """(input name, input shape, output shape) of an exported MindIR file, read without loading it."""
    return _mindir_io(_mindir_model(path))


def _mindir_io(model):
    graph = model.graph
    return graph.input[0].name, [int(d) for d in graph.input[0].tensor[0].dims], \
        [int(d) for d in graph.output[0].tensor[0].dims]


def _mindir_ops(model):
    return [node.op_type.split("::")[-1].split(":")[0] for node in model.graph.node]
