"""Feature distillation's parts, used by the FD and RD objectives: the margin-based partial L2 of Heo et al. 2019
("A Comprehensive Overhaul of Feature Distillation") and the connector mapping a student's feature to its teacher's."""
import math

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from ..models.resnet import conv
from ..precision import to_loss_dtype


def bn_margin(gamma, beta):
    """Per-channel margin m_c = E[x | x < 0] for x ~ N(beta, gamma^2): the expected negative response of a
    pre-ReLU feature produced by this BN (Heo et al.); -3|gamma| where that tail is negligible."""
    margins = []
    for s, m in zip(np.abs(np.asarray(gamma, np.float64)), np.asarray(beta, np.float64)):
        cdf = 0.5 * (1.0 + math.erf(-m / s / math.sqrt(2.0))) if s > 0 else 0.0
        if cdf > 0.001:
            margins.append(-s * math.exp(-(m / s) ** 2 / 2.0) / math.sqrt(2.0 * math.pi) / cdf + m)
        else:
            margins.append(-3.0 * s)
    return np.asarray(margins, np.float32)


def partial_l2(source, target, margin):
    """Heo et al.'s loss: squared error to max(target, margin), skipping positions where the student is
    already below a non-positive target; summed over C x H x W and averaged over the batch. Computed in float32
    whatever the network's precision (a float16 sum over C x H x W overflows)."""
    source, target = to_loss_dtype(source, target)
    target = ops.maximum(target, margin)
    mask = ops.logical_or(source > target, target > 0).astype(source.dtype)
    return (ops.square(source - target) * mask).sum() / source.shape[0]


class Connector(nn.Cell):
    """1x1 conv + BN mapping the student's feature into the teacher's (trained with the student)."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv = conv(in_ch, out_ch, 1)
        self.bn = nn.BatchNorm2d(out_ch, momentum=0.9)

    def construct(self, x):
        return self.bn(self.conv(x))


def margin_tensor(teacher):
    bn = teacher.last_bn()
    return Tensor(bn_margin(bn.gamma.asnumpy(), bn.beta.asnumpy()).reshape(1, -1, 1, 1), ms.float32)
