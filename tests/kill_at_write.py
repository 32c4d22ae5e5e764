"""Run by tests/test_failures.py: train.py, killed (SIGKILL, by itself) at the moment it is about to write FILE
(a checkpoint or metrics.json) for epoch EPOCH; a real kill at the worst moment, which no timing can hit.

    python tests/kill_at_write.py FILE EPOCH TRAIN_ARGS...
"""
import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import train  # noqa: E402
from resdist import checkpoint  # noqa: E402
from resdist.train import trainer  # noqa: E402

NAME, EPOCH = sys.argv[1], int(sys.argv[2])


def _kill_if(path, epoch):
    if os.path.basename(path) == NAME and epoch == EPOCH:
        os.kill(os.getpid(), signal.SIGKILL)


def save(path, params, meta=None, _real=checkpoint.save):
    _kill_if(path, (meta or {}).get("epoch"))
    return _real(path, params, meta)


def write_json(path, obj, _real=trainer.write_json):
    _kill_if(path, obj["epochs"][-1]["epoch"])
    return _real(path, obj)


checkpoint.save, trainer.write_json = save, write_json
sys.exit(train.main(sys.argv[3:]))
