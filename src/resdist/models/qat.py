"""The network as its INT8 ONNX model computes it, in MindSpore: what quantization-aware training (``train.py --qat
true``) trains and what ``export.py --quantize int8`` checks a QAT model against.

``quantization_aware(net)`` folds BatchNorm into the convolutions (as export does) and fake-quantizes, as
``deploy.quantize`` quantizes with onnxruntime (MinMax calibration, QDQ):
  - activations uint8, one range per tensor, [min, max] of the float network's values on calibration images,
    widened to hold 0: the image, every convolution's input, the features before pooling, the classifier's input
    and its logits;
  - weights per output channel, symmetric: int8 in [-127, 127], scale max|w| / 127; the first convolution's in
    uint8 (zero point 128, scale 2 max|w| / 255), export's default ``first_conv_weights``.
Rounding uses the straight-through estimator: the forward pass rounds, the backward pass sees the identity, so
the float weights learn to sit well on the INT8 grid. Biases stay float (onnxruntime stores them in int32 at
input scale x weight scale: a rounding far below the weights'). Plain networks only: a ResNet's shortcut
additions are requantized too, which this simulation does not model.

A trained QAT network is saved in the ordinary checkpoint format (``ordinary_state``): each folded convolution's
weight, and its bias as a BatchNorm that computes the identity plus that bias, so eval.py and export.py load it
as any checkpoint of the architecture; export's calibration (MinMax on the same images) then gives the INT8 model
the ranges the simulation used.
"""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .fold import fold_batchnorm
from .resnet import GlobalAvgPool

# what a QAT run's checkpoints record (key ``quantization_aware``): the INT8 scheme they were trained for
RECORD = "int8: uint8 activations (MinMax), per-channel int8 weights, uint8 in the first convolution"
ACTIVATION_LEVELS = 255  # uint8
INT8_WEIGHT_LEVELS = 127  # symmetric int8: [-127, 127]


def straight_through(x, quantized):
    """``quantized`` forward, identity backward (the straight-through estimator): rounding and clipping have no
    useful gradient, so the float value takes the gradient of its quantized stand-in."""
    return x + ops.stop_gradient(quantized - x)


class ActivationQuant(nn.Cell):
    """uint8 fake quantization of one tensor with a range measured, not learned: ``observing`` (set by
    ``measure_ranges``) passes values through and widens ``range`` to hold them, as onnxruntime's MinMax
    calibrator does; otherwise values are rounded to the 256 levels of [range[0], range[1]]."""

    def __init__(self):
        super().__init__()
        self.range = Parameter(Tensor(np.zeros(2, np.float32)), name="range", requires_grad=False)
        self.observing = Parameter(Tensor(np.array(False)), name="observing", requires_grad=False)

    def construct(self, x):
        low = ops.minimum(self.range[0], ops.stop_gradient(ops.amin(x)))
        high = ops.maximum(self.range[1], ops.stop_gradient(ops.amax(x)))
        seen = ops.select(self.observing, ops.stack([low, high]), self.range)
        x = ops.depend(x, ops.assign(self.range, seen))
        low, high = ops.minimum(self.range[0], 0.0), ops.maximum(self.range[1], 0.0)
        scale = ops.maximum((high - low) / ACTIVATION_LEVELS, 1e-12)
        zero_point = ops.round(-low / scale)
        levels = ops.clip_by_value(ops.round(x / scale) + zero_point, 0.0, float(ACTIVATION_LEVELS))
        return ops.select(self.observing, x, straight_through(x, (levels - zero_point) * scale))


def fake_quant_weight(weight, uint8=False):
    """Per-output-channel symmetric fake quantization of a weight (axis 0), as onnxruntime quantizes it."""
    absmax = ops.stop_gradient(ops.amax(ops.abs(weight).reshape(weight.shape[0], -1), 1))
    shape = (-1,) + (1,) * (weight.ndim - 1)
    if uint8:  # levels 0..255 around zero point 128: -128..127 steps of 2 max|w| / 255
        scale, low, high = ops.maximum(absmax * 2 / 255, 1e-12).reshape(shape), -128.0, 127.0
    else:
        scale, low, high = ops.maximum(absmax / INT8_WEIGHT_LEVELS, 1e-12).reshape(shape), -127.0, 127.0
    return straight_through(weight, ops.clip_by_value(ops.round(weight / scale), low, high) * scale)


class QuantConv2d(nn.Cell):
    """A folded convolution (weight and bias) reading a uint8-quantized input with per-channel quantized weights.
    Its parameters keep the names ``weight`` and ``bias`` of the convolution it replaces."""

    def __init__(self, conv, uint8_weights=False):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.input_quant = ActivationQuant()
        self.uint8_weights = uint8_weights
        self.stride = conv.stride[-1] if isinstance(conv.stride, tuple) else conv.stride
        self.padding = conv.padding[0] if isinstance(conv.padding, tuple) else conv.padding
        self.group = conv.group

    def construct(self, x):
        # while ranges are measured the network is the float one, as onnxruntime calibrates the float model
        weight = ops.select(self.input_quant.observing, self.weight,
                            fake_quant_weight(self.weight, self.uint8_weights))
        out = ops.conv2d(self.input_quant(x), weight, None, self.stride, "pad", self.padding, 1, self.group)
        return out + self.bias.reshape(1, -1, 1, 1)


