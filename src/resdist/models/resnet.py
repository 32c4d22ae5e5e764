"""Residual networks and their shortcut-free "plain" twins.

A network is a stem, a list of stages and a head (global average pooling + classifier). A plain network is
the same architecture with the shortcut additions removed; its parameter names are the ResNet's, so a plain
network and its teacher share names for everything they share.

``ResNet`` provides the stage API Residual Distillation uses (``models.api.StagedNetwork`` lists it): e.g.
``forward_from_stage(f, k)`` runs stages k+1..S, pooling and classifier of *this* network on a feature ``f``
that may come from another network's stage k (k counted from 1). Every unit with convolutions lists its
(convolution, BatchNorm) attribute pairs in ``CONV_BN_PAIRS``: what BatchNorm folding, Dirac parametrisation
and the memory model walk.
"""
from mindspore import nn, ops
from mindspore.common.initializer import HeNormal

from .registry import register_model

# shortcut kinds of one block
IDENTITY, PROJECTION, NO_SHORTCUT = "identity", "projection", "none"
PLAIN_VARIANTS = ("full", "keep_downsample")
STEMS = ("imagenet", "cifar")


def conv(in_ch, out_ch, kernel, stride=1):
    # Kaiming-normal, fan-out, ReLU gain: the initialisation of torchvision and of the RD authors' code.
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, pad_mode="pad", padding=kernel // 2,
                     has_bias=False, weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


def bn(ch):
    return nn.BatchNorm2d(ch, momentum=0.9)  # MindSpore momentum 0.9 == PyTorch momentum 0.1


class Projection(nn.Cell):
    """1x1 conv + BN on the shortcut of a block that changes width or resolution."""
    CONV_BN_PAIRS = (("conv", "bn"),)

    def __init__(self, in_ch, out_ch, stride):
        super().__init__()
        self.conv = conv(in_ch, out_ch, 1, stride)
        self.bn = bn(out_ch)

    def construct(self, x):
        return self.bn(self.conv(x))


class Block(nn.Cell):
    """What both block types share: the optional shortcut and the final ReLU. ``CONV_BN_PAIRS``: the main path's
    (convolution, BatchNorm) attributes, in order."""
    CONV_BN_PAIRS = ()

    def _init_shortcut(self, in_ch, out_ch, stride, shortcut):
        self.relu = nn.ReLU()
        self.has_shortcut = shortcut != NO_SHORTCUT
        self.downsample = Projection(in_ch, out_ch, stride) if shortcut == PROJECTION else None

    def _add_shortcut(self, out, x):
        if self.has_shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return out

    def construct(self, x):
        return self.relu(self.preact(x))


