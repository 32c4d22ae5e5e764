#!/usr/bin/env python
"""Data-parallel training on this machine: one process vs N msrun workers (scripts/run_distribute_train.sh), with
MindSpore's default CPU kernel threads vs a set number per worker, and the CPU time msrun's launcher itself uses.

    python bench/distributed_throughput.py                       # resnet20, 2 workers, default vs 1 thread each
    python bench/distributed_throughput.py --workers 2 --threads 0,1,2 --images 4096

Each setting trains one epoch of the synthetic data set (the same images and global batch for every setting; no
validation) in fresh processes, settings interleaved over --repeats rounds; images/s is the run's training
throughput over all workers (from metrics.json, compilation excluded). Run it on an otherwise idle machine.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchutil import save_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _launcher_usage(parent, stop, out):
    """CPU share of the msrun process (a child of the bash script) while the job runs."""
    msrun, start_cpu, start = None, 0.0, 0.0
    while not stop.is_set():
        if msrun is None:
            found = subprocess.run(["pgrep", "-P", str(parent), "-f", "msrun"], capture_output=True, text=True)
            if found.stdout.strip():
                msrun = int(found.stdout.split()[0])
                start_cpu, start = _cpu_seconds(msrun), time.time()
        else:
            try:
                out["launcher_cpu_share"] = (_cpu_seconds(msrun) - start_cpu) / max(time.time() - start, 1e-9)
            except OSError:
                break
        time.sleep(0.5)


def run(args, workers, threads, port):
    recipe = os.path.join(tempfile.mkdtemp(), "bench.yaml")
    batch = args.global_batch // workers
    with open(recipe, "w") as f:
        f.write(f"arch: {args.arch}\nprocedure: {'teacher' if args.arch.startswith('resnet') else 'plain'}\n"
                f"synthetic_train_size: {args.images}\nsynthetic_val_size: 64\nval_split: none\n"
                f"batch_size: {batch}\nepochs: 1\nlog_interval: 1000\ncpu_threads: {threads}\n")
    out = tempfile.mkdtemp()
    usage = {}
    if workers == 1:
        cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--config", recipe, "--output_dir", out]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        cmd = ["bash", os.path.join(ROOT, "scripts", "run_distribute_train.sh"), "--worker_num", str(workers),
               "--master_port", str(port), "--cluster_time_out", "120", recipe, "none", out]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    watcher = threading.Thread(target=_launcher_usage, args=(proc.pid, stop, usage), daemon=True)
    if workers > 1:
        watcher.start()
    code = proc.wait()
    stop.set()
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with {code}")
    with open(os.path.join(out, "metrics.json")) as f:
        epoch = json.load(f)["epochs"][0]
    return epoch["train_images_per_s"], usage.get("launcher_cpu_share")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", default="0,1", help="CPU kernel threads per worker to compare (0: default)")
    parser.add_argument("--images", type=int, default=4096, help="synthetic training images (one epoch)")
    parser.add_argument("--global_batch", type=int, default=128, help="images per step over all workers")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "distributed_throughput.json"))
    args = parser.parse_args(argv)
    settings = [(1, 0)] + [(args.workers, int(t)) for t in args.threads.split(",")]
    rates = {s: [] for s in settings}
    launcher = {s: [] for s in settings}
    for r in range(args.repeats):
        for i, setting in enumerate(settings):
            rate, share = run(args, *setting, port=8400 + 10 * r + i)
            rates[setting].append(rate)
            if share is not None:
                launcher[setting].append(share)
            print(f"round {r + 1}: {setting[0]} worker(s), threads {setting[1] or 'default'}: {rate:.1f} img/s"
                  + (f", msrun launcher {100 * share:.1f}% of a core" if share is not None else ""), flush=True)
    single = statistics.median(rates[(1, 0)])
    rows = []
    for (workers, threads), values in rates.items():
        median = statistics.median(values)
        rows.append({"workers": workers, "threads_per_worker": threads or "default", "images_per_s": median,
                     "images_per_s_per_worker": median / workers, "vs_one_process": median / single,
                     "runs": values, "launcher_cpu_share": statistics.median(launcher[(workers, threads)])
                     if launcher[(workers, threads)] else None})
        print(f"{workers} worker(s), threads {threads or 'default':>7}: {median:7.1f} img/s total, "
              f"{median / workers:7.1f} per worker, {median / single:.2f}x one process")
    save_report({"arch": args.arch, "images": args.images, "global_batch": args.global_batch,
                 "cpus": os.cpu_count(), "rows": rows}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
