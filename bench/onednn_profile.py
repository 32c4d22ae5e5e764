#!/usr/bin/env python
"""Where a training step's time goes inside oneDNN: time and GFLOP/s per primitive, pass and shape.

    python bench/onednn_profile.py                           # plain-20 step, batch 128
    python bench/onednn_profile.py --net resnet18 --procedure rd --steps 3

Runs the step of bench/train_throughput.py in a child process with ONEDNN_VERBOSE=1 (every oneDNN primitive
logs its execution time), ignores compilation and warm-up, and sums the log per (primitive, pass, shape).
Convolutions get their GFLOP/s (2 * N * Cin * Cout * Hout * Wout * Kh * Kw per pass). The verbose log itself
costs a little time, so the step rate printed here is a bit below the benchmark's. JSON goes to --output.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import time

from benchutil import save_report  # bench/ is on sys.path when run as a script
from train_throughput import NETS, PROCEDURES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "ONEDNN_PROFILE_TIMED_STEPS_START"
CONV_SHAPE = re.compile(r"mb(\d+)_(?:g\d+)?ic(\d+)oc(\d+)_ih\d+oh(\d+)kh(\d+).*?ow(\d+)kw(\d+)")

CHILD = """
import sys, time
from resdist import runtime
runtime.prefer_fast_cpu_kernels(); runtime.prefer_blocking_host_dispatch("CPU")
runtime.init_context("CPU", "graph", seed=0)
import train_throughput as tt
teacher, student, batch, kwargs = tt.NETS[sys.argv[2]]
step, window = tt.build_step(sys.argv[3], teacher, student, kwargs)
source = tt.batches(batch, False, None)
tt.timed(step, source, 2, window)
print("%s", flush=True)
seconds = tt.timed(step, source, int(sys.argv[4]), window)
print("STEP_SECONDS", seconds / int(sys.argv[4]), "BATCH", batch, flush=True)
""" % MARK


def conv_gflop(shape):
    m = CONV_SHAPE.search(shape)
    if not m:
        return None
    mb, cin, cout, oh, kh, ow, kw = map(int, m.groups())
    return 2.0 * mb * cin * cout * oh * ow * kh * kw / 1e9


def summarise(lines, steps):
    """Sum the verbose exec lines after the marker: {(primitive, pass, shape): [ms, ...]}."""
    started, table = False, collections.defaultdict(list)
    for line in lines:
        if line.startswith(MARK):
            started = True
        elif started and line.startswith("onednn_verbose") and ",exec," in line:
            fields = line.split(",")
            # onednn_verbose,v1,primitive,exec,cpu,<primitive>,<impl>,<pass>,<formats>,<attrs>,<aux>,<shape>,<ms>
            table[(fields[5], fields[6], fields[7], fields[-2])].append(float(fields[-1]))
    rows = []
    for (primitive, impl, prop, shape), times in table.items():
        per_step = sum(times) / steps
        row = {"primitive": primitive, "impl": impl, "pass": prop, "shape": shape, "calls_per_step": len(times) / steps,
               "ms_per_step": round(per_step, 2), "median_ms": round(sorted(times)[len(times) // 2], 3)}
        gflop = conv_gflop(shape) if primitive == "convolution" else None
        if gflop:
            row["gflop_per_s"] = float(f"{gflop / row['median_ms'] * 1000:.4g}")
        rows.append(row)
    rows.sort(key=lambda r: -r["ms_per_step"])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="resnet20", choices=tuple(NETS))
    parser.add_argument("--procedure", default="plain", choices=PROCEDURES)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after compilation and warm-up")
    parser.add_argument("--top", type=int, default=20, help="rows printed")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "onednn_profile.json"))
    args = parser.parse_args(argv)
    # the child imports train_throughput from bench/ (resdist is installed)
    bench = os.path.join(ROOT, "bench")
    env = {**os.environ, "ONEDNN_VERBOSE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, (bench, os.environ.get("PYTHONPATH"))))}
    proc = subprocess.run([sys.executable, "-c", CHILD, ROOT, args.net, args.procedure, str(args.steps)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        print("error: the profiled step failed (see above)", file=sys.stderr)
        return 1
    lines = proc.stdout.splitlines()
    step_line = [ln.split() for ln in lines if ln.startswith("STEP_SECONDS")][-1]
    step_ms, batch = float(step_line[1]) * 1000, int(step_line[3])
    rows = summarise(lines, args.steps)
    total = sum(r["ms_per_step"] for r in rows)
    by_pass = collections.defaultdict(float)
    for r in rows:
        by_pass[f"{r['primitive']} {r['pass']}"] += r["ms_per_step"]
    print(f"{args.net} {args.procedure}, batch {batch}: {step_ms:.0f} ms per step ({batch / step_ms * 1000:.1f} img/s "
          f"with verbose logging), of which oneDNN {total:.0f} ms")
    for name, ms in sorted(by_pass.items(), key=lambda kv: -kv[1]):
        print(f"  {name:40s} {ms:7.1f} ms/step")
    print(f"top {args.top} (primitive, pass, shape):")
    for r in rows[:args.top]:
        print(f"  {r['primitive'][:11]:11s} {r['pass'][:16]:16s} {r['shape'][:58]:58s} x{r['calls_per_step']:<4g} "
              f"{r['ms_per_step']:7.1f} ms/step" + (f" {r['gflop_per_s']:6.1f} GFLOP/s" if "gflop_per_s" in r else ""))
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "net": args.net, "procedure": args.procedure, "batch": batch,
              "step_ms": round(step_ms, 1), "onednn_ms_per_step": round(total, 1),
              "by_pass": {k: round(v, 1) for k, v in by_pass.items()}, "rows": rows}
    save_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
