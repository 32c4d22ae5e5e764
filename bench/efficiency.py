#!/usr/bin/env python
"""What removing shortcuts buys at inference, analytically: peak live activation memory, activation traffic,
FLOPs and parameters of every ResNet and its plain twins (resdist.deploy.memory), with the share of ResNet's peak
held by tensors waiting for a shortcut.

    python bench/efficiency.py            # tables printed, bench/results/efficiency_analytic.json, two PNGs

Model of the deployed graph: float32, BatchNorm folded, conv+ReLU and add+ReLU fused, no in-place reuse; a
tensor lives from its operator to its last consumer. ImageNet family at 224x224 (ImageNet stem), CIFAR family at
32x32; batch 1 and 32.
"""
import argparse
import os
import sys

from resdist import runtime  # noqa: E402

runtime.prefer_fast_cpu_kernels()

from benchutil import save_report  # noqa: E402
from plotting import line_chart  # noqa: E402

from resdist.deploy.memory import analyse  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET = (18, 34, 50)
CIFAR = (20, 32, 44, 56, 110)


def variants(depth, imagenet):
    kwargs = {"stem": "imagenet", "num_classes": 1000} if imagenet else {"num_classes": 10}
    yield f"resnet{depth}", {**kwargs}
    yield f"plain{depth} (full)", {**kwargs, "plain_variant": "full"}
    yield f"plain{depth} (keep_downsample)", {**kwargs, "plain_variant": "keep_downsample"}


def main(argv=None):
    from resdist.models import create_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args(argv)
    rows = []
    for family, depths, size in (("imagenet", IMAGENET, 224), ("cifar", CIFAR, 32)):
        for depth in depths:
            for label, kwargs in variants(depth, family == "imagenet"):
                net = create_model(label.split(" ")[0], **kwargs)
                for batch in map(int, args.batches.split(",")):
                    r = analyse(net, batch, size)
                    rows.append({"network": label, "depth": depth, "family": family, "size": size, "batch": batch,
                                 **r})
    by_key = {(r["network"], r["batch"]): r for r in rows}
    print(f"{'network':28s} {'batch':>5s} {'peak MB':>9s} {'vs ResNet':>9s} {'shortcut share':>14s} "
          f"{'traffic MB':>11s} {'GFLOPs':>8s} {'params M':>9s}")
    for r in rows:
        base = by_key[(f"resnet{r['depth']}", r["batch"])]
        r["peak_ratio_resnet_over_this"] = base["peak_bytes"] / r["peak_bytes"]
        r["shortcut_share_of_peak"] = r["shortcut_bytes_at_peak"] / r["peak_bytes"]
        print(f"{r['network']:28s} {r['batch']:5d} {r['peak_bytes'] / 2**20:9.2f} "
              f"{r['peak_ratio_resnet_over_this']:8.2f}x {100 * r['shortcut_share_of_peak']:13.1f}% "
              f"{r['traffic_bytes'] / 2**20:11.1f} {r['flops'] / 1e9:8.3f} {r['params'] / 1e6:9.3f}")
    save_report({"model": __doc__.split("\n\n")[2], "rows": rows},
                os.path.join(args.output_dir, "efficiency_analytic.json"))
    for family, depths in (("imagenet", IMAGENET), ("cifar", CIFAR)):
        series = {}
        for label in ("resnet", "plain (full)", "plain (keep_downsample)"):
            name = (lambda d: f"resnet{d}") if label == "resnet" else (lambda d, v=label[7:-1]: f"plain{d} ({v})")
            series[f"{label}, batch 1"] = (list(depths), [by_key[(name(d), 1)]["peak_bytes"] / 2**20 for d in depths])
        path = os.path.join(args.output_dir, f"efficiency_peak_memory_{family}.png")
        line_chart(series, path, f"Peak activation memory at inference, {family} family, batch 1 (analytic)",
                   "depth", "MB", size=(760, 420))
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
