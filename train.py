#!/usr/bin/env python
"""Train a network with this project's procedures.

    python train.py                                   # demo: a short run on generated data
    python train.py --config configs/cifar10_resnet20_teacher.yaml --data_path DIR [--key value ...]
    python train.py --config configs/cifar10_plain20_rd.yaml --data_path DIR --teacher_ckpt TEACHER.ckpt

Every key of the YAML recipes can be overridden on the command line; `python train.py --help` lists them.
"""
import os
import sys

from resdist import cli, runtime  # import no MindSpore: the CPU kernel choice must come first


def run(cfg, cpu_note):
    from resdist.trainer import check_inputs, prepare_output_dir, train

    check_inputs(cfg)  # bad input fails before anything is written
    rank, group_size = runtime.init_context(cfg.device_target, cfg.mode, cfg.seed, cfg.distribute)
    removed = prepare_output_dir(cfg, rank)
    log_name = "train.log" if group_size == 1 else f"train_rank{rank}.log"
    runtime.setup_logging(os.path.join(cfg.output_dir, log_name), rank)
    log = runtime.logger
    log.info("CPU runtime: %s", cpu_note)
    if removed:
        log.info("removed unfinished writes of an interrupted run: %s", ", ".join(removed))
    if cfg.dataset == "synthetic":
        log.info("DEMO: training on generated synthetic images (learnable class patterns), not real data. "
                 "For real training pass --config configs/<recipe>.yaml --data_path DIR")
    log.info("config: %s", " ".join(f"{k}={v}" for k, v in sorted(cfg.items())))
    if rank == 0:
        import yaml
        with open(os.path.join(cfg.output_dir, "config.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(dict(cfg), f, sort_keys=True)
    history = train(cfg, rank, group_size)
    if history:
        log.info("finished: %s; checkpoints and metrics.json in %s",
                 ", ".join(f"{k} {v:.4g}" for k, v in history[-1].items() if k != "epoch"), cfg.output_dir)


def main(argv=None):
    return cli.run_entry_point("train", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
