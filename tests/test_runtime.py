"""CPU runtime settings: the values chosen, the user's precedence, and that MindSpore really obeys them."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from resdist import runtime

# Runs compiled training steps the way train.py does (settings first, then MindSpore), then lists the
# process's thread names: MindSpore's async dispatch queue runs in a thread named "frontend_queue".
PROBE = """
import os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "src"))
from resdist import runtime
runtime.prefer_fast_cpu_kernels()
runtime.prefer_blocking_host_dispatch("CPU")
import numpy as np
import mindspore as ms
from resdist.distill.objective import CrossEntropyObjective
from resdist.models import create_model
from resdist.train.optim import create_optimizer, lr_per_step
from resdist.train.trainer import make_train_step
runtime.init_context("CPU", "graph", seed=0)
objective = CrossEntropyObjective(create_model("plain8", num_classes=2))
objective.set_train(True)
params = {n: p for n, p in objective.parameters_and_names() if p.requires_grad}
step = make_train_step(objective, create_optimizer(params, lr_per_step(0.1, "step", 1, 10)))
x = ms.Tensor(np.ones((2, 3, 32, 32), np.float32))
y = ms.Tensor(np.zeros((2,), np.int32))
for _ in range(2):
    loss, _, _ = step(x, y)
loss.asnumpy()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print("THREADS", ",".join(sorted(names)))
"""


def probe_threads(env_overrides):
    env = {k: v for k, v in os.environ.items() if k != runtime.HOST_DISPATCH_VAR}
    env.update(env_overrides)
    out = subprocess.run([sys.executable, "-c", PROBE, ROOT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("THREADS ")][-1]
    return line.split(" ", 1)[1].split(",")


def test_blocking_dispatch_is_chosen_on_cpu_only_and_a_user_setting_wins(monkeypatch):
    monkeypatch.delenv(runtime.HOST_DISPATCH_VAR, raising=False)
    note = runtime.prefer_blocking_host_dispatch("Ascend")
    assert runtime.HOST_DISPATCH_VAR not in os.environ and "not set" in note
    note = runtime.prefer_blocking_host_dispatch("CPU")
    assert os.environ[runtime.HOST_DISPATCH_VAR] == "1" and note.startswith("set ")
    monkeypatch.setenv(runtime.HOST_DISPATCH_VAR, "0")
    note = runtime.prefer_blocking_host_dispatch("CPU")
    assert os.environ[runtime.HOST_DISPATCH_VAR] == "0" and "left alone" in note


@pytest.mark.slow
def test_mindspore_runs_without_its_spinning_dispatch_thread_when_we_choose_so():
    # Our default: the step runs on the calling thread, so MindSpore never starts the queue's thread.
    assert "frontend_queue" not in probe_threads({})
    # The user's "0" is respected, and then MindSpore does start it: the probe can tell the two apart.
    assert "frontend_queue" in probe_threads({runtime.HOST_DISPATCH_VAR: "0"})


@pytest.mark.slow
def test_numpy_2_notice_of_mindspores_cxx_front_end_is_one_log_line_not_two_tracebacks(tmp_path):
    """Under NumPy 2, MindSpore 2.10's first eager Parameter operation (here: folding Dirac convolutions at the
    end of an epoch) made NumPy print its 1.x/2.x notice with two "Traceback" headers; it is captured at start
    and said once, in the log's CPU runtime line."""
    import subprocess
    import sys

    import numpy as np

    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip(f"NumPy {np.__version__} gives no such notice")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "train.py", "--arch", "plain8", "--procedure", "plain", "--dirac", "true",
                           "--synthetic_train_size", "64", "--batch_size", "32", "--epochs", "1",
                           "--max_steps_per_epoch", "1", "--output_dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "NumPy 1.x" not in done.stderr, done.stderr
    runtime_lines = [line for line in done.stdout.splitlines() if "CPU runtime:" in line]
    assert len(runtime_lines) == 1 and "printed its NumPy 1.x/2.x notice (captured): harmless" in runtime_lines[0]