class BasicBlock(Block):
    expansion = 1
    CONV_BN_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, in_ch, width, stride, shortcut):
        super().__init__()
        self.conv1 = conv(in_ch, width, 3, stride)
        self.bn1 = bn(width)
        self.conv2 = conv(width, width, 3)
        self.bn2 = bn(width)
        self._init_shortcut(in_ch, width, stride, shortcut)

    def preact(self, x):
        """The block's output before its final ReLU (what feature distillation compares)."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self._add_shortcut(self.bn2(self.conv2(out)), x)

    def last_bn(self):
        return self.bn2


class Bottleneck(Block):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), as torchvision and the RD authors' code."""
    expansion = 4
    CONV_BN_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, in_ch, width, stride, shortcut):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = conv(in_ch, width, 1)
        self.bn1 = bn(width)
        self.conv2 = conv(width, width, 3, stride)
        self.bn2 = bn(width)
        self.conv3 = conv(width, out_ch, 1)
        self.bn3 = bn(out_ch)
        self._init_shortcut(in_ch, out_ch, stride, shortcut)

    def preact(self, x):
        """The block's output before its final ReLU (what feature distillation compares)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self._add_shortcut(self.bn3(self.conv3(out)), x)

    def last_bn(self):
        return self.bn3


class Stem(nn.Cell):
    """ImageNet stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) or CIFAR stem (3x3/1 conv, BN, ReLU)."""
    CONV_BN_PAIRS = (("conv", "bn"),)

    def __init__(self, kind, out_ch):
        super().__init__()
        if kind not in STEMS:
            raise ValueError(f"unknown stem '{kind}'; choose one of {', '.join(STEMS)}")
        self.conv = conv(3, out_ch, 7, 2) if kind == "imagenet" else conv(3, out_ch, 3, 1)
        self.bn = bn(out_ch)
        self.relu = nn.ReLU()
        # One pixel of padding on every side, as torchvision: pad_mode="same" would pad bottom/right only and shift
        # the windows (converted torchvision weights would give other logits); pad_mode="pad" runs as
        # MaxPool3DWithArgmax and ops.pad as PadV3, neither of which MindSpore exports to ONNX; the Pad primitive
        # exports. Zero padding equals max-pool's -inf padding here because the input comes out of a ReLU (>= 0).
        self.pool = nn.MaxPool2d(3, 2, pad_mode="valid") if kind == "imagenet" else None
        self.pad = ops.Pad(((0, 0), (0, 0), (1, 1), (1, 1))) if kind == "imagenet" else None

    def construct(self, x):
        x = self.relu(self.bn(self.conv(x)))
        if self.pool is not None:
            x = self.pool(self.pad(x))
        return x


class GlobalAvgPool(nn.Cell):
    """(N, C, H, W) -> (N, C). Two means over one axis each: a ReduceMean that ONNX (opset 11) exports, and not a
    tuple of axes, whose first PyNative call under numpy 2 fails in MindSpore 2.10 (README, Known problems). A Cell
    rather than a function so that a simulated-INT8 network can quantize its input (``models.qat``)."""

    def construct(self, features):
        return ops.mean(ops.mean(features, 3), 2)


class ResNet(nn.Cell):
    """Stem -> stages -> head. ``residual=False`` builds the plain twin (see ``plain_variant``).

    plain_variant: ``full`` removes every shortcut (no projection convs either); ``keep_downsample`` keeps
    the projection shortcut of the stride-2 blocks (first block of stages 2..S) and removes all others, as the
    RD authors' released code does -- including ResNet-50's stage-1 projection (64->256 channels at stride 1),
    which their code removes too.
    """

    def __init__(self, block, depths, widths, num_classes=1000, stem="imagenet", stem_width=None,
                 residual=True, plain_variant="full"):
        super().__init__()
        if plain_variant not in PLAIN_VARIANTS:
            raise ValueError(f"unknown plain_variant '{plain_variant}'; choose one of {', '.join(PLAIN_VARIANTS)}")
        self.residual = residual
        stem_width = stem_width or widths[0]
        self.stem = Stem(stem, stem_width)
        in_ch = stem_width
        stages = []
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                needs_projection = stride != 1 or in_ch != width * block.expansion
                if residual:
                    shortcut = PROJECTION if needs_projection else IDENTITY
                elif plain_variant == "keep_downsample" and stride != 1:
                    shortcut = PROJECTION
                else:
                    shortcut = NO_SHORTCUT
                blocks.append(block(in_ch, width, stride, shortcut))
                in_ch = width * block.expansion
            stages.append(nn.SequentialCell(blocks))
        self.stages = nn.CellList(stages)
        self.num_stages = len(stages)
        self.last_stage_depth = depths[-1]
        self.relu = nn.ReLU()
        self.num_features = in_ch
        self.stage_channels = [w * block.expansion for w in widths]
        self.pool = GlobalAvgPool()
        self.fc = nn.Dense(in_ch, num_classes)

    def forward_features(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, features):
        return self.fc(self.pool(features))

    def construct(self, x):
        return self.forward_head(self.forward_features(x))

    def stage_outputs(self, x):
        """Outputs of stages 1..S, as a tuple (the last is ``forward_features(x)``)."""
        outs = ()
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            outs = outs + (x,)
        return outs

    def forward_from_stage(self, features, k):
        """Run stages k+1..S, pooling and classifier on the output of stage k (1 <= k <= S)."""
        if k == self.num_stages:
            return self.forward_head(features)
        return self.forward_head(self.relu(self.preact_from_stage(features, k)))

    def preact_from_stage(self, features, k):
        """Run stages k+1..S on the output of stage k (1 <= k < S); return the last block's pre-ReLU output."""
        x = features
        for i in range(k, self.num_stages - 1):
            x = self.stages[i](x)
        last = self.stages[self.num_stages - 1]
        for j in range(self.last_stage_depth - 1):
            x = last[j](x)
        return last[self.last_stage_depth - 1].preact(x)

    def stage_outputs_and_preact(self, x):
        """(outputs of stages 1..S-1, pre-ReLU output of the last stage): one forward pass serving both the
        mixed paths (which start from the stage outputs) and feature distillation (which uses the pre-ReLU
        feature)."""
        outs = ()
        x = self.stem(x)
        for i in range(self.num_stages - 1):
            x = self.stages[i](x)
            outs = outs + (x,)
        return outs, self.preact_from_stage(x, self.num_stages - 1)

    def last_bn(self):
        """The BatchNorm that produces the last pre-ReLU feature (its gamma/beta give the distillation margin)."""
        return self.stages[self.num_stages - 1][self.last_stage_depth - 1].last_bn()


# ImageNet-style families: basic blocks (18/34) or bottlenecks (50), widths 64-512.
_IMAGENET_FAMILY = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3))}
# He et al. CIFAR family: 3 stages of n basic blocks, widths 16/32/64, depth 6n+2. Depth 8 (one block a stage) is
# not in their table: it is the smallest member, for quick trials and the test suite (compiles in half the time).
_CIFAR_DEPTHS = (8, 20, 32, 44, 56, 110)


def _imagenet_family(depth, residual, num_classes, stem="imagenet", plain_variant="full"):
    block, depths = _IMAGENET_FAMILY[depth]
    return ResNet(block, depths, (64, 128, 256, 512), num_classes, stem=stem, residual=residual,
                  plain_variant=plain_variant)


def _cifar_family(depth, residual, num_classes, stem="cifar", plain_variant="full"):
    if stem != "cifar":
        raise ValueError(f"{'resnet' if residual else 'plain'}{depth} is a CIFAR network: it has only the cifar stem")
    n = (depth - 2) // 6
    # The block that widens a stage uses a projection (1x1 conv + BN) shortcut (He et al.'s option B).
    return ResNet(BasicBlock, (n, n, n), (16, 32, 64), num_classes, stem="cifar", residual=residual,
                  plain_variant=plain_variant)


def _register(name, builder, depth, residual, family):
    def factory(num_classes, **kwargs):
        return builder(depth, residual, num_classes, **kwargs)

    factory.__name__ = name
    factory.__doc__ = f"{'ResNet' if residual else 'Plain CNN'}-{depth}" + (
        "" if residual else " (the ResNet with its shortcuts removed; see plain_variant)")
    register_model(factory, residual=residual, family=family, teacher=None if residual else f"resnet{depth}",
                   default_num_classes=10 if family == "cifar" else 1000)


for _depth in _IMAGENET_FAMILY:
    _register(f"resnet{_depth}", _imagenet_family, _depth, True, "imagenet")
    _register(f"plain{_depth}", _imagenet_family, _depth, False, "imagenet")
for _depth in _CIFAR_DEPTHS:
    _register(f"resnet{_depth}", _cifar_family, _depth, True, "cifar")
    _register(f"plain{_depth}", _cifar_family, _depth, False, "cifar")
