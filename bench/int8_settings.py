#!/usr/bin/env python
"""Where an INT8 model loses accuracy: trained CIFAR-10 networks quantized under several post-training settings,
side by side, each against its own float model on the held-out data_batch_5: top-1, and top-1 agreement with the
float model on all --images and on the first --check_images (the sample export.py's after-write check uses, which
needs 95%).

    python bench/int8_settings.py --data_path ../shared/data/cifar-10-batches-bin \\
        --ckpt_files bench/results/cifar10_converged/resnet56_teacher.ckpt,RUN/final.ckpt \\
        --output bench/results/int8_settings/NAME.json

Settings (--settings picks some, in this order):
  export         export.py's INT8 model: MinMax calibration, uint8 activations, per-channel int8 weights (uint8 in
                 the first convolution)
  entropy        the same, calibrated by entropy (KL) instead of MinMax
  percentile     the same, calibrated by percentile
  a16w8          activations in 16 bits, weights int8: close to what quantizing the weights alone costs
  a8w16          weights in 16 bits, activations uint8: close to what quantizing the activations alone costs
  float_first10  export, with the first 10 convolutions left in float (mixed precision)
  float_last10   export, with the last 10 convolutions left in float

Each network is built from its checkpoint's own record (Dirac convolutions and BatchNorm folded, as export.py
writes it), exported to float ONNX (batch --batch) and quantized by resdist.deploy.quantize, calibrated on
--calib_size training images (evaluation transform); onnxruntime runs every model with this CPU's kernels (the
report names the CPU's instruction sets: without VNNI, int8 kernels can saturate; see docs/deployment.md).
Accuracy only: run it beside anything; bench/int8.py measures latency.

How much a figure owes to the calibration sample: --calib_samples K quantizes every setting K times, on export.py's
sample and on K-1 more disjoint samples of the same size, and reports the spread (the first sample's figures stay
the headline). Histogram calibrations (percentile, entropy) also depend a little on --batch: onnxruntime sets the
histogram's bin width from the first calibration batch. export.py writes batch 1: --batch 1 measures its file.
"""
import argparse
import os
import sys
import tempfile
import time

from benchutil import ROOT, cpu_flags, portable_command, portable_path, save_report, write_text

from resdist.errors import UserError

SETTINGS = {  # name: keyword arguments of resdist.deploy.quantize.quantize_onnx (+ "float": which convs stay float)
    "export": {},
    "entropy": {"method": "entropy"},
    "percentile": {"method": "percentile"},
    "a16w8": {"activations": "uint16"},
    "a8w16": {"weights": "int16"},
    "float_first10": {"float": "first10"},
    "float_last10": {"float": "last10"},
}


def float_nodes(which, convs):
    """The convolution names ``which`` ("firstN" / "lastN") leaves in float."""
    if which.startswith("first"):
        return convs[:int(which[5:])]
    return convs[-int(which[4:]):]


def float_onnx(ckpt_file, path, batch):
    """Export the checkpoint's deployable network to the float ONNX file ``path``; returns its arch."""
    import mindspore as ms
    import numpy as np

    from resdist import checkpoint as ckpt_io
    from resdist.build import network_from_record
    from resdist.models.fold import fold_batchnorm

    arch, net = network_from_record(ckpt_io.read(ckpt_file, "--ckpt_files"), ckpt_file, "--ckpt_files")
    ms.export(fold_batchnorm(net), ms.Tensor(np.zeros((batch, 3, 32, 32), np.float32)),
              file_name=os.path.splitext(path)[0], file_format="ONNX")
    return arch


def calibration_samples(data_path, shape, num_classes, size, count):
    """``count`` disjoint calibration samples of ``size`` training images: export.py's own first (its
    ``--calib_size`` draw), then the rest of a ``count * size`` draw (which contains it) in chunks."""
    import numpy as np

    from resdist.data import calibration_images

    first, split = calibration_images("cifar10", data_path, shape, num_classes, size, "data_batch_5")
    samples = [first]
    if count > 1:
        pool, _ = calibration_images("cifar10", data_path, shape, num_classes, count * size, "data_batch_5")
        taken = {image.tobytes() for image in first}
        rest = np.stack([image for image in pool if image.tobytes() not in taken])
        samples += [rest[start:start + size] for start in range(0, (count - 1) * size, size) if start < len(rest)]
    return samples, split


