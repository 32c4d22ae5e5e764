"""Dirac-parametrised convolutions (as in the RD authors' ImageNet student, after DiracNets):

    W_eff = diag(alpha) * delta + diag(beta) * W,   alpha = 1, beta = 0.1 per output channel at init,

delta the identity kernel. They train like a conv with a built-in identity path and fold into an ordinary conv
for deployment (``deployable_params``), so the deployed student is a plain network again.
"""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .resnet import Block

NO_DECAY_SUFFIXES = (".dirac_alpha", ".dirac_beta")  # the paper applies no weight decay to alpha and beta


def identity_kernel(shape):
    out_ch, in_ch, kh, kw = shape
    delta = np.zeros(shape, np.float32)
    for i in range(min(out_ch, in_ch)):
        delta[i, i, kh // 2, kw // 2] = 1.0
    return delta


class DiracConv2d(nn.Cell):
    """Replaces an ``nn.Conv2d`` (no bias, pad mode 'pad'); keeps its weight as W and its name ``weight``."""

    def __init__(self, conv, alpha=1.0, beta=0.1):
        super().__init__()
        # a device-side copy: Tensor.copy() goes through numpy, which fails in a fresh process under numpy 2
        self.weight = Parameter(ops.deepcopy(conv.weight.value()), name="weight")
        out_ch = self.weight.shape[0]
        self.dirac_alpha = Parameter(Tensor(np.full(out_ch, alpha, np.float32)), name="dirac_alpha")
        self.dirac_beta = Parameter(Tensor(np.full(out_ch, beta, np.float32)), name="dirac_beta")
        self.delta = Tensor(identity_kernel(tuple(self.weight.shape)))
        self.stride = conv.stride[-1] if isinstance(conv.stride, tuple) else conv.stride
        self.padding = conv.padding[0] if isinstance(conv.padding, tuple) else conv.padding

    def effective_weight(self):
        return self.dirac_alpha.reshape(-1, 1, 1, 1) * self.delta + self.dirac_beta.reshape(-1, 1, 1, 1) * self.weight

    def construct(self, x):
        return ops.conv2d(x, self.effective_weight(), None, self.stride, "pad", self.padding)


def initial_scales(keep_function):
    """(alpha, beta) at the start: 0, 1 keeps a pretrained W's function; 1, 0.1 for training from scratch."""
    return (0.0, 1.0) if keep_function else (1.0, 0.1)


def dirac_record(from_pretrained):
    """What a Dirac run's checkpoints record under "dirac" (best.ckpt and final.ckpt hold folded convolutions, so
    only the record says how the network was trained)."""
    alpha, beta = initial_scales(from_pretrained)
    start = f"alpha {alpha:g}, beta {beta:g}" + (" (the pretrained weights)" if from_pretrained else "")
    return f"W_eff = diag(alpha) * delta + diag(beta) * W, from {start}; folded in the network files"


def refresh_parameter_names(net):
    """Give every parameter its path in ``net`` as name; graph compilation needs unique names."""
    for name, param in net.parameters_and_names():
        param.name = name


def apply_dirac(net, keep_function=False):
    """Swap the convolutions inside every block of ``net`` for Dirac-parametrised ones (stem and projection
    shortcuts stay ordinary). Returns ``net``.

    ``keep_function``: start at alpha 0, beta 1, so that W_eff = W and ``net`` computes what it computed before
    (a pretrained network being fine-tuned); the default alpha 1, beta 0.1 turns W into a small perturbation of
    the identity, right for a network trained from scratch and wrong for one whose W already works."""
    alpha, beta = initial_scales(keep_function)
    for _, cell in list(net.cells_and_names()):
        if isinstance(cell, Block):  # the main path of each block
            for attr, _ in cell.CONV_BN_PAIRS:
                setattr(cell, attr, DiracConv2d(getattr(cell, attr), alpha, beta))
    refresh_parameter_names(net)
    return net


def deployable_params(net):
    """{name: Tensor} of ``net`` with Dirac convolutions folded into plain conv weights: loads straight into
    the network without Dirac parametrisation (``create_model(arch)``)."""
    return fold_state({name: param.value() for name, param in net.parameters_and_names()})


def is_dirac_state(state):
    """Whether ``state`` (a checkpoint as read) is a Dirac run's training state, with alpha and beta unfolded."""
    return any(name.endswith(".dirac_alpha") for name in state)


def fold_state(state):
    """``state`` ({name: Tensor}: a network's parameters, or a checkpoint as read) with each Dirac convolution's
    weight, dirac_alpha and dirac_beta folded into one plain weight; a Dirac run's training state (last.ckpt,
    epoch_NNNN.ckpt) then loads into the network without Dirac parametrisation."""
    folded = dict(state)
    for name in [n for n in state if n.endswith(".dirac_alpha")]:
        path = name[:-len(".dirac_alpha")]
        weight = state[f"{path}.weight"].asnumpy()
        alpha, beta = (folded.pop(f"{path}.{key}").asnumpy().reshape(-1, 1, 1, 1) for key in ("dirac_alpha",
                                                                                              "dirac_beta"))
        folded[f"{path}.weight"] = Tensor(alpha * identity_kernel(weight.shape) + beta * weight, ms.float32)
    return folded
