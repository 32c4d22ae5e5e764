"""Starting from a pretrained network (``--pretrained_ckpt``), as mindcv's and timm's fine-tuning do: its weights
loaded (a classifier of another shape re-initialised), the stem and first stages optionally frozen, the rest of
the backbone optionally at a lower learning rate. Distinct from ``--resume`` (no optimizer state, epoch 0) and
``--teacher_ckpt`` (a frozen teacher)."""
import logging

from mindspore import nn

from .. import checkpoint as ckpt_io

logger = logging.getLogger("resdist")
CLASSIFIER = ("fc.weight", "fc.bias")


def load_pretrained(net, path, arch, expected, new_classifier=False):
    """Copy a pretrained checkpoint's weights into ``net`` (its recorded arch/variant/stem checked against
    ``expected``). A classifier of another shape (another number of classes), or any with ``new_classifier``
    (another task with as many classes), keeps ``net``'s fresh one and the log says so; every other missing or
    mis-shaped parameter is an error naming them."""
    state = ckpt_io.read(path, "pretrained checkpoint")
    fresh = dict(net.parameters_and_names())
    other = [n for n in CLASSIFIER if n in state and hasattr(state[n], "shape")
             and tuple(state[n].shape) != tuple(fresh[n].shape)]
    if other or new_classifier:
        why = f"{state['fc.bias'].shape[0]} classes in the checkpoint, {fresh['fc.bias'].shape[0]} here" if other \
            else "new_classifier=true"
        logger.info("pretrained %s: classifier re-initialised (%s)", path, why)
        state = {**state, **{n: fresh[n].value() for n in CLASSIFIER}}
    ckpt_io.load_network(net, state, "pretrained checkpoint", path, arch, expected)
    logger.info("pretrained %s: %d parameters loaded", path,
                len(fresh) - (len(CLASSIFIER) if other or new_classifier else 0))


def freeze_stages(net, k):
    """Freeze the stem and stages 1..k of ``net``: no gradient, BatchNorm on its running statistics (not
    updated). Returns the number of frozen parameters."""
    if not 0 <= k <= net.num_stages:
        raise ValueError(f"freeze_stages={k}, but {type(net).__name__} has stages 1..{net.num_stages}")
    if k == 0:
        return 0
    frozen = 0
    for part in [net.stem] + list(net.stages)[:k]:
        for param in part.get_parameters():
            param.requires_grad = False
            frozen += 1
        for _, cell in part.cells_and_names():
            if isinstance(cell, nn.BatchNorm2d):
                cell.use_batch_statistics = False
    return frozen


def backbone_parameters(net):
    """The parameters of ``net`` outside its classifier (what ``backbone_lr_scale`` multiplies), as ids: a
    wrapping Cell may rename parameters, never replace them."""
    return {id(p) for n, p in net.parameters_and_names() if n not in CLASSIFIER and not n.startswith("fc.")}
