"""Checkpoints: atomic writes, clear errors for missing/corrupt/mismatched files, resumable training state.

Network weights are stored under the network's own parameter names (``stem.conv.weight``, ...), whatever
parent Cell the network sits in during training, so a saved network loads straight into
``create_model(arch)``. Training state adds the optimizer's slots (``moments.*``, ``global_step``) and
metadata (``epoch``, ``best_acc``, ``arch``, ...).
"""
import os

import numpy as np

OPTIMIZER_PREFIXES = ("moments.", "accum.", "stat.", "global_step", "momentum", "learning_rate")
META_KEYS = ("epoch", "best_acc", "num_classes")  # numbers saved with the weights by the trainer
TRAIN_STATE_PREFIX = "train_state."  # trained parameters that are not part of the deployed network


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the network; the message says which and why."""


def network_params(net):
    """{name relative to ``net``: Parameter}, independent of any parent Cell's prefix."""
    return dict(net.parameters_and_names())


def optimizer_params(optimizer, net):
    """The optimizer's own state (momentum buffers, step counter), not the network weights it updates."""
    own = {id(p) for p in net.get_parameters()}
    return {p.name: p for p in optimizer.get_parameters() if id(p) not in own and p.name != "learning_rate"}


def save(path, params, meta=None):
    """Write {name: Parameter|Tensor} (+ metadata) to ``path`` atomically: a crash never leaves a truncated
    file under the final name, and an existing file is replaced only once the new one is complete."""
    import mindspore as ms

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.partial.ckpt"
    entries = [{"name": name, "data": value} for name, value in params.items()]
    ms.save_checkpoint(entries, tmp, append_dict=dict(meta or {}))
    os.replace(tmp, path)


def read(path, what="checkpoint"):
    """Load a checkpoint file into {name: Parameter or str}. Raises CheckpointError if missing or corrupt."""
    import mindspore as ms

    if not path:
        raise CheckpointError(f"no {what} given")
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        return ms.load_checkpoint(path)
    except (ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{what} {path} cannot be read: it is corrupt, truncated or not a MindSpore "
                              f"checkpoint ({exc})") from None


def _describe(names, limit=5):
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_network(net, ckpt, what="checkpoint", path="", arch=None):
    """Copy the weights of ``net`` from ``ckpt`` (a dict from ``read``). Every parameter of ``net`` must be
    present with the same shape; extra entries are allowed only for optimizer state and metadata."""
    import mindspore as ms

    params = network_params(net)
    stored = {k: v for k, v in ckpt.items() if isinstance(v, ms.Tensor)}  # Parameters too; not str metadata
    missing = [n for n in params if n not in stored]
    shape_bad = [f"{n} {tuple(stored[n].shape)} vs {tuple(params[n].shape)}"
                 for n in params if n in stored and tuple(stored[n].shape) != tuple(params[n].shape)]
    unexpected = [n for n in stored if n not in params and not n.startswith(OPTIMIZER_PREFIXES)
                  and not n.startswith(TRAIN_STATE_PREFIX) and n not in META_KEYS]
    if missing or shape_bad or unexpected:
        saved_arch = ckpt.get("arch")
        parts = []
        if isinstance(saved_arch, str) and arch and saved_arch != arch:
            parts.append(f"it was saved from '{saved_arch}', not '{arch}'")
        if shape_bad:
            parts.append(f"shape mismatch (checkpoint vs network): {_describe(shape_bad, 3)}")
        if missing:
            parts.append(f"missing from the checkpoint: {_describe(missing)}")
        if unexpected:
            parts.append(f"not in the network: {_describe(unexpected)}")
        raise CheckpointError(f"{what} {path} does not match the network {arch or ''}: " + "; ".join(parts)
                              + ". Check --arch, --num_classes, --stem and --plain_variant against how it was "
                                "trained.")
    for name, param in params.items():
        param.set_data(ms.Tensor(stored[name].asnumpy(), param.dtype))


def load_extra_state(params, ckpt, path=""):
    """Restore trained non-deployed parameters (e.g. RD connectors) saved under TRAIN_STATE_PREFIX."""
    import mindspore as ms

    for name, param in params.items():
        key = TRAIN_STATE_PREFIX + name
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} has no '{key}': it was not saved by this procedure "
                                  f"(resume needs the last.ckpt of the same run)")
        param.set_data(ms.Tensor(ckpt[key].asnumpy(), param.dtype))


def load_optimizer(optimizer, net, ckpt, path=""):
    import mindspore as ms

    for name, param in optimizer_params(optimizer, net).items():
        if name not in ckpt:
            raise CheckpointError(f"checkpoint {path} has no optimizer state '{name}': it is not a training "
                                  f"checkpoint of this run (use --resume with a last.ckpt or epoch checkpoint)")
        value = ckpt[name].asnumpy()
        if value.shape != tuple(param.shape):
            raise CheckpointError(f"checkpoint {path}: optimizer state '{name}' has shape {value.shape}, "
                                  f"expected {tuple(param.shape)}")
        param.set_data(ms.Tensor(value, param.dtype))


def meta_value(ckpt, key, default=None):
    """A metadata entry saved with ``save(..., meta=...)`` (numbers come back as 0-d Parameters)."""
    value = ckpt.get(key, default)
    if value is None or isinstance(value, (str, int, float)):
        return value
    return np.asarray(value.asnumpy()).item()


class CheckpointManager:
    """Training state (weights, optimizer, extra trained parameters) in last.ckpt every epoch and in the last N
    epoch_NNNN.ckpt files: what --resume reads. The deployable network alone (Dirac folded, no optimizer) in
    best.ckpt on a new best validation accuracy: what eval, export and users load."""

    def __init__(self, directory, keep_max=3):
        self.directory, self.keep_max = directory, keep_max

    @property
    def last(self):
        return os.path.join(self.directory, "last.ckpt")

    @property
    def best(self):
        return os.path.join(self.directory, "best.ckpt")

    def save_epoch(self, epoch, train_state, deploy_params, meta, is_best):
        save(self.last, train_state, meta)
        if is_best:
            save(self.best, deploy_params, meta)
        if self.keep_max > 0:
            save(os.path.join(self.directory, f"epoch_{epoch:04d}.ckpt"), train_state, meta)
            epochs = sorted(f for f in os.listdir(self.directory) if f.startswith("epoch_") and f.endswith(".ckpt"))
            for old in epochs[:-self.keep_max]:
                os.remove(os.path.join(self.directory, old))
