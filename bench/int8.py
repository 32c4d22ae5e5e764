#!/usr/bin/env python
"""FP32 against INT8 in onnxruntime, ResNet against its plain twin, side by side in one run: top-1 on the held-out
data_batch_5 (trained CIFAR networks), model size, latency at batch 1 and 8, peak memory, and what onnxruntime
made of each INT8 graph (how many convolutions and additions it fused into integer kernels).

    python bench/int8.py --data_path ../shared/data/cifar-10-batches-bin --jpeg_path ../shared/data/cifar10-jpeg-mini
    python bench/int8.py ... --cifar resnet20=A.ckpt,plain20=B.ckpt --no_imagenet   # other checkpoints

Every INT8 model is made as ``export.py --quantize int8`` makes it (resdist.deploy.quantize: opset 13, QDQ,
per-channel int8 weights, uint8 in the first convolution unless --first_conv_weights int8, MinMax calibration unless
--cifar names another for the network, ARCH=CKPT@percentile, on --calib_size images of the training split,
evaluation transform), once with uint8 activations (the default) and once with int8 ones. Each INT8 top-1 is
measured twice: as onnxruntime runs the file on this CPU (its fused integer kernels), and as the QDQ graph defines
it (graph optimisation off: what an NPU or a CPU with VNNI computes); x86 CPUs without VNNI saturate with int8
weights in the first convolution, so the two differ there (the report names the CPU's flags). ResNet-50 / plain-50
run at 224x224 with random weights (10 classes; calibrated on --calib_size_224 of the JPEG folder's training images:
onnxruntime's calibration keeps every tensor of every calibration call in memory, tens of MB an image at 224):
latency and memory do not depend on the weights, so they have no accuracy column. Latency and memory come from
bench/inference_latency.py's measurement (a fresh process per cell, median of --runs calls after --warmup; memory:
peak resident minus resident before the session was built), interleaved over --rounds. Run on an otherwise idle
machine.
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
from resdist import runtime  # noqa: E402
from resdist.errors import UserError  # noqa: E402

runtime.prefer_fast_cpu_kernels()

from benchutil import cpu_flags, portable_command, save_report  # noqa: E402
from plotting import line_chart  # noqa: E402

STUDY = os.path.join("bench", "results", "cifar10_converged")
# the converged study's networks as committed: its teachers, the Hub model (row plain20_rd) and the depth-56 plain
# student whose final weights are kept (row plain56_dirac_rd)
DEFAULT_CIFAR = ",".join(f"{arch}={path}" for arch, path in (
    ("resnet20", os.path.join(STUDY, "resnet20_teacher.ckpt")),
    ("plain20", os.path.join("hub", "assets", "plain20_rd_cifar10.ckpt")),
    ("resnet56", os.path.join(STUDY, "resnet56_teacher.ckpt")),
    ("plain56", os.path.join(STUDY, "plain56_dirac_rd.ckpt") + "@percentile")))  # as its Hub card calibrates
VARIANTS = ("fp32", "int8_u8", "int8_s8")  # float; INT8 with uint8 / int8 activations
FUSED = ("QLinearConv", "QLinearAdd", "QGemm", "Conv", "FusedConv", "Add", "Transpose", "QuantizeLinear",
         "DequantizeLinear")


def optimized_ops(path):
    """Operator counts of the graph onnxruntime actually runs (its optimised copy, written by the session)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = path + ".optimized.onnx"
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    os.remove(options.optimized_model_filepath)
    return {op: ops.count(op) for op in FUSED if op in ops}


