"""Run by tests/test_distributed.py: a few SGD steps of a tiny network without BatchNorm, either as one of N msrun
workers (each on its share of the global batch) or as one process on the whole global batch; saves the weights."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
from resdist import runtime  # noqa: E402

runtime.prefer_fast_cpu_kernels()
runtime.prefer_blocking_host_dispatch("CPU")

import mindspore as ms  # noqa: E402
import numpy as np  # noqa: E402
from mindspore import nn, ops  # noqa: E402

from resdist.distill.objective import CrossEntropyObjective  # noqa: E402
from resdist.train.optim import create_optimizer  # noqa: E402
from resdist.train.trainer import make_train_step  # noqa: E402


class Tiny(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, pad_mode="pad", padding=1, has_bias=True)
        self.relu = nn.ReLU()
        self.fc = nn.Dense(4, 10)

    def construct(self, x):
        return self.fc(ops.mean(self.relu(self.conv(x)), (2, 3)))


def main(out_dir, distributed, global_batch=16, steps=4):
    rank, group = runtime.init_context("CPU", "graph", seed=3, distribute=distributed)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((steps, global_batch, 3, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 10, (steps, global_batch)).astype(np.int32)
    ms.set_seed(3)
    objective = CrossEntropyObjective(Tiny())
    params = {n: p for n, p in objective.parameters_and_names() if p.requires_grad}
    step = make_train_step(objective, create_optimizer(params, np.full(steps, 0.1, np.float32), weight_decay=0.0),
                           distributed=group > 1)
    share = global_batch // group
    for s in range(steps):  # rank r takes rows r*share .. (r+1)*share of each global batch
        rows = slice(rank * share, (rank + 1) * share)
        step(ms.Tensor(images[s, rows]), ms.Tensor(labels[s, rows]))
    np.savez(os.path.join(out_dir, f"weights_rank{rank}_of{group}.npz"),
             **{n: p.asnumpy() for n, p in params.items()})


if __name__ == "__main__":
    main(sys.argv[1], distributed=sys.argv[2] == "distributed")
