"""Export a trained network for deployment (what ``export.py`` runs).

MINDIR  MindSpore and MindSpore Lite (``converter_lite --fmk=MINDIR`` makes the mobile ``.ms`` file)
ONNX    onnxruntime, and Ascend's ATC with ``--framework=5`` (the ``.om`` file), opset 11
AIR     Ascend's ATC with ``--framework=1``; MindSpore writes AIR only on Ascend, and newer versions drop it

The exported graph is the inference network with BatchNorm folded into the convolutions (``fold``), so a plain
network deploys as convolutions with bias, ReLU, pooling and the classifier, and no shortcut addition. The file
is written under a temporary name and renamed, so a failure never leaves a half-written file under the final name,
and an existing file is replaced only with ``--overwrite``. After writing, the file is loaded back (MindIR by
MindSpore, ONNX by onnxruntime if installed) and its logits compared with the checkpoint network's.
"""
import logging
import os

import numpy as np

from . import checkpoint as ckpt_io
from .build import build_network, identity
from .config import ConfigError
from .data import native_image_size
from .fold import fold_batchnorm

logger = logging.getLogger("resdist")
SUFFIX = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}
TOLERANCE = 1e-4  # max |logit difference| between the exported file and the checkpoint network, float32


def checkpoint_num_classes(state, path):
    bias = state.get("fc.bias")
    if bias is None:
        raise ckpt_io.CheckpointError(f"checkpoint {path} has no classifier (fc.bias): not a network checkpoint of "
                                      f"this project")
    return int(bias.shape[0])


def input_shape(cfg):
    height = cfg.height or native_image_size(cfg.dataset) or cfg.image_size
    return cfg.batch_size, 3, height, cfg.width or height


def output_path(cfg):
    base = cfg.file_name or os.path.join(os.path.dirname(os.path.abspath(cfg.ckpt_file)), cfg.arch)
    for suffix in SUFFIX.values():  # `--file_name net.onnx` means net
        if base.lower().endswith(suffix):
            base = base[:-len(suffix)]
    return base + SUFFIX[cfg.file_format]


def check_output(path, overwrite):
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path) and not overwrite:
        raise ConfigError(f"{path} exists; pass --overwrite to replace it, or another --file_name")
    if not os.path.isdir(folder):
        raise ConfigError(f"output folder {folder} does not exist; create it or choose another --file_name")
    probe = os.path.join(folder, f".resdist_write_probe.{os.getpid()}")
    try:  # actually writing is the only test that holds for root too
        open(probe, "wb").close()
        os.remove(probe)
    except OSError as exc:
        raise ConfigError(f"output folder {folder} is not writable ({exc.strerror}); choose another --file_name") \
            from None


def load_checkpoint_network(cfg):
    """The network of ``cfg.arch`` with ``cfg.ckpt_file`` loaded (its recorded arch/variant/stem checked)."""
    state = ckpt_io.read(cfg.ckpt_file)
    num_classes = checkpoint_num_classes(state, cfg.ckpt_file)
    if cfg.num_classes and cfg.num_classes != num_classes:
        raise ConfigError(f"num_classes={cfg.num_classes} but checkpoint {cfg.ckpt_file} has a {num_classes}-class "
                          f"classifier")
    net = build_network(cfg, cfg.arch, num_classes)
    ckpt_io.load_network(net, state, "checkpoint", cfg.ckpt_file, cfg.arch, identity(cfg, cfg.arch))
    net.set_train(False)
    return net


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
        from mindspore.train import mind_ir_pb2

        model = mind_ir_pb2.ModelProto()
        with open(path, "rb") as f:
            model.ParseFromString(f.read())
        batch = int(model.graph.input[0].tensor[0].dims[0])
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


def export(cfg):
    """Export as ``cfg`` says; returns {"file", "format", "input_shape", "ops", "max_abs_diff" (or None)}."""
    import mindspore as ms

    if not cfg.ckpt_file:
        raise ConfigError("no checkpoint given: pass --ckpt_file PATH (a best.ckpt from train.py)")
    if cfg.file_format == "AIR" and cfg.device_target != "Ascend":
        raise ConfigError("AIR export needs MindSpore on an Ascend device (and newer MindSpore versions drop it); "
                          "here export ONNX and convert it with ATC --framework=5: "
                          "bash scripts/run_convert_om.sh MODEL.onnx SOC_VERSION")
    path = output_path(cfg)
    check_output(path, cfg.overwrite)
    net = load_checkpoint_network(cfg)
    deployed = fold_batchnorm(net) if cfg.fold_bn else net
    shape = input_shape(cfg)
    images = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    tmp_base = os.path.join(os.path.dirname(os.path.abspath(path)),
                            f".{os.path.basename(path)}.{os.getpid()}.partial")
    tmp = tmp_base + SUFFIX[cfg.file_format]
    try:
        ms.export(deployed, ms.Tensor(images), file_name=tmp_base, file_format=cfg.file_format)
        if not os.path.isfile(tmp):
            raise OSError(f"MindSpore wrote no {tmp}")
        if os.path.exists(path):  # --overwrite; exported files are read-only
            os.chmod(path, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.chmod(tmp, 0o600)
            os.remove(tmp)
        raise
    result = {"file": path, "format": cfg.file_format, "input_shape": list(shape), "ops": None,
              "max_abs_diff": None, "folded_bn": bool(cfg.fold_bn)}
    if cfg.file_format != "AIR":
        ops = graph_ops(path)
        result["ops"] = {op: ops.count(op) for op in sorted(set(ops))}
        try:
            exported = load_exported(path)[0](images)
            result["max_abs_diff"] = float(np.abs(exported - net(ms.Tensor(images)).asnumpy()).max())
        except ConfigError as exc:  # no onnxruntime: the file is written, the check is skipped
            logger.warning("%s; the exported file was not checked", exc)
    return result
