#!/usr/bin/env python
"""Where a MindSpore CPU training step goes: one 3x3 convolution's forward, input gradient and weight gradient,
timed separately (graph mode), for the shapes of CIFAR ResNets.

    python bench/conv_grad.py            # prints a table, writes bench/results/conv_grad.json
"""
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from resdist import runtime  # noqa: E402  (before MindSpore)

SHAPES = [(128, 16, 32), (128, 32, 16), (128, 64, 8), (32, 64, 32), (32, 512, 4)]  # batch, channels, size


def main():
    isa_note = runtime.prefer_fast_cpu_kernels()
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    runtime.init_context("CPU", "graph", seed=0)
    print(f"CPU kernels: {isa_note}; MindSpore {ms.__version__}", flush=True)
    rows = []
    for batch, channels, size in SHAPES:
        conv = nn.Conv2d(channels, channels, 3, pad_mode="pad", padding=1, has_bias=False)
        x = ms.Tensor(np.random.default_rng(0).standard_normal((batch, channels, size, size)).astype(np.float32))

        def forward(x):
            return conv(x).sum()

        passes = {"forward": ms.jit(forward), "input_grad": ms.jit(ms.grad(forward, 0)),
                  "weight_grad": ms.jit(ms.grad(forward, None, conv.trainable_params()))}
        gflop = 2 * batch * channels * channels * 9 * size * size / 1e9
        row = {"batch": batch, "channels": channels, "size": size, "gflop_per_pass": round(gflop, 3)}
        for name, fn in passes.items():
            out = fn(x)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                out = fn(x)
                (out[0] if isinstance(out, tuple) else out).asnumpy()
                times.append(time.perf_counter() - start)
            t = sorted(times)[2]
            row[f"{name}_ms"] = round(t * 1000, 1)
            row[f"{name}_gflops"] = round(gflop / t, 1)
        rows.append(row)
        print(f"batch {batch:3d} channels {channels:3d} {size:2d}x{size:<2d}: forward {row['forward_ms']:7.1f} ms "
              f"({row['forward_gflops']:5.1f} GFLOP/s)  input grad {row['input_grad_ms']:7.1f} ms  "
              f"weight grad {row['weight_grad_ms']:7.1f} ms ({row['weight_grad_gflops']:5.1f} GFLOP/s)", flush=True)
    out = os.path.join(ROOT, "bench", "results", "conv_grad.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "mindspore": ms.__version__, "cpu_kernels": isa_note,
                   "rows": rows}, f, indent=2)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
