#!/usr/bin/env python
"""How much of a network's weights survives per-channel INT8: the deployable (BatchNorm-folded) convolutions of
each checkpoint, side by side, quantized as ``export.py --quantize int8`` quantizes weights (symmetric int8, one
scale per output channel: the channel's largest |w| becomes 127). No data needed; no MindSpore graph runs.

    python bench/int8_weights.py --ckpt_files A.ckpt,B.ckpt --output bench/results/int8_weights/NAME.json

Why: a Dirac-parametrised student (``--dirac true``) deploys as W = alpha * identity + beta * W_learned folded into
each 3x3 convolution. Output channel o's centre tap on input channel o then carries alpha, and can be many
times larger than any other weight of the channel; since that one weight sets the channel's scale, the learned
part is left only a few of the 127 levels. Per network this reports:
  - weight SQNR (dB): 10 log10(sum w^2 / sum (w - int8(w))^2) per convolution (median and lowest);
  - centre ratio: per square 3x3 convolution, the median over output channels of |w[o, o, centre]| over the
    largest other |w| of channel o (below 1: an ordinary convolution; far above 1: the identity dominates);
  - levels left: 127 / centre ratio, capped at 127: how many int8 steps the largest learned weight gets
    (below 8, the learned part of that convolution is quantized to 3 bits or fewer); layers under 8 are counted.
"""
import argparse
import os
import sys

from benchutil import ROOT, portable_command, portable_path, save_report

from resdist.errors import UserError

FEW_LEVELS = 8


def int8_per_channel(weight):
    """``weight`` (out, in, kh, kw) rounded to symmetric int8 with one scale per output channel, as float."""
    import numpy as np

    flat = weight.reshape(weight.shape[0], -1)
    scale = np.abs(flat).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0  # an all-zero channel stays zero
    return (np.clip(np.round(flat / scale), -127, 127) * scale).reshape(weight.shape)


def layer_facts(weight):
    """{"sqnr_db", and for a square 3x3 convolution "centre_ratio", "levels_left"} of one folded conv weight."""
    import numpy as np

    weight = weight.astype(np.float64)
    error = float(((weight - int8_per_channel(weight)) ** 2).sum())
    facts = {"sqnr_db": float("inf") if error == 0 else 10 * np.log10(float((weight ** 2).sum()) / error)}
    out_ch, in_ch, kh, kw = weight.shape
    if out_ch == in_ch and kh == kw == 3:
        channels = np.arange(out_ch)
        centre = np.abs(weight[channels, channels, 1, 1])
        others = np.abs(weight).copy()
        others[channels, channels, 1, 1] = 0.0
        largest_other = others.reshape(out_ch, -1).max(axis=1)
        ratio = float(np.median(centre / np.maximum(largest_other, 1e-30)))
        facts.update(centre_ratio=ratio, levels_left=min(127.0, 127.0 / ratio) if ratio > 0 else 127.0)
    return facts


def folded_conv_weights(ckpt_file):
    """(network name, [(layer name, weight array)]) of the checkpoint's deployable network: Dirac convolutions
    and BatchNorm folded, as export.py writes it."""
    from mindspore import nn

    from resdist import checkpoint as ckpt_io
    from resdist.build import network_from_record
    from resdist.models.fold import fold_batchnorm

    arch, net = network_from_record(ckpt_io.read(ckpt_file, "--ckpt_files"), ckpt_file, "--ckpt_files")
    folded = fold_batchnorm(net)
    return arch, [(name, cell.weight.asnumpy()) for name, cell in folded.cells_and_names()
                  if isinstance(cell, nn.Conv2d)]


def summarize(arch, ckpt_file, layers):
    """One network's report entry from its per-layer facts."""
    import numpy as np

    sqnr = [f["sqnr_db"] for _, f in layers]
    square = [f for _, f in layers if "centre_ratio" in f]
    entry = {"arch": arch, "checkpoint": portable_path(ckpt_file),
             "convolutions": len(layers), "sqnr_db_median": round(float(np.median(sqnr)), 2),
             "sqnr_db_lowest": round(float(min(sqnr)), 2)}
    if square:
        entry.update(square_3x3=len(square),
                     centre_ratio_median=round(float(np.median([f["centre_ratio"] for f in square])), 3),
                     levels_left_median=round(float(np.median([f["levels_left"] for f in square])), 1),
                     layers_under_8_levels=sum(f["levels_left"] < FEW_LEVELS for f in square))
    entry["layers"] = {name: {k: round(v, 3) for k, v in f.items()} for name, f in layers}
    return entry


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_files", required=True,
                        help="comma-separated checkpoints saved by train.py (any network; Dirac ones folded)")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "int8_weights", "report.json"),
                        help="report JSON (default: bench/results/int8_weights/report.json)")
    args = parser.parse_args(argv)
    files = [f for f in args.ckpt_files.split(",") if f]
    if not files:
        parser.error("--ckpt_files names no checkpoint")
    rows = []
    try:
        for ckpt_file in files:
            arch, weights = folded_conv_weights(ckpt_file)
            rows.append(summarize(arch, ckpt_file, [(name, layer_facts(w)) for name, w in weights]))
    except (UserError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'checkpoint':30s} {'arch':9s} {'SQNR dB (median, lowest)':>25s} {'centre ratio':>13s} "
          f"{'levels left':>12s} {'layers < 8 levels':>18s}")
    for row in rows:
        print(f"{os.path.basename(row['checkpoint'])[:30]:30s} {row['arch']:9s} {row['sqnr_db_median']:13.1f} "
              f"{row['sqnr_db_lowest']:11.1f} {row.get('centre_ratio_median', float('nan')):13.2f} "
              f"{row.get('levels_left_median', float('nan')):12.1f} "
              f"{str(row.get('layers_under_8_levels', '-')) + ' of ' + str(row.get('square_3x3', 0)):>18s}")
    save_report({"command": portable_command(__file__, argv if argv is not None else sys.argv[1:]),
                 "quantization": "symmetric int8 per output channel (scale = largest |w| / 127), BatchNorm folded",
                 "networks": rows}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
