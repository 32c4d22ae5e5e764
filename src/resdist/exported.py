"""Reading exported files: their operators (MindIR and ONNX), their input, and running them (MindIR with
MindSpore, ONNX with onnxruntime) on numpy batches. Imported by export (its after-write checks), quantize,
evaluate (``eval.py --mindir/--onnx``) and the tests."""
import os

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


def load_exported(path):
    """(predict, batch): ``predict`` maps a float32 NCHW numpy batch of any size to numpy logits, running an
    exported MindIR file with MindSpore or an ONNX file with onnxruntime, whose input has a fixed ``batch``
    dimension (smaller batches are padded, larger ones split)."""
    if not os.path.isfile(path):
        raise ConfigError(f"exported model {path} does not exist")
    if path.endswith(".mindir"):
        import mindspore as ms
        from mindspore import nn

        batch = mindir_input(path)[1][0]
        graph = nn.GraphCell(ms.load(path))

        def run(images):
            return graph(ms.Tensor(images)).asnumpy()
    elif path.endswith(".onnx"):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("running an ONNX file needs onnxruntime: pip install onnxruntime") from None
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name, batch = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]

        def run(images):
            return session.run(None, {name: images})[0]
    else:
        raise ConfigError(f"{path}: an exported model ends in .mindir or .onnx")

    def predict(images):
        out = []
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            padded = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            out.append(run(padded)[:len(chunk)])
        return np.concatenate(out)
    return predict, batch


def _mindir_graph(path):
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    return model.graph


def mindir_input(path):
    """(name, shape) of an exported MindIR file's input."""
    graph = _mindir_graph(path)
    return graph.input[0].name, [int(d) for d in graph.input[0].tensor[0].dims]


def mindir_output(path):
    """The shape of an exported MindIR file's output."""
    return [int(d) for d in _mindir_graph(path).output[0].tensor[0].dims]
