"""Checkpoints: atomic writes, clear errors for missing/corrupt/mismatched files, resumable training state.

Network weights are stored under the network's own parameter names (``stem.conv.weight``, ...), whatever
parent Cell the network sits in during training, so a saved network loads straight into
``create_model(arch)``. Training state adds the optimizer's slots (``moments.*``, ``global_step``) and
metadata (``epoch``, ``best_acc``, ``arch``, ...).
"""
import os

import numpy as np

from .errors import UserError
from .fsutil import staging_name

OPTIMIZER_PREFIXES = ("moments.", "accum.", "stat.", "global_step", "momentum", "learning_rate")
# numbers saved with the weights by the trainer; steps_per_epoch and schedule_epochs let a resume refuse a
# learning-rate schedule other than the one the run's optimizer state is a step of
META_KEYS = ("epoch", "best_acc", "num_classes", "steps_per_epoch", "schedule_epochs")
TRAIN_STATE_PREFIX = "train_state."  # trained parameters that are not part of the deployed network


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, unreadable or does not fit the network; the message says which and why."""


def file_sha256(path):
    """The sha256 of a file (what model cards and study records give for published checkpoints)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def network_params(net):
    """{name relative to ``net``: Parameter}, independent of any parent Cell's prefix."""
    return dict(net.parameters_and_names())


# SGD's per-parameter ``stat`` tensors, as large as the weights, hold 1 before the optimizer's first step and 0
# after it (MindSpore 2.10's SGD: the first step takes the gradient as its momentum, undamped): rebuilt from the
# step counter on restore instead of stored, a third of a training checkpoint
REBUILT_PREFIX = "stat."


def optimizer_params(optimizer, net):
    """The optimizer's own state that a checkpoint stores (momentum buffers, step counter), not the network
    weights it updates, nor the learning rates (``learning_rate``, ``learning_rate_group_N``: the schedule,
    rebuilt from the config), nor SGD's ``stat`` (rebuilt from the step counter: ``load_optimizer``)."""
    own = {id(p) for p in net.get_parameters()}
    return {p.name: p for p in optimizer.get_parameters()
            if id(p) not in own and not p.name.startswith(("learning_rate", REBUILT_PREFIX))}


def save(path, params, meta=None):
    """Write {name: Parameter|Tensor} (+ metadata) to ``path`` atomically: a crash never leaves a truncated
    file under the final name, and an existing file is replaced only once the new one is complete."""
    os.replace(stage(path, params, meta), path)


def stage(path, params, meta=None):
    """Write what ``save`` writes to a temporary file beside ``path`` and return its name: ``os.replace`` it onto
    ``path`` to publish it (until then a kill leaves only a file ``remove_partial_files`` clears)."""
    import mindspore as ms

    tmp = staging_name(path, PARTIAL_MARK + "ckpt")  # MindSpore itself writes <tmp minus .ckpt>.tmp first
    entries = [{"name": name, "data": value} for name, value in params.items()]
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        ms.save_checkpoint(entries, tmp, append_dict=dict(meta or {}))
        return tmp
    except (OSError, RuntimeError, ValueError) as exc:
        for leftover in (tmp, tmp[:-len("ckpt")] + "tmp"):
            if os.path.exists(leftover):
                os.remove(leftover)
        kept = "the previous version is kept" if os.path.exists(path) else "nothing was written under that name"
        raise CheckpointError(f"could not write checkpoint {path} ({type(exc).__name__}: {exc}); is the disk full "
                              f"or the folder read-only? {kept}") from None


PARTIAL_MARK = ".partial."  # in the names of files being written; never read, removed at the next start


def remove_partial_files(directory):
    """Delete what an interrupted write left in a run folder (``*.partial.ckpt``, ``*.partial.tmp``, ...).
    Returns their names."""
    if not os.path.isdir(directory):
        return []
    stale = sorted(f for f in os.listdir(directory) if PARTIAL_MARK in f or f.endswith(".partial"))
    for name in stale:
        os.remove(os.path.join(directory, name))
    return stale


def read(path, what="checkpoint"):
    """Load a checkpoint file into {name: Parameter or str}. Raises CheckpointError if missing or corrupt."""
    import mindspore as ms

    if not path:
        raise CheckpointError(f"no {what} given")
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path} does not exist")
    if PARTIAL_MARK in os.path.basename(path):
        raise CheckpointError(f"{what} {path} is an unfinished write (interrupted save), never a valid "
                              f"checkpoint; use last.ckpt or an epoch_NNNN.ckpt")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes): an interrupted copy or download; copy it again")
    try:
        return ms.load_checkpoint(path)
    except (ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{what} {path} cannot be read: it is corrupt, truncated or not a MindSpore "
                              f"checkpoint ({exc})") from None


def _describe(names, limit=5):
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def network_identity(arch, plain_variant=None, stem=None):
    """What a checkpoint records about the network it holds (saved as metadata, checked on load); give
    ``plain_variant`` for plain networks only, ``stem`` where the network has a choice of stems."""
    identity = {"arch": arch}
    if plain_variant:
        identity["plain_variant"] = plain_variant
    if stem:
        identity["stem"] = stem
    return identity


