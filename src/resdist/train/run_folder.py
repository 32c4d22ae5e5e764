"""A training run's folder: naming it, refusing one that holds another run, locking it while a run trains in it,
and checking that a resume continues the experiment the folder recorded.

Nothing here builds networks or data; ``trainer`` calls these before (``choose_output_dir``,
``check_resume_config``) and after (``open_run_folder``) everything a bad input can fail on is built, so a refused
run leaves the disk as it was.
"""
import os
import time

import yaml

from .. import checkpoint as ckpt_io
from ..config import RESUME_MAY_CHANGE, options_for
from ..errors import ConfigError

RUN_LOCK = ".train.lock"


def check_resume_config(cfg):
    """A resume continues the experiment the run recorded: every training key outside ``RESUME_MAY_CHANGE``
    must equal the value in the config.yaml beside the resumed checkpoint. Returns a note for the log."""
    if not os.path.isfile(cfg.resume):  # before comparing settings, so that this is the one message
        fresh = os.path.abspath(cfg.resume) == os.path.abspath(os.path.join(cfg.output_dir, "last.ckpt"))
        raise ckpt_io.CheckpointError(f"resume checkpoint {cfg.resume} does not exist"
                                      + ("; to start a new run there, leave out --resume" if fresh else ""))
    path = recorded_config_path(cfg.resume)
    if not os.path.isfile(path):
        return (f"no config.yaml beside {cfg.resume}: the settings could not be compared with the run's own "
                f"(only the network and schedule recorded in the checkpoint are checked)")
    recorded = recorded_config(cfg.resume)
    changed = [f"{o.name} {recorded[o.name]!r} -> {cfg[o.name]!r}" for o in options_for("train")
               if o.name not in RESUME_MAY_CHANGE and o.name in recorded and recorded[o.name] != cfg[o.name]]
    if changed:
        raise ConfigError(f"resume: the run in {os.path.dirname(path)} was recorded with other settings "
                          f"({'; '.join(changed)}); a resume may change only {', '.join(sorted(RESUME_MAY_CHANGE))}"
                          f". Pass the recorded values, or start a new run in another --output_dir")
    return ""


def recorded_config_path(checkpoint):
    return os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "config.yaml")


def recorded_config(checkpoint):
    """The settings the run of ``checkpoint`` recorded (the config.yaml beside it); None where there is none."""
    path = recorded_config_path(checkpoint)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            recorded = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        recorded = exc
    if not isinstance(recorded, dict):
        raise ConfigError(f"{path}, the settings the run recorded, cannot be read as a YAML mapping; restore it "
                          f"(or move it away to resume without comparing settings)")
    return recorded


def resume_path(cfg):
    """The checkpoint ``resume`` names: ``auto`` is the output folder's last.ckpt."""
    if cfg.resume != "auto":
        return cfg.resume
    if not cfg.output_dir:
        raise ConfigError("resume=auto needs the output_dir of the run to continue")
    return os.path.join(cfg.output_dir, "last.ckpt")


def choose_output_dir(cfg):
    """Name the run folder (a new time-stamped one if none is given) and refuse one that cannot be used; the
    folder itself is made by ``open_run_folder`` once everything is built."""
    if not cfg.output_dir:
        if cfg.distribute:
            raise ConfigError("distribute=true needs an explicit output_dir shared by all ranks")
        if cfg.resume == "auto":
            raise ConfigError("resume=auto needs the output_dir of the run to continue")
        cfg.output_dir = os.path.join("outputs", f"{cfg.procedure}_{cfg.arch}_{cfg.dataset}_"
                                                 f"{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.exists(cfg.output_dir) and not os.path.isdir(cfg.output_dir):
        raise ConfigError(f"output_dir {cfg.output_dir} exists and is not a folder; choose another --output_dir")
    if cfg.resume:
        cfg.resume = resume_path(cfg)
    else:
        _refuse_existing_run(cfg.output_dir)


def _refuse_existing_run(folder):
    last = os.path.join(folder, "last.ckpt")
    if os.path.exists(last):
        raise ConfigError(f"output_dir {folder} already holds a run ({last}); pass --resume auto to "
                          f"continue it, or choose another --output_dir")


def lock_run_folder(folder):
    """An advisory lock on the run folder, held while the returned file is open: a second train.py on the same
    folder is refused instead of overwriting the first one's checkpoints. The system releases it when the process
    ends, however it ends, so ``--resume auto`` after a kill works."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; runs sharing a folder are not detected there
        return None
    handle = open(os.path.join(folder, RUN_LOCK), "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise ConfigError(f"output_dir {folder} is in use by another training process"
                          f"{f' (pid {holder})' if holder else ''}; wait for it to end, or choose another "
                          f"--output_dir") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def open_run_folder(cfg, rank):
    """Create (or, resuming, reuse) the run folder, lock it for the life of the run (rank 0; the other ranks
    write only their own logs) and clear interrupted writes. Returns (lock, removed file names)."""
    if rank != 0:
        return None, []
    try:
        os.makedirs(cfg.output_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output_dir {cfg.output_dir} ({exc.strerror or exc}); choose a "
                          f"writable --output_dir") from None
    lock = lock_run_folder(cfg.output_dir)
    try:
        if not cfg.resume:  # another run may have finished in this folder since choose_output_dir looked
            _refuse_existing_run(cfg.output_dir)
        return lock, ckpt_io.remove_partial_files(cfg.output_dir)
    except BaseException:
        if lock:
            lock.close()
        raise
