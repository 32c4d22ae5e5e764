"""`python train.py` with no arguments: Residual Distillation end to end on generated data, about two minutes
on 2 CPU cores.

Three runs with the same budget (configs/demo.yaml: 1,024 synthetic images, 4 epochs, cosine learning rate): a
ResNet-20 teacher; its shortcut-free plain-20 student trained with RD from that teacher; the same plain-20 alone. Then a
side-by-side summary. It shows the method running, not that RD helps: the data are synthetic, the budget tiny.
"""
import os
import time

from .config import Config
from .train.trainer import run_job

STEPS = [  # (name, what, changes to the config)
    ("teacher", "ResNet-20 teacher (with shortcuts)", {"arch": "resnet20", "procedure": "teacher"}),
    ("rd_student", "plain-20 + Residual Distillation", {"arch": "plain20", "procedure": "rd"}),
    ("plain_alone", "plain-20 alone (same budget)", {"arch": "plain20", "procedure": "plain"}),
]


def run_demo(cfg, cpu_note=""):
    """Run the three steps in ``<output_dir>/{teacher,rd_student,plain_alone}`` and print the summary."""
    root = cfg.output_dir or os.path.join("outputs", f"demo_{time.strftime('%Y%m%d-%H%M%S')}")
    rows = []
    for name, what, changes in STEPS:
        job = Config({**cfg, **changes, "demo": False, "output_dir": os.path.join(root, name)})
        if job.procedure == "rd":
            job.teacher_ckpt = os.path.join(root, "teacher", "best.ckpt")
        print(f"\n=== demo step {len(rows) + 1}/3: {what} -> {job.output_dir}", flush=True)
        history = run_job(job, cpu_note)
        rows.append((name, what, job, history))
    print(summary(rows))
    return rows


def summary(rows):
    lines = ["", "=== demo summary (synthetic data, tiny budget: shows RD running end to end, proves nothing "
                 "about accuracy; README 'Results' has real CIFAR-10 numbers)",
             f"{'run':36s} {'val top-1 final / best':>24s}   last-epoch loss terms"]
    for _, what, job, history in rows:
        final, best = history[-1]["val_top1"], max(h["val_top1"] for h in history)
        terms = ", ".join(f"{k[len('train_'):]} {v:.3f}" for k, v in history[-1].items()
                          if k.startswith("train_") and k not in ("train_loss", "train_acc", "train_images_per_s"))
        lines.append(f"{what:36s} {final:10.2f}% / {best:6.2f}%      {terms}")
    lines.append("")
    for name, what, job, _ in rows:
        lines.append(f"{what:36s} {os.path.join(job.output_dir, 'best.ckpt')}")
    student = next(job for name, _, job, _ in rows if name == "rd_student")
    lines += ["", "The RD student's best.ckpt is the bare plain-20 (no shortcut, no teacher): evaluate it with",
              f"    python eval.py --arch plain20 --ckpt_file {os.path.join(student.output_dir, 'best.ckpt')}",
              "Train on real data: python train.py --config configs/cifar10_plain20_rd.yaml --data_path DIR "
              "--teacher_ckpt TEACHER.ckpt"]
    return "\n".join(lines)