def check_identity(ckpt, what, path, expected):
    """Refuse a checkpoint whose own record names another network, before comparing names and shapes: a
    keep_downsample plain20 has exactly the parameter names of a resnet20, for example."""
    for key, want in (expected or {}).items():
        saved = ckpt.get(key)
        if isinstance(saved, str) and saved != want:
            raise CheckpointError(f"{what} {path} was saved from {key} '{saved}', not '{want}': another network "
                                  f"or run. Pass the --{key} it was trained with, or another checkpoint")


def load_network(net, ckpt, what="checkpoint", path="", arch=None, expected=None):
    """Copy the weights of ``net`` from ``ckpt`` (a dict from ``read``). The checkpoint's own record (arch,
    plain variant, stem) must match ``expected`` (default: ``{"arch": arch}``) where it has one; every parameter
    of ``net`` must be present with the same shape; extra entries are allowed only for optimizer state and
    metadata. A Dirac run's training state loads into the plain network, its Dirac convolutions folded."""
    import mindspore as ms

    check_identity(ckpt, what, path, expected if expected is not None else ({"arch": arch} if arch else {}))
    params = network_params(net)
    stored = {k: v for k, v in ckpt.items() if isinstance(v, ms.Tensor)}  # Parameters too; not str metadata
    from .models.dirac import fold_state, is_dirac_state

    if is_dirac_state(stored) and not is_dirac_state(params):  # a Dirac training state, into the deployed network
        stored = fold_state(stored)
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
    started = int(np.asarray(ckpt["global_step"].asnumpy()).reshape(-1)[0]) > 0 if "global_step" in ckpt else True
    for param in optimizer.get_parameters():
        if param.name.startswith(REBUILT_PREFIX):  # stored by older checkpoints: the same values
            value = ckpt[param.name].asnumpy() if param.name in ckpt else \
                np.full(param.shape, 0.0 if started else 1.0, np.float32)
            param.set_data(ms.Tensor(value, param.dtype))


def meta_value(ckpt, key, default=None):
    """A metadata entry saved with ``save(..., meta=...)`` (numbers come back as 0-d Parameters)."""
    value = ckpt.get(key, default)
    if value is None or isinstance(value, (str, int, float)):
        return value
    return np.asarray(value.asnumpy()).item()


def classifier_classes(ckpt, path, what="checkpoint"):
    """How many classes the checkpoint's classifier (``fc``) has."""
    bias = ckpt.get("fc.bias")
    if bias is None:
        raise CheckpointError(f"{what} {path} has no classifier (fc.bias): not a network checkpoint of this project")
    return int(bias.shape[0])


class CheckpointManager:
    """Training state (weights, optimizer, extra trained parameters) in last.ckpt every epoch and in the last N
    epoch_NNNN.ckpt files: what --resume reads. The deployable network alone (Dirac folded, no optimizer) in
    best.ckpt on a new best validation accuracy, and in final.ckpt after the run's last epoch: what eval, export
    and users load (final.ckpt is the one to report when best.ckpt was chosen on the split it is measured on)."""

    def __init__(self, directory, keep_max=3):
        self.directory, self.keep_max = directory, keep_max

    @property
    def last(self):
        return os.path.join(self.directory, "last.ckpt")

    @property
    def best(self):
        return os.path.join(self.directory, "best.ckpt")

    @property
    def final(self):
        return os.path.join(self.directory, "final.ckpt")

    def save_epoch(self, epoch, train_state, deploy_params, meta, is_best, is_final=False, before_commit=None):
        """Write the epoch's files (best, final, epoch_NNNN), then ``before_commit()`` (the trainer's metrics.json),
        then last.ckpt. last.ckpt is the commit point: ``--resume auto`` continues after the epoch it holds, so a
        kill at any moment before it is written trains this epoch again (exactly: a resume is bit-identical) and
        writes every file anew; the run can never look finished, or have metrics short of an epoch, while a file
        of its last epoch is missing. The training state, the largest file, is written first and published last:
        a full disk fails before any other file of the run changes."""
        staged = stage(self.last, train_state, meta)
        try:
            self._save_outputs(epoch, train_state, deploy_params, meta, is_best, is_final)
            if before_commit is not None:
                before_commit()
        except BaseException:
            os.remove(staged)
            raise
        os.replace(staged, self.last)

    def _save_outputs(self, epoch, train_state, deploy_params, meta, is_best, is_final):
        if is_best:
            save(self.best, deploy_params, meta)
        if is_final:
            save(self.final, deploy_params, meta)
        if self.keep_max > 0:
            save(os.path.join(self.directory, f"epoch_{epoch:04d}.ckpt"), train_state, meta)
            epochs = sorted(f for f in os.listdir(self.directory) if f.startswith("epoch_") and f.endswith(".ckpt"))
            for old in epochs[:-self.keep_max]:
                os.remove(os.path.join(self.directory, old))