def make_models(spec, folder, batches, calib_size, first_conv_weights="uint8"):
    """Float and INT8 ONNX files of one network at every batch size: ({(variant, batch): path}, facts)."""
    import mindspore as ms
    import numpy as np

    from resdist import checkpoint as ckpt_io
    from resdist.data import calibration_images
    from resdist.deploy import quantize
    from resdist.models import create_model, model_info
    from resdist.models.fold import fold_batchnorm

    # 224: the ImageNet stem; 32: the CIFAR stem where the network has a choice (ResNet-18, the paper's CIFAR pair)
    stem = "imagenet" if spec["size"] > 64 else "cifar"
    net = create_model(spec["arch"], num_classes=10, **model_info(spec["arch"]).stem_options(stem))
    if spec["ckpt"]:
        ckpt_io.load_network(net, ckpt_io.read(spec["ckpt"]), arch=spec["arch"])
    net.set_train(False)
    deployed = fold_batchnorm(net)
    calib = None
    paths, facts = {}, {}
    for batch in batches:
        base = os.path.join(folder, f"{spec['name']}_b{batch}")
        ms.export(deployed, ms.Tensor(np.zeros((batch, 3, spec["size"], spec["size"]), np.float32)),
                  file_name=base, file_format="ONNX")
        paths[("fp32", batch)] = base + ".onnx"
        if calib is None:
            calib, _ = calibration_images(spec["dataset"], spec["data"], [batch, 3, spec["size"],
                                                                                    spec["size"]], 10, calib_size)
        for variant, activations in (("int8_u8", "uint8"), ("int8_s8", "int8")):
            paths[(variant, batch)] = f"{base}.{variant}.onnx"
            quantize.quantize_onnx(base + ".onnx", paths[(variant, batch)], calib, activations,
                                   spec["calib_method"], first_conv_weights=first_conv_weights)
    for variant in VARIANTS:
        path = paths[(variant, batches[0])]
        facts[variant] = {"bytes": os.path.getsize(path), "ops": optimized_ops(path)}
    return paths, facts


