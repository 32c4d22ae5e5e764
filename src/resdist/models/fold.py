"""The inference network: every convolution followed by BatchNorm becomes one convolution with a bias.

At inference BatchNorm is an affine map per channel, y = gamma * (x - mean) / sqrt(var + eps) + beta, so
conv -> BN equals one convolution with weight W * s and bias beta - mean * s, s = gamma / sqrt(var + eps).
What is deployed is then convolutions (with bias), ReLU, pooling and the classifier only -- and, for a plain
network, no addition of two feature maps. Dirac-parametrised convolutions are already ordinary convolutions in
the deployable checkpoint (``models.dirac.deployable_params``).
"""
import copy

import mindspore as ms
import numpy as np
from mindspore import nn

from .dirac import refresh_parameter_names


def folded_conv(conv, bn):
    """One nn.Conv2d with bias equal to ``bn(conv(x))`` in inference mode."""
    scale = bn.gamma.asnumpy() / np.sqrt(bn.moving_variance.asnumpy() + bn.eps)
    weight = conv.weight.asnumpy() * scale.reshape(-1, 1, 1, 1)
    bias = bn.beta.asnumpy() - bn.moving_mean.asnumpy() * scale
    if conv.has_bias:
        bias = bias + conv.bias.asnumpy() * scale
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    pad_mode=conv.pad_mode, padding=conv.padding, dilation=conv.dilation, group=conv.group,
                    has_bias=True, weight_init=ms.Tensor(weight.astype(np.float32)),
                    bias_init=ms.Tensor(bias.astype(np.float32)))
    return out


def fold_batchnorm(net):
    """A copy of ``net`` for inference, with each conv -> BN pair folded into one convolution (the BN becomes an
    identity, which leaves no node in the exported graph). ``net`` itself is not changed."""
    folded = copy.deepcopy(net)
    folded.set_train(False)
    for _, cell in folded.cells_and_names():
        for conv_name, bn_name in getattr(cell, "CONV_BN_PAIRS", ()):  # stem, blocks, projections
            conv, bn = getattr(cell, conv_name, None), getattr(cell, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(cell, conv_name, folded_conv(conv, bn))
                setattr(cell, bn_name, nn.Identity())
    refresh_parameter_names(folded)  # new convolutions: unique names for graph compilation
    left = [n for n, c in folded.cells_and_names() if isinstance(c, nn.BatchNorm2d)]
    if left:
        raise ValueError(f"BatchNorm layers not preceded by a known convolution were left unfolded: {left[:3]}")
    return folded