def measure(ckpt_file, settings, args, folder):
    """One network's report entry: its float top-1 and every setting's INT8 top-1 and agreement."""
    from resdist.data import held_out_images
    from resdist.deploy import quantize
    from resdist.deploy.exported import load_exported

    name = os.path.splitext(os.path.basename(ckpt_file))[0]
    path = os.path.join(folder, "float.onnx")
    arch = float_onnx(ckpt_file, path, args.batch)
    exported = load_exported(path)
    shape = list(exported.input_shape)
    samples, calib_split = calibration_samples(args.data_path, shape, exported.num_classes, args.calib_size,
                                               args.calib_samples)
    images, labels, check_split = held_out_images("cifar10", args.data_path, shape, args.images,
                                                           "data_batch_5")
    reference = exported.predict(images).argmax(1)
    entry = {"checkpoint": portable_path(ckpt_file), "arch": arch, "images": len(images),
             "float_top1": round(100.0 * float((reference == labels).mean()), 2), "settings": {}}
    print(f"{name}: {arch}, float top-1 {entry['float_top1']:.2f}% on {check_split}", flush=True)
    convs = quantize.conv_node_names(path)
    for setting in settings:
        options = dict(SETTINGS[setting])
        kept = float_nodes(options.pop("float"), convs) if "float" in options else []
        int8_path = os.path.join(folder, f"{setting}.onnx")
        measured = []
        for number, calib in enumerate(samples, 1):
            quantize.quantize_onnx(path, int8_path, calib, float_nodes=kept, **options)
            predicted = load_exported(int8_path).predict(images).argmax(1)
            os.remove(int8_path)
            agree = predicted == reference
            measured.append({"top1": round(100.0 * float((predicted == labels).mean()), 2),
                             "agreement": round(100.0 * float(agree.mean()), 2),
                             "check_agreement": round(100.0 * float(agree[:args.check_images].mean()), 2)})
            last, sample = measured[-1], f" (calibration sample {number}/{len(samples)})" if len(samples) > 1 else ""
            print(f"  {setting:14s} top-1 {last['top1']:6.2f}% ({last['top1'] - entry['float_top1']:+.2f}), agreement "
                  f"{last['agreement']:6.2f}% (first {args.check_images}: {last['check_agreement']:6.2f}%){sample}",
                  flush=True)
        row = dict(measured[0], float_convolutions=len(kept))
        row["top1_change"] = round(row["top1"] - entry["float_top1"], 2)
        row["passes_export_check"] = row["check_agreement"] >= 100 * quantize.MIN_TOP1_AGREEMENT
        if len(measured) > 1:
            top1 = [m["top1"] for m in measured]
            row.update(samples=measured, top1_min=min(top1), top1_max=max(top1),
                       top1_mean=round(sum(top1) / len(top1), 2))
        entry["settings"][setting] = row
    entry["calib_split"] = calib_split
    return entry


def markdown(report):
    settings = report["settings"]
    lines = [f"INT8 top-1 (change from float) and top-1 agreement with the float model on {report['images']} "
             f"held-out images (data_batch_5); in brackets the agreement on the first {report['check_images']}, "
             f"as export.py checks it (95% needed); with several calibration samples, the range of top-1 over them "
             f"(the first is export.py's). ONNX batch {report['batch']}. `{report['command']}`", "",
             "| network | float | " + " | ".join(settings) + " |", "|---|---:|" + "---:|" * len(settings)]
    for net in report["networks"]:
        cells = [f"{s['top1']:.2f} ({s['top1_change']:+.2f}), {s['agreement']:.1f}% [{s['check_agreement']:.1f}%]"
                 + (f"; {len(s['samples'])} samples {s['top1_min']:.2f}-{s['top1_max']:.2f}" if "samples" in s else "")
                 for s in (net["settings"][k] for k in settings)]
        lines.append(f"| {net['arch']} `{net['checkpoint']}` | {net['float_top1']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", required=True, help="CIFAR-10 binary folder (calibration: training images; "
                        "accuracy: data_batch_5, held out)")
    parser.add_argument("--ckpt_files", required=True, help="comma-separated checkpoints saved by train.py (best, "
                        "final, last or epoch files; a Dirac run's are folded)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    parser.add_argument("--images", type=int, default=10000, help="held-out images measured (default: all 10000)")
    parser.add_argument("--check_images", type=int, default=512, help="the first N of them: export.py's check "
                        "sample (its --calib_size, default 512)")
    parser.add_argument("--calib_size", type=int, default=512, help="calibration images (export.py's default)")
    parser.add_argument("--calib_samples", type=int, default=1, help="disjoint calibration samples of "
                        "--calib_size images each, the first export.py's: every setting is quantized on each and the "
                        "spread reported (default 1)")
    parser.add_argument("--batch", type=int, default=100, help="batch size of the ONNX files (export.py writes 1; "
                        "percentile and entropy ranges depend a little on it)")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "int8_settings", "report.json"),
                        help="report JSON (and a .md table beside it)")
    args = parser.parse_args(argv)
    files = [f for f in args.ckpt_files.split(",") if f]
    settings = [s for s in args.settings.split(",") if s]
    unknown = [s for s in settings if s not in SETTINGS]
    if not files or not settings or unknown:
        parser.error(f"--settings: unknown {', '.join(unknown)}; choose from {', '.join(SETTINGS)}" if unknown else
                     "--ckpt_files and --settings each need at least one item")
    if not 0 < args.check_images <= args.images or min(args.calib_size, args.batch, args.calib_samples) < 1:
        parser.error("--check_images must be between 1 and --images; --calib_size, --calib_samples and --batch "
                     "at least 1")
    started, networks = time.time(), []
    try:
        for ckpt_file in files:
            with tempfile.TemporaryDirectory(prefix="int8-settings-") as folder:
                networks.append(measure(ckpt_file, settings, args, folder))
    except (UserError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = {"command": portable_command(__file__, argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M"), "onnxruntime": __import__("onnxruntime").__version__,
              "cpu_flags": cpu_flags(), "images": args.images, "check_images": args.check_images,
              "calib_size": args.calib_size, "calib_samples": args.calib_samples, "batch": args.batch,
              "settings": settings, "wall_seconds": round(time.time() - started, 1),
              "networks": networks}
    save_report(report, args.output)
    write_text(os.path.splitext(args.output)[0] + ".md", markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
