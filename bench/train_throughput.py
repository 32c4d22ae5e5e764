#!/usr/bin/env python
"""Training-step throughput (images/s) of each procedure on the same student, measured side by side.

    python bench/train_throughput.py                      # ResNet-20/56 (batch 128), ResNet-18 CIFAR (batch 32)
    python bench/train_throughput.py --nets resnet20 --steps 5 --rounds 2 --pipeline both

For every network pair (resnetN teacher, plainN student) it builds the objectives
  teacher: the ResNet alone (CE)       plain: the plain student alone (CE)
  kd: student + frozen teacher (Hinton KD)   rd: student + frozen teacher (Residual Distillation, lambda > 0)
  plain_dirac, rd_dirac: plain and rd with a Dirac-parametrised student (train.py --dirac true)
compiles each train step (graph mode), then times `--steps` steps per procedure, round-robin over `--rounds`
rounds so that every procedure sees the same machine load; the median round is reported. "excluded" feeds one
fixed in-memory batch; "included" pulls batches from the real CIFAR-10 pipeline (decode-free binary reader,
crop/flip/normalise) in ../shared/data, with --workers dataset workers (a comma list compares several).
All pipelines, procedures and jit levels of one network are timed in the same round-robin. Prints a table and
writes JSON (--output).
"""
import argparse
import os
import platform
import statistics
import sys
import time

from benchutil import save_report  # bench/ is on sys.path when run as a script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from resdist import runtime  # noqa: E402  (before MindSpore)

NETS = {"resnet20": ("resnet20", "plain20", 128, {}), "resnet56": ("resnet56", "plain56", 128, {}),
        "resnet18": ("resnet18", "plain18", 32, {"stem": "cifar"}),
        "resnet8": ("resnet8", "plain8", 16, {})}  # a smoke-test size (tests/test_bench.py), not a benchmark
# plain_dirac / rd_dirac: the same with the student's block convolutions Dirac-parametrised (train.py --dirac true)
PROCEDURES = ("teacher", "plain", "kd", "rd", "plain_dirac", "rd_dirac")


def build_step(procedure, teacher_name, student_name, kwargs, jit_level=None, readback="window"):
    from resdist.distill.builder import make_objective
    from resdist.models import create_model
    from resdist.models.dirac import apply_dirac
    from resdist.train.optim import create_optimizer, lr_per_step
    from resdist.train.trainer import WindowSums, make_train_step

    procedure, dirac = procedure.replace("_dirac", ""), procedure.endswith("_dirac")
    teacher = create_model(teacher_name, num_classes=10, **kwargs)
    trained = teacher if procedure == "teacher" else create_model(student_name, num_classes=10, **kwargs)
    if dirac:
        apply_dirac(trained)
    objective = make_objective(procedure, trained, None if procedure in ("teacher", "plain") else teacher,
                               fd_lambda=0.001)
    trainable = {n: p for n, p in objective.parameters_and_names() if p.requires_grad}
    optimizer = create_optimizer(trainable, lr_per_step(0.01, "step", 1, 100000))
    objective.set_train(True)
    window = WindowSums(len(objective.term_names)) if readback == "window" else None
    return make_train_step(objective, optimizer, jit_level=jit_level, window=window), window


def batches(batch_size, pipeline, data_path, workers=2):
    import mindspore as ms
    import numpy as np

    if not pipeline:
        rng = np.random.default_rng(0)
        images = ms.Tensor(rng.standard_normal((batch_size, 3, 32, 32)).astype(np.float32))
        labels = ms.Tensor(rng.integers(0, 10, batch_size).astype(np.int32))
        while True:
            yield images, labels
    from resdist.data import create_dataset

    dataset, _ = create_dataset("cifar10", data_path, "train", batch_size, val_split="data_batch_5",
                                num_parallel_workers=workers)
    while True:
        yield from dataset.create_tuple_iterator(num_epochs=1)


def timed(step, source, steps, window=None, log_interval=20):
    """Seconds for ``steps`` steps, reading back as the training loop does: with a ``window``, its device-side
    sums every ``log_interval`` steps (train.py today); without, the loss, every term and the correct count after
    every step (train.py before the window sums)."""
    start = time.perf_counter()
    for i in range(1, steps + 1):
        images, labels = next(source)
        loss, correct, terms = step(images, labels)
        if window is None:
            loss.asnumpy(), correct.asnumpy(), [t.asnumpy() for t in terms]
        elif i % log_interval == 0 or i == steps:
            window.take()
    loss.asnumpy()  # wait for the last step
    return time.perf_counter() - start


def timed_batches(source, count):
    start = time.perf_counter()
    for _ in range(count):
        next(source)
    return time.perf_counter() - start