class QuantDense(nn.Cell):
    """The classifier: quantized input, per-output-unit int8 weights, quantized logits."""

    def __init__(self, dense):
        super().__init__()
        self.weight, self.bias = dense.weight, dense.bias
        self.input_quant, self.output_quant = ActivationQuant(), ActivationQuant()

    def construct(self, x):
        weight = ops.select(self.input_quant.observing, self.weight, fake_quant_weight(self.weight))
        out = ops.matmul(self.input_quant(x), weight.T) + self.bias
        return self.output_quant(out)


class QuantPool(nn.Cell):
    """Global average pooling of quantized features (onnxruntime quantizes the last ReLU's output and pools the
    dequantized values in float)."""

    def __init__(self, pool):
        super().__init__()
        self.pool = pool
        self.input_quant = ActivationQuant()

    def construct(self, x):
        return self.pool(self.input_quant(x))


def quantization_aware(net):
    """A copy of the plain network ``net`` with BatchNorm folded and every convolution, the pooling and the
    classifier fake-quantized (module docstring); parameters keep their names in ``net``, BatchNorm's gone.
    ``net`` itself is not changed. Its ranges are all zero until ``measure_ranges`` runs."""
    if getattr(net, "residual", False) or any(getattr(c, "has_shortcut", False) for _, c in net.cells_and_names()):
        raise ValueError("quantization-aware training simulates a plain network's INT8 graph; this network has "
                         "shortcuts, whose additions onnxruntime requantizes too")
    folded = fold_batchnorm(net)
    convs = [(cell, name) for _, cell in folded.cells_and_names()
             for name, child in list(cell.name_cells().items()) if isinstance(child, nn.Conv2d)]
    for i, (parent, name) in enumerate(convs):  # cells_and_names is in construction order: the stem's comes first
        setattr(parent, name, QuantConv2d(getattr(parent, name), uint8_weights=i == 0))
    for _, cell in list(folded.cells_and_names()):
        for name, child in list(cell.name_cells().items()):
            if isinstance(child, nn.Dense):
                setattr(cell, name, QuantDense(child))
            elif isinstance(child, GlobalAvgPool):
                setattr(cell, name, QuantPool(child))
    for name, param in folded.parameters_and_names():
        param.name = name  # unique names for graph compilation, the ranges' included
    return folded


def activation_quants(net):
    return [cell for _, cell in net.cells_and_names() if isinstance(cell, ActivationQuant)]


def measure_ranges(net, images, batch_size=64):
    """Set every activation range of the quantization-aware ``net`` from the float network's values on
    ``images`` (float32 NCHW, preprocessed as at inference), as export's MinMax calibration does."""
    quants = activation_quants(net)
    net.set_train(False)
    for quant in quants:
        quant.range.set_data(Tensor(np.zeros(2, np.float32)))
        quant.observing.set_data(Tensor(np.array(True)))
    try:
        for start in range(0, len(images), batch_size):
            net(Tensor(images[start:start + batch_size], ms.float32)).asnumpy()  # runs the batch before the next
    finally:
        for quant in quants:
            quant.observing.set_data(Tensor(np.array(False)))
    return {name[:-len(".range")]: tuple(float(v) for v in param.asnumpy())
            for name, param in net.parameters_and_names() if name.endswith(".range")}


def ordinary_state(qat_net, template):
    """{name: Tensor} of the quantization-aware network in the format of ``template`` (an unfolded network of the
    same architecture): each convolution's weight, and a BatchNorm computing the identity plus the folded bias
    (gamma 1, beta = bias, mean 0, variance 1 - eps), so that folding it again gives the same convolution."""
    trained = {name: param.asnumpy() for name, param in qat_net.parameters_and_names()}
    state = {}
    for path, cell in template.cells_and_names():
        for conv_name, bn_name in getattr(cell, "CONV_BN_PAIRS", ()):
            conv, bn = getattr(cell, conv_name, None), getattr(cell, bn_name, None)
            if conv is None or bn is None:
                continue
            conv_path, bn_path = (f"{path}.{n}" if path else n for n in (conv_name, bn_name))
            bias = trained[f"{conv_path}.bias"]
            state[f"{conv_path}.weight"] = trained[f"{conv_path}.weight"]
            state[f"{bn_path}.gamma"] = np.ones_like(bias)
            state[f"{bn_path}.beta"] = bias
            state[f"{bn_path}.moving_mean"] = np.zeros_like(bias)
            state[f"{bn_path}.moving_variance"] = np.full_like(bias, 1.0 - bn.eps)
    for name, _ in template.parameters_and_names():
        if name not in state:  # the classifier
            state[name] = trained[name]
    return {name: Tensor(value, ms.float32) for name, value in state.items()}
