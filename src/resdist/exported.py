"""Reading exported files: their operators (MindIR and ONNX), their input, and running them (MindIR with
MindSpore, ONNX with onnxruntime) on numpy batches. Imported by export (its after-write checks), quantize,
evaluate (``eval.py --mindir/--onnx``) and the tests."""
import os
from dataclasses import dataclass

import numpy as np

from .config import ConfigError


def graph_ops(path):
    """Operator types of an exported MindIR or ONNX file, in graph order."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".mindir"):
        from mindspore.train import mind_ir_pb2

        model = mind_ir_pb2.ModelProto()
        model.ParseFromString(data)
        return [node.op_type.split("::")[-1].split(":")[0] for node in model.graph.node]
    return onnx_op_types(data)


def _fields(buf):
    """Protocol-buffer wire format: yield (field number, wire type, value) of one message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i:i + length], i + length
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _varint(buf, i):
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def onnx_op_types(data):
    """Node operator types of an ONNX model (ModelProto.graph = 7, GraphProto.node = 1, NodeProto.op_type = 4),
    read from the wire format so that the ``onnx`` package (and the numpy it pulls in) is not needed."""
    graph = next(v for n, w, v in _fields(data) if n == 7 and w == 2)
    return [bytes(v).decode() for n, w, node in _fields(graph) if n == 1 and w == 2
            for m, w2, v in _fields(node) if m == 4 and w2 == 2]


RECORD_PREFIX = "resdist."  # export.py's record of the network, in the file (MindIR user_info, ONNX metadata)
FLAG = {"mindir": "--mindir", "onnx": "--onnx"}


@dataclass
class Exported:
    """An exported model loaded for inference, and what the file declares about itself."""
    format: str            # "mindir" or "onnx"
    predict: object        # float32 NCHW numpy batch of any size -> numpy logits
    batch: int             # the file's fixed batch dimension (smaller batches are padded, larger ones split)
    input_shape: list
    num_classes: int
    record: dict           # export.py's record (arch, plain_variant, stem, ...) without the prefix; {} if none
    residual: bool         # the graph adds tensors (shortcuts); a plain network's export has no Add


def file_format(path):
    """"mindir" or "onnx" from the file's first byte, not its name: both are protocol buffers whose field 1 is
    the IR version, text in MindIR (0x0a) and an integer in ONNX (0x08). None for anything else."""
    with open(path, "rb") as f:
        return {b"\x0a": "mindir", b"\x08": "onnx"}.get(f.read(1))


def load_exported(path, expected=None):
    """Load an exported MindIR file with MindSpore or an ONNX file with onnxruntime (``expected``: the format
    the caller was told it is; default: by its suffix). A missing, empty, corrupt or truncated file, or one of
    the other format, is refused with one line."""
    if not os.path.isfile(path):
        raise ConfigError(f"exported model {path} does not exist")
    expected = expected or ("mindir" if path.endswith(".mindir") else "onnx" if path.endswith(".onnx") else None)
    if expected is None:
        raise ConfigError(f"{path}: an exported model ends in .mindir or .onnx")
    found = file_format(path)
    if found != expected:
        name = {"mindir": "MindIR", "onnx": "ONNX"}
        what = "empty" if os.path.getsize(path) == 0 else (
            f"{name[found]}, not {name[expected]}: pass {FLAG[found]} {path}" if found else
            f"not a{'n' if expected == 'onnx' else ''} {name[expected]} file")
        raise ConfigError(f"exported model {path} is {what}")
    try:
        loaded = _load_mindir(path) if expected == "mindir" else _load_onnx(path)
    except ConfigError:
        raise
    except Exception as exc:  # the runtime's own parse errors; the file is untrusted input
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
        raise ConfigError(f"exported model {path} cannot be loaded ({reason}); it is corrupt or truncated: export "
                          f"it again") from None
    run, input_shape, output_shape, record = loaded
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
                    {k[len(RECORD_PREFIX):]: v for k, v in record.items() if k.startswith(RECORD_PREFIX)},
                    "Add" in graph_ops(path))


def _load_mindir(path):
    import mindspore as ms
    from mindspore import nn

    _, input_shape, output_shape = mindir_io(path)
    graph = nn.GraphCell(ms.load(path))
    return ((lambda images: graph(ms.Tensor(images)).asnumpy()), input_shape, output_shape,
            dict(_mindir_model(path).user_info))


def _load_onnx(path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("running an ONNX file needs onnxruntime: pip install onnxruntime") from None
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return ((lambda images: session.run(None, {name: images})[0]), list(session.get_inputs()[0].shape),
            list(session.get_outputs()[0].shape), dict(session.get_modelmeta().custom_metadata_map))


def _mindir_model(path):
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    return model


def mindir_io(path):
    """(input name, input shape, output shape) of an exported MindIR file, read without loading it."""
    graph = _mindir_model(path).graph
    return graph.input[0].name, [int(d) for d in graph.input[0].tensor[0].dims], \
        [int(d) for d in graph.output[0].tensor[0].dims]
