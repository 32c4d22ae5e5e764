"""Mixed precision for a whole training objective, teacher and student alike, keeping every Cell's attributes.

``ms.amp.auto_mixed_precision(net, "O2")`` returns a wrapper Cell without the network's methods (the RD objective
needs ``stage_channels``, ``stage_outputs_and_preact``, ...), and wrapping the student alone would feed fp16
student features into an fp32 teacher. So the same policy is applied here, in place, to the objective Cell that
holds student, teacher, connector and losses:

  O0  everything float32
  O2  convolutions, dense layers and activations in float16; BatchNorm in float32 (MindSpore's O2 black list)
  O3  everything in float16, BatchNorm included
  and at every level the losses in float32: loss Cells run in float32 and the objectives cast logits and
  features to float32 before any loss arithmetic (``to_loss_dtype``).

Parameters stay float32 (master weights, what the optimizer updates and checkpoints store); ``Cell.to_float``
casts them and the inputs where each Cell runs.
"""
import mindspore as ms
from mindspore import nn

LEVELS = ("O0", "O2", "O3")
NORMALISATION = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)
LOSSES = (nn.CrossEntropyLoss, nn.SoftmaxCrossEntropyWithLogits, nn.KLDivLoss, nn.MSELoss)


def apply_precision(objective, level):
    """Set the precision policy of ``level`` on ``objective`` and all its sub-Cells, in place; returns it."""
    if level not in LEVELS:
        raise ValueError(f"unknown amp_level '{level}'; choose one of {', '.join(LEVELS)}")
    if level == "O0":
        return objective
    for child in objective.cells():  # not the objective itself: its own constants and sums stay float32
        child.to_float(ms.float16)
    for _, cell in objective.cells_and_names():
        if isinstance(cell, LOSSES) or (level == "O2" and isinstance(cell, NORMALISATION)):
            cell.to_float(ms.float32)
    return objective


def to_loss_dtype(*tensors):
    """Cast logits or features to float32 before they enter a loss (a no-op under O0)."""
    out = tuple(t.astype(ms.float32) for t in tensors)
    return out if len(out) > 1 else out[0]
