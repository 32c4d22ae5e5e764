#!/usr/bin/env python
"""Turn a downloaded MIT67 or Caltech101 archive into the imagefolder layout train.py reads (README
"Fine-tuning"), with symbolic links instead of copies:

    python scripts/prepare_downstream.py mit67 --root DIR --output data/mit67
        # DIR: Images/<class>/*.jpg, TrainImages.txt, TestImages.txt (the official split)
    python scripts/prepare_downstream.py caltech101 --root DIR --output data/caltech101 [--train_per_class 30]
        # DIR: 101_ObjectCategories/<class>/*.jpg; BACKGROUND_Google excluded; the rest of each class is val/
"""
import argparse
import sys

from resdist.data.prepare import PrepareError, caltech101_splits, mit67_splits, write_image_folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=("mit67", "caltech101"))
    parser.add_argument("--root", required=True, help="the unpacked archive")
    parser.add_argument("--output", required=True, help="the image folder to make (must not exist)")
    parser.add_argument("--train_per_class", type=int, default=30, help="caltech101: training images per class")
    parser.add_argument("--seed", type=int, default=0, help="caltech101: which images are the training ones")
    args = parser.parse_args(argv)
    try:
        if args.dataset == "mit67":
            splits = mit67_splits(args.root)
        else:
            if args.train_per_class < 1:
                raise PrepareError("--train_per_class must be at least 1")
            splits = caltech101_splits(args.root, args.train_per_class, args.seed)
        counts, classes = write_image_folder(splits, args.output)
    except (PrepareError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {classes} classes, {counts['train']} train / {counts['val']} val images (links)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
