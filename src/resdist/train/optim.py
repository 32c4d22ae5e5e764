"""Learning-rate schedules (one value per step) and the SGD optimizer with optional no-decay groups."""
import math

import numpy as np

from ..models.dirac import NO_DECAY_SUFFIXES


def lr_per_step(base_lr, schedule, epochs, steps_per_epoch, milestones=(), gamma=0.1, warmup_epochs=0):
    """Learning rate of every training step: linear warm-up, then step decay at ``milestones`` (epochs)
    or cosine to 0. Returned as float32 array of length epochs * steps_per_epoch."""
    total = epochs * steps_per_epoch
    warmup = min(int(warmup_epochs * steps_per_epoch), total)
    lrs = np.empty(total, np.float32)
    for step in range(total):
        if step < warmup:
            lrs[step] = base_lr * (step + 1) / warmup
        elif schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            lrs[step] = 0.5 * base_lr * (1.0 + math.cos(math.pi * progress))
        elif schedule == "step":
            epoch = step // steps_per_epoch
            lrs[step] = base_lr * gamma ** sum(epoch >= m for m in milestones)
        else:
            raise ValueError(f"unknown lr schedule '{schedule}'; choose step or cosine")
    return lrs


def is_no_decay(name, exclude_bn_bias):
    """Dirac scales always (as the paper); BatchNorm scale/shift and biases if asked."""
    if name.endswith(NO_DECAY_SUFFIXES):
        return True
    return exclude_bn_bias and name.endswith((".gamma", ".beta", ".bias"))


def create_optimizer(params, lrs, momentum=0.9, nesterov=True, weight_decay=5e-4, exclude_bn_bias=False,
                     scaled=(), lr_scale=1.0):
    """SGD over ``params`` ({name: Parameter}) with a per-step learning-rate array; the parameters in ``scaled``
    (their ids) get ``lr_scale`` times it (fine-tuning's backbone)."""
    import mindspore as ms
    from mindspore import nn

    backbone = {n: p for n, p in params.items() if lr_scale != 1.0 and id(p) in scaled}
    rest = {n: p for n, p in params.items() if n not in backbone}
    groups = []
    for members, scale in ((rest, 1.0), (backbone, lr_scale)):
        for wd, chosen in ((weight_decay, [p for n, p in members.items() if not is_no_decay(n, exclude_bn_bias)]),
                           (0.0, [p for n, p in members.items() if is_no_decay(n, exclude_bn_bias)])):
            if chosen:
                group = {"params": chosen, "weight_decay": wd}
                if scale != 1.0:
                    group["lr"] = ms.Tensor((np.asarray(lrs) * scale).astype(np.float32))
                groups.append(group)
    return nn.SGD(groups, learning_rate=ms.Tensor(lrs), momentum=momentum, nesterov=nesterov and momentum > 0)
