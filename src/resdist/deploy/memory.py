"""Analytic inference cost of a network: the deployed graph in execution order (conv+BN+ReLU fused into one
operator, as after BatchNorm folding; a shortcut is an add+ReLU operator), tensor lifetimes, peak live
activation memory, activation traffic, FLOPs and parameters.

A tensor is allocated when its operator runs and freed after its last consumer; at each operator the live set is
every tensor allocated and not yet freed, the operator's inputs and output included. A ResNet block's input stays
live until the block's addition; in a plain network it is freed after the block's first convolution. That
difference is what removing shortcuts buys at inference.

    graph = inference_graph(create_model("resnet50"), batch=1, size=224)
    walk(graph)  # {"peak_bytes", "peak_op", "traffic_bytes", "shortcut_bytes_at_peak", ...}
"""
from dataclasses import dataclass, field

BYTES = 4  # float32


@dataclass
class Op:
    name: str
    inputs: list            # tensor names
    output: str
    shape: tuple            # output N, C, H, W
    flops: int = 0
    shortcut_inputs: list = field(default_factory=list)  # inputs that reach this op through a shortcut


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _conv_out(shape, conv):
    n, _, h, w = shape
    k, s = conv.kernel_size[0], conv.stride[0]
    pad = conv.padding if isinstance(conv.padding, int) else conv.padding[0]
    return n, conv.out_channels, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1


def _conv_flops(in_shape, out_shape, conv):
    k = conv.kernel_size[0]
    return 2 * out_shape[0] * out_shape[1] * out_shape[2] * out_shape[3] * in_shape[1] // conv.group * k * k


def inference_graph(net, batch=1, size=32):
    """The operators of a ResNet / plain network of this project (models/resnet.py), in execution order."""
    ops, shapes = [], {"image": (batch, 3, size, size)}

    def conv(name, x, conv_cell):
        out = _conv_out(shapes[x], conv_cell)
        ops.append(Op(name, [x], name, out, _conv_flops(shapes[x], out, conv_cell)))
        shapes[name] = out
        return name

    x = conv("stem", "image", net.stem.conv)
    if net.stem.pool is not None:
        n, c, h, w = shapes[x]
        out = (n, c, (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1)
        ops.append(Op("stem.pool", [x], "stem.pool", out))
        shapes["stem.pool"] = out
        x = "stem.pool"
    for i, stage in enumerate(net.stages):
        for j, block in enumerate(stage):
            p = f"s{i + 1}b{j + 1}"
            convs = [c for c, _ in block.CONV_BN_PAIRS]
            y = x
            for c in convs:
                y = conv(f"{p}.{c}", y, getattr(block, c))
            if block.has_shortcut:
                short = x
                if block.downsample is not None:
                    short = conv(f"{p}.proj", x, block.downsample.conv)
                    ops[-1].shortcut_inputs = [x]
                ops.append(Op(f"{p}.add", [y, short], f"{p}.add", shapes[y], numel(shapes[y]), [short]))
                shapes[f"{p}.add"] = shapes[y]
                y = f"{p}.add"
            x = y
    n, c = shapes[x][:2]
    ops.append(Op("pool", [x], "pool", (n, c, 1, 1), numel(shapes[x])))
    shapes["pool"] = (n, c, 1, 1)
    classes = net.fc.weight.shape[0]
    ops.append(Op("fc", ["pool"], "fc", (n, classes, 1, 1), 2 * n * c * classes))
    return ops


def walk(ops, inputs):
    """Liveness walk over ``ops`` (``inputs``: {name: shape} of the graph's inputs): peak live activation bytes
    (and the operator where it occurs), activation traffic (bytes read and written by the operators), how much of
    the peak is held by tensors waiting for a shortcut (its projection or addition), and FLOPs."""
    sizes = {op.output: numel(op.shape) * BYTES for op in ops}
    sizes.update({name: numel(shape) * BYTES for name, shape in inputs.items()})
    last_use = {}
    for i, op in enumerate(ops):
        for t in op.inputs:
            last_use[t] = i
    last_use[ops[-1].output] = len(ops) - 1
    shortcut_wait = {}  # tensor -> index of the shortcut operator (projection or addition) that keeps it alive
    for i, op in enumerate(ops):
        for t in op.shortcut_inputs:
            shortcut_wait[t] = i
    live, peak, peak_at, traffic, held = set(inputs), 0, None, 0, 0
    for i, op in enumerate(ops):
        live.add(op.output)
        current = sum(sizes[t] for t in live)
        if current > peak:
            # tensors live only because a shortcut (projection or addition, this one included) still needs them
            waiting = sum(sizes[t] for t in live if t in shortcut_wait and shortcut_wait[t] >= i
                          and last_use[t] == shortcut_wait[t] and t != op.output)
            peak, peak_at, held = current, op.name, waiting
        traffic += sum(sizes[t] for t in op.inputs) + sizes[op.output]
        live = {t for t in live if last_use.get(t, -1) > i}
    return {"peak_bytes": peak, "peak_op": peak_at, "traffic_bytes": traffic, "shortcut_bytes_at_peak": held,
            "flops": sum(op.flops for op in ops)}


def analyse(net, batch, size):
    graph = inference_graph(net, batch, size)
    result = walk(graph, {"image": (batch, 3, size, size)})
    result["params"] = int(sum(p.size for p in net.trainable_params()))
    result["additions"] = sum(op.name.endswith(".add") for op in graph)
    return result
