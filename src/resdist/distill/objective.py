"""The objective protocol every training procedure follows, and plain supervised training.

An objective is a Cell ``(images, labels) -> (loss, logits, terms)``: ``terms`` are the loss's parts (named by
``term_names``) for the log, ``logits`` are the trained network's own. ``deployable`` is the network that is
evaluated and saved (a student, never its teacher); ``extra_state()`` the other trained parameters (connectors:
saved for --resume, never deployed); ``start_epoch(epoch)`` sets any per-epoch schedule and returns what it set,
for the log and metrics.json. ``builder.make_objective`` builds one per procedure."""
from mindspore import nn

from ..precision import to_loss_dtype


class Objective(nn.Cell):
    term_names = ()

    @property
    def deployable(self):
        raise NotImplementedError

    def extra_state(self):
        return {}

    def start_epoch(self, epoch):
        return {}


class CrossEntropyObjective(Objective):
    """Plain supervised training of one network (procedures ``teacher`` and ``plain``)."""
    term_names = ("ce",)

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.ce = nn.CrossEntropyLoss()

    @property
    def deployable(self):
        return self.net

    def construct(self, images, labels):
        logits = to_loss_dtype(self.net(images))
        ce = self.ce(logits, labels)
        return ce, logits, (ce,)


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
