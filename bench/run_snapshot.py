"""Carry an unfinished training run from one machine to another through git.

A study row can need more hours than one working session has, and the next session may get a fresh machine without
the run folder. ``save`` copies the files ``train.py --resume auto`` needs (checkpoints, metrics, config, log) into
a folder that is committed; ``restore`` puts them back into an empty or less advanced run folder. Machine paths in
the text files become placeholders: a resume may change ``data_path``, ``output_dir`` and ``teacher_ckpt``
(``resdist.config.RESUME_MAY_CHANGE``), so they are given afresh on the command line.
"""
import json
import os
import shutil
import time

# what a resume reads (last.ckpt: weights, optimizer, best accuracy so far; metrics.json's earlier epochs;
# config.yaml's settings) and the record that should survive with it. best.ckpt is not read by a resume: it travels
# only where another row needs it (a teacher's), else metrics.json stands in for it (its best epoch and accuracy).
FILES = ("last.ckpt", "best.ckpt", "metrics.json", "config.yaml", "train.log", "study_wall_seconds.json")
TEXT_FILES = ("metrics.json", "config.yaml", "train.log")


def finished_epochs(folder):
    """The per-epoch records of the run in ``folder`` that it can resume after (metrics.json's); [] without
    last.ckpt or a readable metrics.json."""
    if not os.path.isfile(os.path.join(folder, "last.ckpt")):
        return []
    try:
        with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
            epochs = json.load(f)["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return epochs if isinstance(epochs, list) else []


def epochs_done(folder):
    """How many epochs the run in ``folder`` can resume after: its metrics.json's count, 0 without last.ckpt."""
    return len(finished_epochs(folder))


def _signature(folder, files=FILES):
    out = {}
    for name in files:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            st = os.stat(path)
            out[name] = (st.st_size, st.st_mtime_ns)
    return out


def _consistent(sig):
    """An epoch's end writes best.ckpt, then metrics.json, then last.ckpt (the commit point a resume continues
    after): a last.ckpt older than either means the copy fell between them. Runs trained before that order wrote
    last.ckpt first and metrics.json last; their steady state, metrics.json newest, is accepted too."""
    if "last.ckpt" not in sig or "metrics.json" not in sig:
        return False
    return any(all(sig[newest][1] >= sig[c][1] for c in ("last.ckpt", "best.ckpt", "metrics.json") if c in sig)
               for newest in ("last.ckpt", "metrics.json"))


def save(run_dir, dest, replacements=(), attempts=10, wait=5.0, keep_best=True):
    """Copy ``run_dir``'s resumable files to ``dest`` (replaced whole, never left half-written), each
    (old, new) of ``replacements`` applied to the text files; best.ckpt only with ``keep_best``. The run may be
    training meanwhile: a copy that an epoch's end overlapped is taken again. Returns the number of epochs saved."""
    files = FILES if keep_best else tuple(f for f in FILES if f != "best.ckpt")
    if epochs_done(run_dir) == 0:
        raise ValueError(f"{run_dir} has no finished epoch to save (no last.ckpt or metrics.json)")
    staging = f"{dest}.partial"
    for _ in range(attempts):
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        before = _signature(run_dir, files)
        for name in before:
            target = os.path.join(staging, name)
            if name in TEXT_FILES:
                with open(os.path.join(run_dir, name), encoding="utf-8") as f:
                    text = f.read()
                for old, new in replacements:
                    text = text.replace(old, new)
                with open(target, "w", encoding="utf-8") as f:
                    f.write(text)
            else:
                shutil.copyfile(os.path.join(run_dir, name), target)
        after = _signature(run_dir)  # best.ckpt included: the write order is checked on every file
        if {k: v for k, v in after.items() if k in files} == before and _consistent(after):
            break
        time.sleep(wait)
    else:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"{run_dir} kept changing while it was copied; try again, or pause the run")
    old = f"{dest}.old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(dest):
        os.replace(dest, old)
    os.replace(staging, dest)
    shutil.rmtree(old, ignore_errors=True)
    return epochs_done(dest)


def restore(snapshot, run_dir):
    """Put a saved run back into ``run_dir`` if it is further along than what ``run_dir`` holds; a run folder
    that is replaced is moved aside (``RUN_DIR.superseded``, numbered if taken), not deleted. Returns the number of
    epochs restored, 0 if ``run_dir`` was kept."""
    saved = epochs_done(snapshot)
    if saved <= epochs_done(run_dir):
        return 0
    if os.path.exists(run_dir):
        aside, n = f"{run_dir}.superseded", 1
        while os.path.exists(aside):
            n += 1
            aside = f"{run_dir}.superseded{n}"
        os.replace(run_dir, aside)
    staging = f"{run_dir}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(snapshot, staging)
    os.replace(staging, run_dir)
    return saved
