"""What a network must provide to be trained, distilled and deployed here (``ResNet`` is the one
implementation). To add an architecture (say a VGG-style plain network and its residual twin): build it as stem ->
stages -> head with these members, give each unit with convolutions a ``CONV_BN_PAIRS`` tuple of its
(convolution, BatchNorm) attribute names (and make the blocks ``models.resnet.Block`` subclasses if Dirac
parametrisation should reach them), then register the factories with ``register_model(fn, residual=...,
family=..., teacher=...)``. The RD step (``distill/rd.py``) uses only the stage members below."""
from typing import Protocol, runtime_checkable


@runtime_checkable
class StagedNetwork(Protocol):
    residual: bool              # has shortcut additions
    num_stages: int             # S
    stage_channels: list        # output channels of stages 1..S: a student's must equal its teacher's
    num_features: int           # channels of the last stage's output (what the classifier sees)

    def construct(self, x):
        """Logits."""

    def forward_features(self, x):
        """The last stage's output (timm's name)."""

    def forward_head(self, features):
        """Global average pooling and the classifier (``fc``) on ``forward_features``'s output."""

    def stage_outputs(self, x):
        """Outputs of stages 1..S, as a tuple."""

    def forward_from_stage(self, features, k):
        """Stages k+1..S and the head of *this* network on a feature of stage k's shape (another network's)."""

    def preact_from_stage(self, features, k):
        """Stages k+1..S on a stage-k feature, returning the last block's output before its final ReLU."""

    def stage_outputs_and_preact(self, x):
        """(outputs of stages 1..S-1, the last block's pre-ReLU output): one pass for RD's paths and FD."""

    def last_bn(self):
        """The BatchNorm producing that pre-ReLU feature (its gamma/beta set feature distillation's margin)."""
