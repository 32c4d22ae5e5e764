#!/usr/bin/env python
"""Measured inference latency and peak memory, ResNet vs its plain twin side by side (interleaved, fresh process
per measurement):

  mindspore    the checkpoint network (BatchNorm unfolded) in MindSpore graph mode
  mindir       the exported MindIR (BatchNorm folded) loaded by MindSpore (ms.load + nn.GraphCell)
  ort          the exported ONNX (folded) in onnxruntime, default session options
  ort_noarena  the same with the CPU memory arena and memory-pattern planning off (allocations as needed)
  mnn          the ONNX converted to .mnn (resdist.deploy.mnn), in MNN's runtime: the mobile engine that installs here
  mnn_int8     that .mnn quantized by MNN's own quantizer (calibrated on random images: latency only)

    python bench/inference_latency.py                      # resnet50/plain50 at 224, batch 1 and 8
    python bench/inference_latency.py --quick              # batch 1, one round, mindir and ort only
    python bench/inference_latency.py --pairs resnet56:plain56 --size 32 --batches 1,32
    python bench/inference_latency.py --pairs resnet20:plain20,resnet56:plain56 --size 32 --batches 1 \\
        --runtimes mindir,ort,mnn,mnn_int8 --threads 1,2 --output bench/results/inference_latency_mnn_cifar.json

Latency: median of --runs timed calls after --warmup calls. Memory: the process's peak resident memory
(VmHWM) minus its resident memory right before the model was built or loaded: weights, activations and the
runtime's own buffers (and, for mindspore, graph compilation). For MNN also the memory its session plans (its
own figure, weights included), and for every network the analytic peak of live activations (resdist.deploy.memory).
Ratios ResNet / plain first. Weights are random (latency and memory do not depend on their values). --threads
sets every runtime's kernel threads. Run on an otherwise idle machine.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIMES = ("mindspore", "mindir", "ort", "ort_noarena", "mnn", "mnn_int8")


def _rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _network(arch, size):
    from resdist.models import create_model, model_info

    if size > 64:
        return create_model(arch, stem="imagenet", num_classes=1000)
    # CIFAR-sized input: networks with a stem choice (ResNet-18/34/50) take the CIFAR stem, as the paper's pair
    return create_model(arch, num_classes=10, **model_info(arch).stem_options("cifar"))


def child(args):
    """One measurement in this fresh process; prints one JSON line."""
    from resdist import runtime

    runtime.prefer_fast_cpu_kernels()
    runtime.prefer_blocking_host_dispatch("CPU")
    import numpy as np

    x = np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    planned = None
    if args.runtime.startswith("mnn"):
        from resdist.deploy import mnn

        before = _rss("VmRSS")
        run = mnn.load(args.model, threads=args.threads)[0]
        planned = mnn.session_memory_mb(args.model, threads=args.threads)

        def call():
            return run(x)
    elif args.runtime.startswith("ort"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        if args.runtime == "ort_noarena":
            options.enable_cpu_mem_arena = False
            options.enable_mem_pattern = False
        before = _rss("VmRSS")
        session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def call():
            return session.run(None, {name: x})[0]
    else:
        import mindspore as ms

        ms.set_context(mode=ms.GRAPH_MODE)
        ms.device_context.cpu.op_tuning.threads_num(args.threads)
        tensor = ms.Tensor(x)
        before = _rss("VmRSS")
        if args.runtime == "mindir":
            net = ms.nn.GraphCell(ms.load(args.model))
        else:
            net = _network(args.arch, args.size)
            net.set_train(False)

        def call():
            return net(tensor).asnumpy()
    for _ in range(args.warmup):
        call()
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    print(json.dumps({"median_ms": 1000 * statistics.median(times), "peak_mb": (_rss("VmHWM") - before) / 2**20,
                      "planned_mb": planned}))


def export_models(pairs, size, batches, folder, runtimes):
    """MindIR and ONNX (folded) of every network and batch size, and the MNN files the runtimes need, written
    once by this process; also each network's analytic activation peak (MB)."""
    import mindspore as ms
    import numpy as np

    from resdist.deploy.memory import analyse
    from resdist.models.fold import fold_batchnorm

    paths, analytic = {}, {}
    for arch in [a for pair in pairs for a in pair]:
        net = _network(arch, size)
        analytic[arch] = analyse(net, 1, size)["peak_bytes"] / 2**20
        net = fold_batchnorm(net)
        for batch in batches:
            x = ms.Tensor(np.zeros((batch, 3, size, size), np.float32))
            for fmt, suffix in (("MINDIR", ".mindir"), ("ONNX", ".onnx")):
                base = os.path.join(folder, f"{arch}_b{batch}")
                ms.export(net, x, file_name=base, file_format=fmt)
                paths[(arch, batch, fmt)] = base + suffix
            if any(rt.startswith("mnn") for rt in runtimes):
                from resdist.deploy import mnn

                paths[(arch, batch, "MNN")] = base + ".mnn"
                mnn.convert_onnx(base + ".onnx", base + ".mnn")
            if "mnn_int8" in runtimes:
                calib = np.random.default_rng(1).standard_normal((16, 3, size, size)).astype(np.float32) * 0.5
                paths[(arch, batch, "MNN_INT8")] = base + ".int8.mnn"
                mnn.quantize(base + ".mnn", base + ".int8.mnn", calib, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    return paths, analytic


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="resnet50:plain50", help="comma list of RESNET:PLAIN pairs")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (each a fresh process per cell)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", default="1", help="comma list of kernel thread counts (every runtime)")
    parser.add_argument("--quick", action="store_true", help="batch 1, one round, mindir and ort, 8 runs")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "inference_latency.json"))
    parser.add_argument("--plot_only", action="store_true", help="redraw the PNG from --output's JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", help=argparse.SUPPRESS)
    parser.add_argument("--arch", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--thread_count", dest="threads_child", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.threads = args.threads_child
        child(args)
        return 0
    if args.plot_only:
        with open(args.output) as f:
            plot(json.load(f), os.path.splitext(args.output)[0] + ".png")
        return 0
    if args.quick:
        args.batches, args.rounds, args.runtimes, args.runs = "1", 1, "mindir,ort", 8
    from resdist import runtime

    runtime.prefer_fast_cpu_kernels()
    from benchutil import portable_command, save_report

    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    runtimes = args.runtimes.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    started = time.time()
    folder = tempfile.mkdtemp()
    paths, analytic = export_models(pairs, args.size, batches, folder, runtimes)
    formats = {"mindir": "MINDIR", "mnn": "MNN", "mnn_int8": "MNN_INT8", "ort": "ONNX", "ort_noarena": "ONNX"}
    samples = {}
    for r in range(args.rounds):
        for batch in batches:
            for n in threads:
                for rt in runtimes:
                    for pair in pairs:
                        for arch in pair:  # ResNet and plain back to back
                            model = paths.get((arch, batch, formats.get(rt)), "")
                            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--runtime", rt, "--arch",
                                   arch, "--batch", str(batch), "--size", str(args.size), "--model", model,
                                   "--warmup", str(args.warmup), "--runs", str(args.runs), "--thread_count", str(n)]
                            out = subprocess.run(cmd, capture_output=True, text=True)
                            if out.returncode != 0:
                                raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
                            result = json.loads(out.stdout.strip().splitlines()[-1])
                            samples.setdefault((rt, arch, batch, n), []).append(result)
                            print(f"round {r + 1} {rt:11s} {arch:9s} batch {batch} {n} thr: "
                                  f"{result['median_ms']:8.2f} ms, peak +{result['peak_mb']:7.1f} MB", flush=True)
    rows = []
    print(f"\n{'runtime':11s} {'batch':>5s} {'thr':>3s} {'pair':18s} {'latency R/P':>11s} {'memory R/P':>10s}   "
          f"{'ResNet ms':>9s} {'plain ms':>9s} {'ResNet MB':>9s} {'plain MB':>9s}")
    for batch in batches:
        for n in threads:
            for rt in runtimes:
                for resnet, plain in pairs:
                    cells = {a: samples[(rt, a, batch, n)] for a in (resnet, plain)}
                    med = {a: {k: statistics.median(s[k] for s in cells[a]) for k in ("median_ms", "peak_mb")}
                           for a in (resnet, plain)}
                    row = {"runtime": rt, "batch": batch, "threads": n, "resnet": resnet, "plain": plain,
                           "size": args.size,
                           "latency_ratio": med[resnet]["median_ms"] / med[plain]["median_ms"],
                           "memory_ratio": med[resnet]["peak_mb"] / med[plain]["peak_mb"],
                           "resnet_ms": med[resnet]["median_ms"], "plain_ms": med[plain]["median_ms"],
                           "resnet_peak_mb": med[resnet]["peak_mb"], "plain_peak_mb": med[plain]["peak_mb"],
                           "resnet_analytic_peak_mb": analytic[resnet], "plain_analytic_peak_mb": analytic[plain],
                           "samples": cells}
                    if cells[resnet][0].get("planned_mb") is not None:
                        row.update(resnet_planned_mb=cells[resnet][0]["planned_mb"],
                                   plain_planned_mb=cells[plain][0]["planned_mb"],
                                   planned_ratio=cells[resnet][0]["planned_mb"] / cells[plain][0]["planned_mb"])
                    rows.append(row)
                    print(f"{rt:11s} {batch:5d} {n:3d} {resnet + '/' + plain:18s} {row['latency_ratio']:10.2f}x "
                          f"{row['memory_ratio']:9.2f}x   {row['resnet_ms']:9.2f} {row['plain_ms']:9.2f} "
                          f"{row['resnet_peak_mb']:9.1f} {row['plain_peak_mb']:9.1f}"
                          + (f"   planned {row['resnet_planned_mb']:.1f}/{row['plain_planned_mb']:.1f} MB"
                             if "planned_ratio" in row else ""))
    wall = time.time() - started
    print(f"wall time {wall / 60:.1f} min")
    report = {"size": args.size, "rounds": args.rounds, "runs": args.runs, "warmup": args.warmup,
              "threads": threads, "wall_seconds": round(wall, 1), "cpus": os.cpu_count(), "rows": rows,
              "command": portable_command(__file__, argv if argv is not None else sys.argv[1:])}
    save_report(report, args.output)
    if len(batches) > 1:  # the plot's axis is the batch size
        plot(report, os.path.splitext(args.output)[0] + ".png")
    return 0


def plot(report, path):
    """ResNet / plain ratios of latency and peak memory per runtime, against the batch size."""
    from plotting import line_chart

    series = {}
    for row in report["rows"]:
        for what, key in (("latency", "latency_ratio"), ("memory", "memory_ratio")):
            label = f"{what}, {row['runtime']}" + (f", {row['threads']} thr" if len(report.get("threads", [1])) > 1
                                                    else "")
            xs, ys = series.setdefault(label, ([], []))
            xs.append(row["batch"])
            ys.append(row[key])
    pair = f"{report['rows'][0]['resnet']} / {report['rows'][0]['plain']}"
    line_chart(series, path, f"{pair} at {report['size']}x{report['size']}: ratio (above 1: plain is better)",
               "batch size", "ResNet / plain", size=(760, 420), dashed=[k for k in series if k.startswith("memory")])
    print(f"written to {path}")


if __name__ == "__main__":
    sys.exit(main())
