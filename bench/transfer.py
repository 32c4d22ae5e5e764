#!/usr/bin/env python
"""Transfer: a CIFAR-10 network fine-tuned on a task it was not trained for, against the same network trained
from scratch with the same budget, and a ResNet fine-tuned the same way and from scratch (docs/results.md,
the transfer run).

The task: scikit-learn's bundled handwritten digits (1,797 8x8 grey images, 10 classes; ``pip install -e
".[transfer]"``), written once as a 32x32 PNG image folder: 100 training images a class (--train_per_class), the
other 797 in val/ (held out, never trained on). Every arm trains with configs/digits_finetune.yaml; an arm is a
network and the checkpoint it starts from (none: from scratch).

    python bench/transfer.py --work_dir /tmp/transfer                 # the default arms, resumable
    python bench/transfer.py --work_dir DIR --arm mine=plain20:runs/x/best.ckpt --arm plain20_scratch=plain20

Each arm's run folder is DIR/per_class_N/runs/NAME: an arm already finished is skipped, an interrupted one
continues from its last.ckpt. Writes bench/results/transfer_digits[_N].json and .md (the final epoch's validation
top-1 is the result; the best epoch is chosen on val/ and so is optimistic). Run it on an otherwise idle machine.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import yaml
from benchutil import ROOT, key_values, portable_command, save_report
from run_snapshot import epochs_done

from resdist.fsutil import published, remove_abandoned_staging  # imports no MindSpore

RECIPE = os.path.join("configs", "digits_finetune.yaml")
TRAIN_PER_CLASS = 100
# name, network, checkpoint to start from ("" = from scratch): the short study's plain-56 RD student (the Hub model
# until 2026-12-04, hence the arm's name), the same network from scratch, the ResNet-56 that the short study
# trained (that student's teacher), and that ResNet from scratch (which tells what pretraining adds from what
# shortcuts add)
DEFAULT_ARMS = (
    ("plain56_hub_finetuned", "plain56", os.path.join("bench", "results", "cifar10_study", "plain56_rd_eta1.ckpt")),
    ("plain56_scratch", "plain56", ""),
    ("resnet56_finetuned", "resnet56", os.path.join("bench", "results", "cifar10_study", "resnet56_teacher.ckpt")),
    ("resnet56_scratch", "resnet56", ""),
)


def digits_arrays():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit('error: the digits come with scikit-learn: pip install -e ".[transfer]"') from None
    digits = load_digits()
    return digits.images, digits.target


def write_digits_folder(images, labels, root, train_per_class=TRAIN_PER_CLASS, seed=0):
    """The digits as an image folder (train/<d>/*.png, val/<d>/*.png), 32x32 RGB, ink white on black: per class
    a seeded draw of ``train_per_class`` for training, the rest for validation. Written in a staging folder and
    renamed, so an interrupted write leaves nothing that looks complete; an existing folder is reused."""
    if os.path.isdir(root):
        return root
    remove_abandoned_staging(root)  # an earlier, interrupted write
    with published(root) as staging:
        _write_digits(images, labels, staging, train_per_class, seed)
    return root


def _write_digits(images, labels, staging, train_per_class, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    scale = 255.0 / max(float(images.max()), 1.0)
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        if len(members) <= train_per_class:
            raise SystemExit(f"error: digit {digit} has {len(members)} images, not more than {train_per_class}")
        for split, chosen in (("train", members[:train_per_class]), ("val", members[train_per_class:])):
            folder = os.path.join(staging, split, str(digit))
            os.makedirs(folder, exist_ok=True)
            for i in chosen:
                grey = Image.fromarray((images[i] * scale).round().astype(np.uint8))
                grey.resize((32, 32), Image.BILINEAR).convert("RGB").save(os.path.join(folder, f"{i:04d}.png"))


def parse_arm(text):
    name, _, spec = text.partition("=")
    arch, _, ckpt = spec.partition(":")
    if not name or not arch:
        raise argparse.ArgumentTypeError(f"--arm takes NAME=ARCH[:CHECKPOINT], not {text!r}")
    return name, arch, ckpt


def procedure_of(arch):
    from resdist.models import model_info  # the registry says what a network is, not its name

    return "teacher" if model_info(arch).residual else "plain"


def run_arm(name, arch, ckpt, data_dir, work_dir, settings):
    """Train one arm (skipped if finished, resumed if interrupted); returns its metrics.json, the seconds this
    call trained, and the command."""
    run_dir = os.path.join(work_dir, "runs", name)
    with open(os.path.join(ROOT, RECIPE), encoding="utf-8") as f:
        epochs = int(dict(settings).get("epochs", yaml.safe_load(f)["epochs"]))
    cmd = [sys.executable, "train.py", "--config", RECIPE, "--data_path", data_dir, "--output_dir", run_dir,
           "--arch", arch, "--procedure", procedure_of(arch), "--seed", "1"]
    if ckpt:
        cmd += ["--pretrained_ckpt", ckpt]
    for key, value in settings:
        cmd += [f"--{key}", value]
    if os.path.isfile(os.path.join(run_dir, "last.ckpt")):
        cmd += ["--resume", "auto"]
    start = time.time()
    if epochs_done(run_dir) == epochs:
        print(f"[{name}] finished, skipped", flush=True)
    else:
        print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
        if subprocess.call(cmd, cwd=ROOT) != 0:
            raise SystemExit(f"[{name}] train.py failed; its log is {run_dir}/train.log. Rerun to continue it")
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return metrics, time.time() - start, cmd


def arm_result(name, arch, ckpt, metrics, command):
    epochs = metrics["epochs"]
    summary = metrics["summary"]
    return {"arm": name, "arch": arch, "start": ckpt or "scratch",
            "command": portable_command("train.py", command[2:]),
            "final_val_top1": summary["final_val_top1"], "final_epoch": summary["final_epoch"],
            "best_val_top1": summary["best_val_top1"], "best_epoch": summary["best_epoch"],
            "final_train_acc": epochs[-1]["train_acc"],
            "epoch_seconds_total": round(sum(e.get("epoch_seconds", 0.0) for e in epochs), 1),
            "val_top1_per_epoch": [e["val_top1"] for e in epochs]}


def table(results):
    lines = ["| arm | network | starts from | final val top-1 (%) | best (%) @ epoch | train acc, last epoch (%) "
             "| time |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['arm']} | {r['arch']} | {r['start']} | {r['final_val_top1']:.2f} | "
                     f"{r['best_val_top1']:.2f} @ {r['best_epoch']} | {r['final_train_acc']:.2f} | "
                     f"{r['epoch_seconds_total'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", required=True,
                        help="the digits image folders and the arms' run folders (made if absent)")
    parser.add_argument("--arm", dest="arms", action="append", type=parse_arm, default=[],
                        metavar="NAME=ARCH[:CKPT]", help="an arm (repeatable); default: "
                        + ", ".join(f"{n}={a}" + (f":{c}" if c else "") for n, a, c in DEFAULT_ARMS))
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key for every arm, e.g. epochs=1 for a quick check")
    parser.add_argument("--train_per_class", type=int, default=TRAIN_PER_CLASS,
                        help="training images a class, the rest held out (default %(default)s; fewer: the low-data "
                             "case where a pretrained start matters most)")
    parser.add_argument("--output", default="",
                        help="the report (JSON; a .md table beside it); default "
                             "bench/results/transfer_digits[_N].json (N: --train_per_class if not the default)")
    args = parser.parse_args(argv)
    settings = key_values(parser, args.settings)
    if args.train_per_class < 1:
        parser.error("--train_per_class must be at least 1")
    arms = args.arms or list(DEFAULT_ARMS)
    from resdist.models import is_model

    for name, arch, ckpt in arms:
        if not is_model(arch):
            parser.error(f"arm {name}: unknown network {arch!r} (python train.py --list_models)")
        if ckpt and not os.path.isfile(os.path.join(ROOT, ckpt) if not os.path.isabs(ckpt) else ckpt):
            parser.error(f"arm {name}: checkpoint {ckpt} does not exist")
    if len({name for name, _, _ in arms}) != len(arms):
        parser.error("two arms have the same name")
    suffix = "" if args.train_per_class == TRAIN_PER_CLASS else f"_{args.train_per_class}"
    output = args.output or os.path.join(ROOT, "bench", "results", f"transfer_digits{suffix}.json")
    work_dir = os.path.join(os.path.abspath(args.work_dir), f"per_class_{args.train_per_class}")
    data_dir = write_digits_folder(*digits_arrays(), os.path.join(work_dir, "digits"), args.train_per_class)
    results = []
    for name, arch, ckpt in arms:
        metrics, seconds, command = run_arm(name, arch, ckpt, data_dir, work_dir, settings)
        results.append(arm_result(name, arch, ckpt, metrics, command))
        print(f"[{name}] final val top-1 {results[-1]['final_val_top1']:.2f}% ({seconds / 60:.1f} min this call)")
    report = {"task": f"scikit-learn digits as 32x32 PNGs, {args.train_per_class} training images a class, the "
                      f"rest (held out) for validation", "recipe": RECIPE, "settings": dict(settings),
              "command": portable_command(__file__, sys.argv[1:] if argv is None else argv), "arms": results}
    save_report(report, output)
    text = table(results)
    with open(os.path.splitext(output)[0] + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
