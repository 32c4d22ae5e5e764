#!/usr/bin/env python
"""Evaluate a checkpoint: top-1 and top-5 accuracy, printed and written as JSON.

    python eval.py --config configs/cifar10_resnet20_teacher.yaml --ckpt_file best.ckpt --data_path DIR

A CIFAR folder with its official test file is evaluated on it; otherwise the validation split held out of
the training set (val_split) is used, and the output says which.
"""
import os
import sys

from resdist import cli, runtime  # import no MindSpore: the CPU kernel choice must come first


def run(cfg, cpu_note):
    from resdist import checkpoint as ckpt_io
    from resdist.build import build_dataset, build_network, identity, write_json
    from resdist.config import ConfigError
    from resdist.evaluate import evaluate

    runtime.setup_logging()
    log = runtime.logger
    if not cfg.ckpt_file:
        raise ConfigError("no checkpoint given: pass --ckpt_file PATH")
    log.info("CPU runtime: %s", cpu_note)
    runtime.init_context(cfg.device_target, cfg.mode, cfg.seed)
    state = ckpt_io.read(cfg.ckpt_file)  # before the data: a bad checkpoint should fail fast
    dataset, info = build_dataset(cfg, "val")
    if cfg.num_classes and cfg.num_classes != info["num_classes"]:
        raise ConfigError(f"num_classes={cfg.num_classes} but {cfg.dataset} has {info['num_classes']} classes")
    net = build_network(cfg, cfg.arch, info["num_classes"])
    ckpt_io.load_network(net, state, "checkpoint", cfg.ckpt_file, cfg.arch, identity(cfg, cfg.arch))
    log.info("evaluating %s (%s) on %s: %d images, %s", cfg.ckpt_file, cfg.arch, cfg.dataset,
             info["num_samples"], info["split"])
    result = evaluate(net, dataset)
    result.update(arch=cfg.arch, ckpt_file=os.path.abspath(cfg.ckpt_file), dataset=cfg.dataset,
                  data_path=cfg.data_path, split=info["split"])
    out = cfg.output_json or os.path.splitext(cfg.ckpt_file)[0] + f"_eval_{cfg.dataset}.json"
    write_json(out, result)
    print(f"top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  on {result['num_samples']} images "
          f"({info['split']}); written to {out}")


def main(argv=None):
    return cli.run_entry_point("eval", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
