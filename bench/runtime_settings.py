#!/usr/bin/env python
"""Compare process-wide runtime settings (environment variables) on the training-step benchmark, side by side.

    python bench/runtime_settings.py                                  # MindSpore's async dispatch vs ours
    python bench/runtime_settings.py --with_torch                     # ... and PyTorch on the same steps
    python bench/runtime_settings.py --settings "MS_DEV_HOST_BLOCKING_RUN=0;MS_DEV_HOST_BLOCKING_RUN=1" \\
        --nets resnet20,resnet56,resnet18 --procedures plain,rd --repeats 3

Some settings (MindSpore's dispatch mode, oneDNN's ISA cap, thread counts) are read once per process, so they
cannot be switched inside one benchmark process. This script runs `bench/train_throughput.py` once per setting
in child processes, interleaved (A B A B ...) for `--repeats` rounds so that both settings see the same machine
load, and reports the median images/s of each setting and the ratio to the first one. --with_torch adds
bench/torch_reference.py (PyTorch eager, pipeline excluded) as one more interleaved child, labelled "pytorch".
JSON goes to --output.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchutil import portable_command, save_report  # bench/ is on sys.path when run as a script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_setting(text):
    """'A=1,B=2' -> ({'A': '1', 'B': '2'}, []); 'default' -> ({}, []) (the environment as it is);
    items starting with '--' are passed to the benchmark as arguments: '--graph_kernel' -> ({}, ['--graph_kernel'])."""
    env, extra_args = {}, []
    for item in filter(None, (i.strip() for i in text.split(","))):
        if item == "default":
            continue
        if item.startswith("--"):
            extra_args.append(item)
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"setting '{item}' is not NAME=VALUE")
        env[name.strip()] = value.strip()
    return env, extra_args


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="MS_DEV_HOST_BLOCKING_RUN=0;MS_DEV_HOST_BLOCKING_RUN=1",
                        help="settings separated by ';', each a comma list of NAME=VALUE environment variables "
                             "and/or --benchmark-arguments, or 'default' (first = baseline)")
    parser.add_argument("--nets", default="resnet20,resnet56,resnet18")
    parser.add_argument("--procedures", default="plain,rd")
    parser.add_argument("--pipeline", choices=("excluded", "included", "both"), default="excluded")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per procedure per child round")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved child runs per setting")
    parser.add_argument("--with_torch", action="store_true", help="also run the PyTorch reference each round")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "runtime_settings.json"))
    args = parser.parse_args(argv)
    try:
        settings = [(text.strip(), parse_setting(text)) for text in args.settings.split(";") if text.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if len(settings) < 2:
        parser.error("give at least two settings separated by ';'")

    children = [(label, setting, "train_throughput.py") for label, setting in settings]
    if args.with_torch:
        if args.pipeline != "excluded":
            parser.error("--with_torch times the in-memory batch only: use --pipeline excluded")
        children.append(("pytorch", ({}, []), "torch_reference.py"))
    samples = {}  # (setting, net, procedure, pipeline) -> [images/s per child run]
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for label, (overrides, extra_args), script in children:
                out = os.path.join(tmp, "child.json")
                cmd = [sys.executable, os.path.join(ROOT, "bench", script), "--nets", args.nets,
                       "--procedures", args.procedures, "--pipeline", args.pipeline, "--steps", str(args.steps),
                       "--rounds", "3", "--output", out] + extra_args
                start = time.perf_counter()
                # cwd: files some settings write (graph-kernel build caches) land in the temporary folder
                proc = subprocess.run(cmd, env={**os.environ, **overrides}, capture_output=True, text=True, cwd=tmp)
                if proc.returncode != 0:
                    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
                    print(f"child run failed for setting '{label}'", file=sys.stderr)
                    return 1
                with open(out, encoding="utf-8") as f:
                    child = json.load(f)
                for row in child["results"]:
                    key = (label, row["net"], row["procedure"], row["pipeline"])
                    samples.setdefault(key, []).append(row["images_per_s"])
                print(f"round {repeat + 1}/{args.repeats} '{label}': {time.perf_counter() - start:.0f}s "
                      f"({child['cpu_runtime']})", flush=True)

    baseline = settings[0][0]
    medians = {key: statistics.median(values) for key, values in samples.items()}
    rows = []
    for (label, net, procedure, pipeline), median in medians.items():
        row = {"setting": label, "net": net, "procedure": procedure, "pipeline": pipeline,
               "images_per_s": round(median, 2), "runs": samples[(label, net, procedure, pipeline)],
               "vs_baseline": round(median / medians[(baseline, net, procedure, pipeline)], 3)}
        torch_key = ("pytorch", net, procedure, pipeline)
        if label != "pytorch" and torch_key in medians:
            row["vs_pytorch"] = round(median / medians[torch_key], 3)
        rows.append(row)
    order = [label for label, _, _ in children]
    rows.sort(key=lambda r: (r["net"], r["procedure"], r["pipeline"], order.index(r["setting"])))
    for r in rows:
        print(f"{r['net']:9s} {r['procedure']:8s} {r['pipeline']:8s} {r['setting']:45s} "
              f"{r['images_per_s']:8.1f} img/s  {r['vs_baseline']:.2f}x"
              + (f"  ({r['vs_pytorch']:.2f}x PyTorch)" if "vs_pytorch" in r else ""))
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "baseline": baseline,
              "command": portable_command(sys.argv[0], argv if argv is not None else sys.argv[1:]),
              "steps": args.steps, "repeats": args.repeats, "results": rows}
    save_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
