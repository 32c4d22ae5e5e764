"""Training objectives. An objective is a Cell ``(images, labels) -> (loss, logits, terms)`` where ``terms`` is
a tuple of the loss's parts (named by ``term_names``) for the log, ``logits`` are the trained network's own,
and ``deployable`` is the network that gets evaluated and saved."""
from mindspore import nn

from .precision import to_loss_dtype


class CrossEntropyObjective(nn.Cell):
    """Plain supervised training of one network (procedures ``teacher`` and ``plain``)."""
    term_names = ("ce",)

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.ce = nn.CrossEntropyLoss()

    @property
    def deployable(self):
        return self.net

    def extra_state(self):
        return {}

    def construct(self, images, labels):
        logits = to_loss_dtype(self.net(images))
        ce = self.ce(logits, labels)
        return ce, logits, (ce,)
