#!/usr/bin/env python
"""Are a checkpoint's BatchNorm moving statistics what its weights need? Validation top-1 with the statistics
saved in the checkpoint, and again after re-estimating them from training images at the checkpoint's weights.

    python bench/bn_recalibration.py --ckpt_file RUN/last.ckpt --data_path ../shared/data/cifar-10-batches-bin

Training keeps an exponential average (MindSpore momentum 0.9) of each BatchNorm's batch statistics while the
weights move; evaluation normalises with that average. When the weights move fast (a deep plain network at a high
learning rate), the average can trail what the current weights produce, and validation accuracy drops although
the weights are fine. Re-estimating the statistics tells the two apart: each BatchNorm's mean and variance become
the average of its batch statistics in training mode over --images training images, augmented as in training
(a fixed subset, crop and flip seeded with 0: training's statistics come from augmented images, and the network
is fitted to them). Training mode normalises with each batch's own statistics, so the saved averages do not
affect the new ones. Top-1 is also given on a fixed set of --images training images without augmentation (what
the weights fit, in the evaluation mode's terms). The checkpoint is not changed; only the report is written.
Forward passes only: about 2.5 minutes for a plain-56 with the defaults on 2 cores. CIFAR-10 only.
"""
import argparse
import os
import sys

from resdist import runtime  # noqa: E402
from resdist.errors import UserError  # noqa: E402

runtime.prefer_fast_cpu_kernels()

from benchutil import ROOT, portable_command, save_report  # noqa: E402


def batchnorms(net):
    import mindspore.nn as nn

    return [(name, cell) for name, cell in net.cells_and_names() if isinstance(cell, nn.BatchNorm2d)]


def recalibrate(net, dataset, seed=0):
    """Set every BatchNorm's moving mean and variance to the average of its batch statistics over ``dataset``.
    Returns, per BatchNorm, the median over channels of |saved mean - new mean| / new standard deviation and of
    saved variance / new variance."""
    import mindspore as ms
    import mindspore.ops as ops
    import numpy as np

    from resdist.data import epoch_iterator

    layers = batchnorms(net)
    saved = {name: (bn.moving_mean.asnumpy().copy(), bn.moving_variance.asnumpy().copy()) for name, bn in layers}
    for _, bn in layers:
        # nn.BatchNorm2d (MindSpore 2.10) runs its bn_train primitive in training mode; with momentum 1 that
        # primitive's moving statistics become the batch's own
        if not isinstance(getattr(bn, "bn_train", None), ops.BatchNorm):
            raise RuntimeError("this MindSpore's nn.BatchNorm2d has no bn_train primitive: update recalibrate()")
        bn.bn_train = ops.BatchNorm(is_training=True, epsilon=bn.eps, momentum=1.0, data_format=bn.format)
    sums = {name: [0.0, 0.0] for name, _ in layers}
    batches = 0
    net.set_train(True)
    for images, _ in epoch_iterator(dataset, seed, 0):
        net(images)
        for name, bn in layers:
            sums[name][0] = sums[name][0] + bn.moving_mean.asnumpy()
            sums[name][1] = sums[name][1] + bn.moving_variance.asnumpy()
        batches += 1
    net.set_train(False)
    shifts, ratios = [], []
    for name, bn in layers:
        mean, var = (s / batches for s in sums[name])
        shifts.append(float(np.median(np.abs(mean - saved[name][0]) / np.sqrt(var + bn.eps))))
        ratios.append(float(np.median((saved[name][1] + bn.eps) / (var + bn.eps))))
        bn.moving_mean.set_data(ms.Tensor(mean.astype(np.float32)))
        bn.moving_variance.set_data(ms.Tensor(var.astype(np.float32)))
    return shifts, ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_file", required=True, help="a checkpoint saved by train.py (last, best or epoch)")
    parser.add_argument("--data_path", required=True, help="the CIFAR-10 binary folder (cifar-10-batches-bin)")
    parser.add_argument("--images", type=int, default=5000,
                        help="training images to re-estimate the statistics from (default 5000)")
    parser.add_argument("--batch_size", type=int, default=500, help="batch of the statistics (default 500)")
    parser.add_argument("--output", default=None,
                        help="report JSON (default: bench/results/bn_recalibration/<run folder>_<checkpoint>.json)")
    args = parser.parse_args(argv)
    if args.images < args.batch_size or args.batch_size < 2:
        parser.error("--images must be at least --batch_size, and --batch_size at least 2")
    try:
        import numpy as np

        from resdist import checkpoint as ckpt_io
        from resdist.build import network_from_record
        from resdist.data import create_dataset
        from resdist.evaluate import evaluate

        runtime.init_context("CPU", "graph", 0)
        state = ckpt_io.read(args.ckpt_file)
        arch, net = network_from_record(state, args.ckpt_file)
        val, info = create_dataset("cifar10", args.data_path, "val", 500)
        calib, calib_info = create_dataset("cifar10", args.data_path, "calib", args.batch_size,
                                           calib_size=args.images)
        train, train_info = create_dataset("cifar10", args.data_path, "train", args.batch_size,
                                           train_subset=args.images)
        before = {"val": evaluate(net, val), "train_no_augmentation": evaluate(net, calib)}
        print(f"saved statistics: val top-1 {before['val']['top1']:.2f}%, "
              f"the {args.images} training images {before['train_no_augmentation']['top1']:.2f}%", flush=True)
        shifts, ratios = recalibrate(net, train)
        after = {"val": evaluate(net, val), "train_no_augmentation": evaluate(net, calib)}
        print(f"re-estimated:     val top-1 {after['val']['top1']:.2f}%, "
              f"the {args.images} training images {after['train_no_augmentation']['top1']:.2f}%")
        print(f"per BatchNorm, the median over channels of |saved mean - re-estimated mean| / re-estimated std: "
              f"median {np.median(shifts):.3f}, largest {max(shifts):.3f} over {len(shifts)} layers")
        print(f"per BatchNorm, the median over channels of saved variance / re-estimated variance: "
              f"median {np.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")
    except (UserError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = os.path.basename(os.path.dirname(os.path.abspath(args.ckpt_file)))
    output = args.output or os.path.join(ROOT, "bench", "results", "bn_recalibration",
                                         f"{run}_{os.path.splitext(os.path.basename(args.ckpt_file))[0]}.json")
    save_report({
        "command": portable_command(__file__, argv if argv is not None else sys.argv[1:]),
        "checkpoint": {"arch": arch, "epoch": ckpt_io.meta_value(state, "epoch"),
                       "sha256": ckpt_io.file_sha256(args.ckpt_file)},
        "statistics_from": train_info["split"] + " (training transform, seed 0)", "val_split": info["split"],
        "saved": {k: round(v["top1"], 2) for k, v in before.items()},
        "re_estimated": {k: round(v["top1"], 2) for k, v in after.items()},
        "mean_shift_in_std": {"median_over_layers": round(float(np.median(shifts)), 4),
                              "largest": round(max(shifts), 4), "layers": len(shifts)},
        "variance_ratio_saved_to_new": {"median_over_layers": round(float(np.median(ratios)), 4),
                                        "smallest": round(min(ratios), 4), "largest": round(max(ratios), 4)},
    }, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
