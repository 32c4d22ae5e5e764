"""Distillation parts shared by the KD, FD and RD objectives: freezing a teacher, Hinton KD, and the
margin-based feature distillation of Heo et al. 2019 ("A Comprehensive Overhaul of Feature Distillation")."""
import math

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from .losses import Objective
from .models.resnet import conv
from .precision import to_loss_dtype


def freeze(teacher):
    """Make ``teacher`` a fixed function: no trainable parameters, BatchNorm always on running statistics
    (even when a parent Cell is put in training mode, which would otherwise switch it to batch statistics and
    update its moving averages)."""
    for param in teacher.get_parameters():
        param.requires_grad = False
    for _, cell in teacher.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            cell.use_batch_statistics = False
    teacher.set_train(False)
    return teacher


def eta_at(epoch, eta_min=0.5, eta_epochs=60):
    """Weight of the mixed-path losses at ``epoch`` (from 0): cosine from 1 to eta_min over eta_epochs."""
    if epoch >= eta_epochs:
        return float(eta_min)
    return eta_min + (1.0 - eta_min) * (1.0 + math.cos(math.pi * epoch / eta_epochs)) / 2.0


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


class KnowledgeDistillation(Objective):
    """Hinton KD: (1 - alpha) * CE(student) + alpha * T^2 * KL(teacher_T || student_T)."""
    term_names = ("ce", "kd")

    def __init__(self, student, teacher, alpha=0.9, temperature=4.0):
        super().__init__()
        self.student = student
        self.teacher = freeze(teacher)
        self.alpha, self.temperature = alpha, temperature
        self.ce = nn.CrossEntropyLoss()

    @property
    def deployable(self):
        return self.student

    def construct(self, images, labels):
        logits, teacher_logits = to_loss_dtype(self.student(images), ops.stop_gradient(self.teacher(images)))
        t = self.temperature
        log_p_student = ops.log_softmax(logits / t, 1)
        log_p_teacher = ops.log_softmax(teacher_logits / t, 1)
        kd = (ops.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum() / logits.shape[0] * (t * t)
        ce = self.ce(logits, labels)
        return (1.0 - self.alpha) * ce + self.alpha * kd, logits, (ce, kd)
