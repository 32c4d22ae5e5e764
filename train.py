#!/usr/bin/env python
"""Train a network with this project's procedures.

    python train.py                                   # demo: a short run on generated data
    python train.py --config configs/cifar10_resnet20_teacher.yaml --data_path DIR [--key value ...]

Every key of the YAML recipes can be overridden on the command line; `python train.py --help` lists them.
"""
import os
import sys

from resdist import runtime  # imports no MindSpore: the CPU kernel choice must come first


def main(argv=None):
    isa_note = runtime.prefer_fast_cpu_kernels()
    from resdist.checkpoint import CheckpointError
    from resdist.config import ConfigError, parse_args
    from resdist.data import DatasetError

    try:
        cfg, args = parse_args(argv, "train", __doc__.strip().splitlines()[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list_models:
        from resdist.models import list_models
        print("\n".join(list_models()))
        return 0
    try:
        from resdist.trainer import check_inputs, prepare_output_dir, train
        check_inputs(cfg)  # bad input fails before anything is written
        rank, group_size = runtime.init_context(cfg.device_target, cfg.mode, cfg.seed, cfg.distribute)
        prepare_output_dir(cfg, rank)
        log_name = "train.log" if group_size == 1 else f"train_rank{rank}.log"
        runtime.setup_logging(os.path.join(cfg.output_dir, log_name), rank)
        log = runtime.logger
        log.info("CPU kernels: %s", isa_note)
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
            last = history[-1]
            log.info("finished: %s; checkpoints and metrics.json in %s",
                     ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "epoch"), cfg.output_dir)
    except (ConfigError, DatasetError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