def top1(path, data_path, reference=False, images=0):
    """Top-1 (%) of an ONNX file on the held-out data_batch_5 (its first ``images``; 0: all), as eval.py --onnx
    computes it; ``reference``: with onnxruntime's graph optimisation off, so the quantized values are computed
    exactly as the QDQ graph defines them, by no integer kernel of this CPU (what an NPU or a CPU with VNNI
    computes; resdist.deploy.quantize)."""
    from resdist.build import build_dataset
    from resdist.config import Config
    from resdist.deploy.exported import load_exported
    from resdist.evaluate import evaluate

    batch = min(500, images or 500)
    cfg = Config(dataset="cifar10", data_path=data_path, val_split="data_batch_5", batch_size=batch, image_size=32,
                 num_parallel_workers=2, synthetic_train_size=1, synthetic_val_size=1, num_classes=10,
                 train_subset=0)
    dataset, _ = build_dataset(cfg, "val")
    if images:
        dataset = dataset.take(-(-images // batch))
    return evaluate(None, dataset, load_exported(path, optimize=not reference).predict)["top1"]


def measure(path, batch, size, args):
    cmd = [sys.executable, os.path.join(ROOT, "bench", "inference_latency.py"), "--child", "--runtime", "ort",
           "--arch", "-", "--batch", str(batch), "--size", str(size), "--model", path, "--warmup",
           str(args.warmup), "--runs", str(args.runs)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_specs(args):
    from resdist.deploy.quantize import ONNX_METHODS

    specs = []
    for item in filter(None, args.cifar.split(",")):
        arch, _, ckpt = item.partition("=")
        ckpt, _, method = ckpt.partition("@")
        if method and method not in ONNX_METHODS:
            raise SystemExit(f"error: --cifar {item}: unknown calibration method '{method}'; after '@' write one of "
                             f"{', '.join(ONNX_METHODS)} (or nothing: minmax)")
        ckpt = ckpt if os.path.isabs(ckpt) else os.path.join(ROOT, ckpt)
        if not os.path.isfile(ckpt):
            raise SystemExit(f"error: checkpoint {ckpt} of {arch} does not exist (finish its study row, or pass "
                             f"--cifar {arch}=PATH)")
        specs.append({"name": arch, "arch": arch, "ckpt": ckpt, "size": 32, "dataset": "cifar10",
                      "data": args.data_path, "calib_method": method or "minmax"})
    if not args.no_imagenet:
        for arch in ("resnet50", "plain50"):
            specs.append({"name": f"{arch}_224", "arch": arch, "ckpt": "", "size": 224, "dataset": "imagefolder",
                          "data": args.jpeg_path, "calib_method": "minmax"})
    return specs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", required=True, help="CIFAR-10 binary folder (calibration, top-1)")
    parser.add_argument("--jpeg_path", default="", help="image folder calibrating the 224x224 networks")
    parser.add_argument("--cifar", default=DEFAULT_CIFAR, help="ARCH=CKPT[@METHOD],... trained CIFAR-10 networks, "
                        "each INT8 copy calibrated by METHOD (minmax, percentile or entropy; default minmax) "
                        "(default: the converged study's committed networks: its two teachers, the Hub plain-20 and "
                        "the Dirac plain-56 + RD, percentile as a Dirac student needs)")
    parser.add_argument("--no_imagenet", action="store_true", help="leave out ResNet-50 / plain-50 at 224")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--calib_size", type=int, default=512)
    parser.add_argument("--calib_size_224", type=int, default=32, help="calibration images of the 224x224 "
                        "networks (random weights: their scales do not change the latency)")
    parser.add_argument("--first_conv_weights", choices=("uint8", "int8"), default="uint8", help="weights of the "
                        "convolution reading the image (export.py's option; int8 saturates on x86 without VNNI)")
    parser.add_argument("--val_images", type=int, default=0, help="top-1 on the first N images of data_batch_5 "
                        "(0: all 10,000)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "int8.json"))
    args = parser.parse_args(argv)
    if not args.no_imagenet and not args.jpeg_path:
        parser.error("--jpeg_path is needed for the 224x224 networks (or pass --no_imagenet)")
    batches = [int(b) for b in args.batches.split(",")]
    specs = parse_specs(args)
    started = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="int8-bench-") as folder:
            rows = run(specs, batches, folder, args)
    except UserError as exc:  # e.g. fewer calibration images than asked for
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = {"command": portable_command(__file__, argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "batches": batches,
              "calib_size": args.calib_size, "calib_size_224": args.calib_size_224, "rounds": args.rounds,
              "first_conv_weights": args.first_conv_weights, "cpu_flags": cpu_flags(),
              "val_images": args.val_images or 10000,
              "runs": args.runs, "onnxruntime": __import__("onnxruntime").__version__,
              "wall_seconds": round(time.time() - started, 1), "rows": rows}
    print_table(report)
    save_report(report, args.output)
    plot(report, os.path.splitext(args.output)[0] + ".png")
    write_markdown(report, os.path.splitext(args.output)[0] + ".md")
    return 0


def run(specs, batches, folder, args):
    """Every network's files made in ``folder``, its top-1 and the interleaved latency rounds: the report's rows."""
    rows = []
    for spec in specs:
        paths, facts = make_models(spec, folder, batches, args.calib_size if spec["size"] == 32 else
                                   args.calib_size_224, args.first_conv_weights)
        row = {"net": spec["name"], "arch": spec["arch"], "size": spec["size"], "calib_method": spec["calib_method"],
               "checkpoint": os.path.relpath(spec["ckpt"], ROOT) if spec["ckpt"] else None, "paths": paths,
               **{v: dict(facts[v]) for v in VARIANTS}}
        if spec["ckpt"]:
            for variant in VARIANTS:
                path = paths[(variant, max(batches))]  # the same model at every batch size: the fastest
                row[variant]["top1"] = top1(path, args.data_path, images=args.val_images)
                if variant != "fp32":
                    row[variant]["top1_reference"] = top1(path, args.data_path, True, args.val_images)
                print(f"{spec['name']:12s} {variant:8s} top-1 {row[variant]['top1']:.2f}% (reference: "
                      f"{row[variant].get('top1_reference', row[variant]['top1']):.2f}%)", flush=True)
        rows.append(row)
    samples = {}
    for r in range(args.rounds):
        for batch in batches:
            for row in rows:  # a network's three variants back to back, ResNet next to its plain twin
                for variant in VARIANTS:
                    got = measure(row["paths"][(variant, batch)], batch, row["size"], args)
                    samples.setdefault((row["net"], variant, batch), []).append(got)
                    print(f"round {r + 1} batch {batch} {row['net']:12s} {variant:8s} {got['median_ms']:8.2f} ms, "
                          f"peak +{got['peak_mb']:6.1f} MB", flush=True)
    for row in rows:
        for variant in VARIANTS:
            for batch in batches:
                cell = samples[(row["net"], variant, batch)]
                row[variant][f"ms_b{batch}"] = statistics.median(s["median_ms"] for s in cell)
                row[variant][f"peak_mb_b{batch}"] = statistics.median(s["peak_mb"] for s in cell)
        del row["paths"]
    return rows


def print_table(report):
    print(f"\nINT8: {report['first_conv_weights']} weights in the first convolution; CPU: "
          f"{' '.join(report['cpu_flags']) or '?'}; ref: top-1 of the QDQ graph without this CPU's integer kernels")
    print(f"{'net':12s} {'variant':8s} {'top-1':>7s} {'ref':>7s} {'MB':>6s} " + " ".join(
        f"{'ms b' + str(b):>8s} {'peak b' + str(b):>8s}" for b in report["batches"]) + "  fused by onnxruntime")
    for row in report["rows"]:
        for variant in VARIANTS:
            cell = row[variant]
            acc = f"{cell['top1']:6.2f}%" if "top1" in cell else "      -"
            acc += f" {cell['top1_reference']:6.2f}%" if "top1_reference" in cell else "       -"
            times = " ".join(f"{cell[f'ms_b{b}']:8.2f} {cell[f'peak_mb_b{b}']:8.1f}" for b in report["batches"])
            print(f"{row['net']:12s} {variant:8s} {acc} {cell['bytes'] / 2**20:6.2f} {times}  {cell['ops']}")


LABELS = {"fp32": "float32", "int8_u8": "INT8, uint8 activations", "int8_s8": "INT8, int8 activations"}


def twins(rows):
    """(ResNet row, plain row) pairs of the report: a plain network and its teacher, as the registry pairs them."""
    from resdist.models import model_info, teacher_of

    by_arch = {(r["arch"], r["size"]): r for r in rows}
    return [(by_arch[(teacher_of(r["arch"]), r["size"])], r) for r in rows
            if not model_info(r["arch"]).residual and (teacher_of(r["arch"]), r["size"]) in by_arch]


def write_markdown(report, path):
    """The report as README tables: every variant with its time relative to float, then the plain/ResNet time
    ratio in float and in INT8 (the aims: INT8 plain at most 0.6x its float time, and the plain network's
    advantage over its ResNet at least as large in INT8 as in float)."""
    batches = report["batches"]
    head = ["net", "variant", "top-1 (this CPU)", "top-1 (QDQ reference)", "MB"] + \
        [f"ms, batch {b}" for b in batches] + [f"x float, batch {b}" for b in batches] + \
        [f"peak MB, batch {b}" for b in batches]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"]:
        name = row["net"] + (" (random weights)" if not row["checkpoint"] else "")
        calibrated = f", {row['calib_method']}" if row["calib_method"] != "minmax" else ""
        for variant in VARIANTS:
            cell = row[variant]
            top1 = f"{cell['top1']:.2f}%" if "top1" in cell else "-"
            ref = f"{cell['top1_reference']:.2f}%" if "top1_reference" in cell else "-"
            label = LABELS[variant] + (calibrated if variant != "fp32" else "")
            cells = [name if variant == "fp32" else "", label, top1, ref, f"{cell['bytes'] / 2**20:.2f}"]
            cells += [f"{cell[f'ms_b{b}']:.2f}" for b in batches]
            cells += [f"{cell[f'ms_b{b}'] / row['fp32'][f'ms_b{b}']:.2f}x" for b in batches]
            cells += [f"{cell[f'peak_mb_b{b}']:.1f}" for b in batches]
            lines.append("| " + " | ".join(cells) + " |")
    pairs = twins(report["rows"])
    if pairs:
        lines += ["", "| plain / ResNet time | " + " | ".join(f"batch {b}" for b in batches) + " |",
                  "|---|" + "---|" * len(batches)]
        for resnet, plain in pairs:
            for variant in VARIANTS:
                ratios = [plain[variant][f"ms_b{b}"] / resnet[variant][f"ms_b{b}"] for b in batches]
                lines.append(f"| {plain['net']} / {resnet['net']}, {LABELS[variant]} | "
                             + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"written to {path}")


def plot(report, path):
    """INT8 speed-up over float (float ms / INT8 ms) per network against the batch size."""
    series = {}
    for row in report["rows"]:
        for variant in ("int8_u8", "int8_s8"):
            speedups = [row["fp32"][f"ms_b{b}"] / row[variant][f"ms_b{b}"] for b in report["batches"]]
            series[f"{row['net']} {variant}"] = (report["batches"], speedups)
    line_chart(series, path, "INT8 speed-up over float32 in onnxruntime (above 1: INT8 is faster)", "batch size",
               "float ms / INT8 ms", size=(900, 520), dashed=[k for k in series if k.endswith("s8")])
    print(f"written to {path}")


if __name__ == "__main__":
    sys.exit(main())
