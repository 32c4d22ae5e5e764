#!/usr/bin/env python
"""Convert torchvision's ResNet-18/34/50 weights into a teacher checkpoint for this project.

    python scripts/convert_torchvision.py --weights resnet50-0676ba61.pth --arch resnet50 --output resnet50_tv.ckpt
    python train.py --config configs/imagenet_plain50_rd.yaml --data_path DIR --teacher_ckpt resnet50_tv.ckpt

.pth files are read with torch.load(weights_only=True) (pip install torch); an .npz of the same names needs numpy
only. The checkpoint records arch resnetN and the ImageNet stem; the classes come from the weights (1000).
"""
import argparse
import os
import sys

from resdist import runtime  # noqa: E402  (imports no MindSpore)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="torchvision state dict (.pth) or .npz with its names")
    parser.add_argument("--arch", required=True, choices=("resnet18", "resnet34", "resnet50"))
    parser.add_argument("--output", required=True, help="checkpoint to write (.ckpt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    runtime.prefer_fast_cpu_kernels()
    from resdist import checkpoint as ckpt_io
    from resdist.errors import UserError
    from resdist.train.torchvision_import import convert, read_state_dict

    try:
        if os.path.exists(args.output) and not args.overwrite:
            raise UserError(f"{args.output} exists; pass --overwrite to replace it")
        net = convert(read_state_dict(args.weights), args.arch)
        num_classes = int(net.fc.bias.shape[0])
        ckpt_io.save(args.output, ckpt_io.network_params(net),
                     {**ckpt_io.network_identity(args.arch, stem="imagenet"), "procedure": "teacher",
                      "num_classes": num_classes, "source": os.path.basename(args.weights)})
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {args.arch}, ImageNet stem, {num_classes} classes, from {args.weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
