#!/usr/bin/env python
"""Evaluate a checkpoint: top-1 and top-5 accuracy, printed and written as JSON.

    python eval.py --config configs/cifar10_resnet20_teacher.yaml --ckpt_file best.ckpt --data_path DIR
    python eval.py --config configs/cifar10_plain20_rd.yaml --mindir plain20.mindir --data_path DIR
    python eval.py --config configs/cifar10_plain20_rd.yaml --onnx plain20.onnx --data_path DIR

A CIFAR folder with its official test file is evaluated on it; otherwise the validation split held out of
the training set (val_split) is used, and the output says which.
"""
import sys

from resdist import cli  # imports no MindSpore: the CPU kernel choice must come first


def run(cfg, cpu_note):
    from resdist.deploy.eval_job import run_eval

    run_eval(cfg, cpu_note)


def main(argv=None):
    return cli.run_entry_point("eval", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