def main(argv=None):
    cpu_note = runtime.prefer_fast_cpu_kernels() + "; " + runtime.prefer_blocking_host_dispatch("CPU")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="resnet20,resnet56,resnet18", help=f"comma list of {', '.join(NETS)}")
    parser.add_argument("--procedures", default=",".join(PROCEDURES), help="comma list of " + ", ".join(PROCEDURES))
    parser.add_argument("--steps", type=int, default=4, help="timed steps per procedure per round")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin repetitions (median reported)")
    parser.add_argument("--pipeline", choices=("excluded", "included", "both"), default="excluded")
    parser.add_argument("--batch_sizes", default="",
                        help="comma list of batch sizes to compare (default: 128 for ResNet-20/56, 32 for ResNet-18)")
    parser.add_argument("--workers", default="2",
                        help="comma list of dataset engine worker counts to compare (pipeline included only)")
    parser.add_argument("--graph_kernel", action="store_true",
                        help="turn on MindSpore's graph-kernel fusion for the whole process (compare with "
                             "bench/runtime_settings.py --settings 'default;--graph_kernel')")
    parser.add_argument("--op_threads", type=int, default=0,
                        help="threads for CPU kernels (ms.device_context.cpu.op_tuning.threads_num); 0 = MindSpore's "
                             "default. Process-wide: compare with bench/runtime_settings.py --settings "
                             "'default;--op_threads=1'")
    parser.add_argument("--jit_levels", default="default",
                        help="comma list of ms.jit levels to compare side by side, e.g. default,O1")
    parser.add_argument("--readback", default="window",
                        help="comma list: window (device-side sums read every --log_interval steps, as train.py "
                             "does) and/or per_step (loss, terms and correct count read after every step)")
    parser.add_argument("--log_interval", type=int, default=20, help="steps between two reads (readback window)")
    parser.add_argument("--data_path", default=os.path.join(ROOT, "..", "shared", "data", "cifar-10-batches-bin"))
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "train_throughput.json"))
    args = parser.parse_args(argv)
    nets = [n for n in args.nets.split(",") if n]
    procedures = [p for p in args.procedures.split(",") if p]
    unknown = [n for n in nets if n not in NETS] + [p for p in procedures if p not in PROCEDURES]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    workers = [int(w) for w in args.workers.split(",") if w]
    if args.pipeline != "excluded" and not os.path.isdir(args.data_path):
        parser.error(f"--pipeline {args.pipeline} reads CIFAR-10 from --data_path, but {args.data_path} is not a "
                     "directory (pass --data_path DIR with data_batch_1..5.bin)")
    sources = {"excluded": [("excluded", None)],
               "included": [(f"included({w}w)", w) for w in workers],
               "both": [("excluded", None)] + [(f"included({w}w)", w) for w in workers]}[args.pipeline]

    import mindspore as ms

    runtime.init_context("CPU", "graph", seed=0)
    if args.op_threads:
        ms.device_context.cpu.op_tuning.threads_num(args.op_threads)
        cpu_note += f"; {args.op_threads} kernel threads"
    if args.graph_kernel:
        ms.set_context(enable_graph_kernel=True)
        cpu_note += "; graph-kernel fusion on"
    print(f"CPU runtime: {cpu_note}; MindSpore {ms.__version__}; {os.cpu_count()} CPUs", flush=True)
    results = []
    pipeline_alone = {}
    for _, worker_count in sources:  # the input pipeline by itself, for scale
        if worker_count is not None:
            source = batches(128, True, args.data_path, worker_count)
            timed_batches(source, 5)
            pipeline_alone[worker_count] = round(128 * 50 / timed_batches(source, 50), 1)
            print(f"input pipeline alone, {worker_count} workers: {pipeline_alone[worker_count]:.0f} img/s", flush=True)
    for net in nets:
        teacher_name, student_name, default_batch, kwargs = NETS[net]
        sizes = [int(b) for b in args.batch_sizes.split(",") if b] or [default_batch]
        runs = {}  # every (pipeline, procedure, jit level, batch size) of this network, timed round-robin together
        for pipeline, worker_count in sources:
            for batch_size in sizes:
                for procedure in procedures:
                    for level, readback in [(lv, rb) for lv in args.jit_levels.split(",")
                                            for rb in args.readback.split(",")]:
                        key = procedure if level == "default" else f"{procedure}@{level}"
                        key += f"[{readback}]" if "," in args.readback else ""
                        step, window = build_step(procedure, teacher_name, student_name, kwargs,
                                                  None if level == "default" else level, readback)
                        source = batches(batch_size, worker_count is not None, args.data_path, worker_count)
                        compile_s = timed(step, source, 2, window)  # compilation and first steps
                        runs[(pipeline, key, batch_size)] = (step, source, window, [])
                        print(f"{net} {key} batch {batch_size} pipeline {pipeline}: compiled + 2 warm-up steps "
                              f"in {compile_s:.1f}s", flush=True)
        for _ in range(args.rounds):
            for step, source, window, times in runs.values():
                times.append(timed(step, source, args.steps, window, args.log_interval))
        rows = []
        for (pipeline, procedure, batch_size), (_, _, _, times) in runs.items():
            ips = batch_size * args.steps / statistics.median(times)
            rows.append({"net": net, "student": student_name, "procedure": procedure, "batch_size": batch_size,
                         "pipeline": pipeline, "images_per_s": round(ips, 2),
                         "round_images_per_s": [round(batch_size * args.steps / t, 2) for t in times]})
        for row in rows:
            base = [r["images_per_s"] for r in rows if r["pipeline"] == row["pipeline"] and r["procedure"] == "plain"
                    and r["batch_size"] == row["batch_size"]]
            if base:
                row["time_vs_plain"] = round(base[0] / row["images_per_s"], 3)
            print(f"{net:9s} {row['procedure']:11s} batch {row['batch_size']:3d} pipeline {row['pipeline']:13s} "
                  f"{row['images_per_s']:8.1f} img/s" + (f"   step time {row['time_vs_plain']:.2f}x plain"
                                                          if base else ""), flush=True)
        results.extend(rows)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "mindspore": ms.__version__, "cpus": os.cpu_count(),
              "machine": platform.machine(), "cpu_runtime": cpu_note, "steps": args.steps, "rounds": args.rounds,
              "readback": args.readback, "log_interval": args.log_interval,
              "pipeline_alone_images_per_s": pipeline_alone,
              "results": results}
    save_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
