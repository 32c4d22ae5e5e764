"""The objective protocol every training procedure follows, and plain supervised training.

An objective is a Cell ``(images, labels) -> (loss, logits, terms)``: ``terms`` are the loss's parts (named by
``term_names``) for the log, ``logits`` are the trained network's own. ``deployable`` is the network that is
evaluated and saved (a student, never its teacher); ``extra_state()`` the other trained parameters (connectors:
saved for --resume, never deployed); ``start_epoch(epoch)`` sets any per-epoch schedule and returns what it set,
for the log and metrics.json. ``objectives.make_objective`` builds one per procedure."""
from mindspore import nn

from .precision import to_loss_dtype


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
