#!/usr/bin/env python
"""Train a network with this project's procedures.

    python train.py                                   # demo (configs/demo.yaml): teacher, RD student, plain alone
    python train.py --config configs/cifar10_resnet20_teacher.yaml --data_path DIR [--key value ...]
    python train.py --config configs/cifar10_plain20_rd.yaml --data_path DIR --teacher_ckpt TEACHER.ckpt

Every key of the YAML recipes can be overridden on the command line; `python train.py --help` lists them.
"""
import os
import sys

from resdist import cli  # imports no MindSpore: the CPU kernel choice must come first


def run(cfg, cpu_note):
    if cfg.check_only:
        from resdist.train.trainer import check_inputs

        notes = check_inputs(cfg)
        print(f"checked: {cfg.procedure} {cfg.arch} on {cfg.dataset}, run folder {cfg.output_dir}"
              + (f" (resuming {cfg.resume})" if cfg.resume else "") + "".join(f"; note: {n}" for n in notes))
    elif cfg.demo:
        from resdist.demo import run_demo

        run_demo(cfg, cpu_note)
    else:
        from resdist.train.trainer import run_job

        run_job(cfg, cpu_note)


DEMO_RECIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "demo.yaml")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    return cli.run_entry_point("train", __doc__, run, argv or ["--config", DEMO_RECIPE])


if __name__ == "__main__":
    sys.exit(main())
