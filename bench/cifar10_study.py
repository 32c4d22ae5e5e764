#!/usr/bin/env python
"""The CIFAR-10 studies: does Residual Distillation make a deep plain network trainable, and as accurate as its ResNet?

Three named studies, each a list of rows trained with one shared budget (a recipe YAML) to which every row adds
its network, procedure, teacher and seed; validation is the held-out data_batch_5 in all:
  converged  configs/cifar10_converged.yaml: all 40,000 training images, 60 epochs (18,720 steps)
  plain18    configs/cifar10_plain18_study.yaml: the paper's own CIFAR pair, ResNet-18 and plain-18 with the CIFAR
             stem, the converged recipe for 30 epochs (9,360 steps)
  short      configs/cifar10_study.yaml: a fixed 10,000-image subset, 12 epochs (936 steps); the budget-limited
             record, finished

    python bench/cifar10_study.py --data_path ../shared/data/cifar-10-batches-bin            # run what is left
    python bench/cifar10_study.py --data_path DIR --rows plain20_rd                          # one row
    python bench/cifar10_study.py --study short --list                                       # what is done
    python bench/cifar10_study.py --report                                                   # table and plot only

Resumable and idempotent: a row whose result JSON exists is skipped; a row interrupted part-way continues from
its run folder's last.ckpt (``train.py --resume auto``); a student waits for its teacher's row. Each finished row
writes bench/results/<study folder>/<row>.json, the table and plot are regenerated, and --after_row (if given)
runs on those files, e.g. to commit them. Run folders (checkpoints, logs) stay under --output_dir, outside git;
--snapshot copies an unfinished row's resumable files into the results folder, to be committed and continued on
another machine (a row can outlast a working session, and the next session may get a fresh machine);
--snapshot_minutes M does the same every M minutes while a row trains.
"""
import argparse
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import run_snapshot
import yaml
from benchutil import key_values, save_report
from plotting import PALETTE, side_by_side

from resdist.checkpoint import file_sha256  # imports no MindSpore
from resdist.fsutil import published, write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Row:
    name: str
    arch: str
    procedure: str
    teacher: str = ""          # the row whose best.ckpt is the teacher
    seed: int = 1
    overrides: dict = field(default_factory=dict)

    @property
    def group(self):
        """Rows that differ only in their seed form one group of the table."""
        return self.name.rsplit("_seed", 1)[0]


@dataclass(frozen=True)
class Study:
    name: str
    recipe: str                # the shared budget of every row
    results: str               # its results folder, relative to the repository
    rows: tuple                # in the order they run

    def row(self, name):
        return next(r for r in self.rows if r.name == name)

    @property
    def names(self):
        return [r.name for r in self.rows]


# In the order they ran: teachers, then the comparisons that matter most, then seeds and variants. The two
# "eta1" rows (eta fixed at 1, the ablation) ran first by accident: until commit c3608dc the compiled step kept
# eta at 1.0 whatever the schedule said; their JSONs say so. --eta_min 1 gives that run with today's code.
SHORT = Study("short", "configs/cifar10_study.yaml", os.path.join("bench", "results", "cifar10_study"), (
    Row("resnet20_teacher", "resnet20", "teacher"),
    Row("resnet56_teacher", "resnet56", "teacher"),
    Row("plain56_alone_seed1", "plain56", "plain"),
    Row("plain56_rd_eta1", "plain56", "rd", "resnet56_teacher", overrides={"eta_min": 1.0}),
    Row("plain20_alone", "plain20", "plain"),
    Row("plain20_rd_eta1", "plain20", "rd", "resnet20_teacher", overrides={"eta_min": 1.0}),
    Row("plain56_rd_seed1", "plain56", "rd", "resnet56_teacher"),
    Row("plain20_rd", "plain20", "rd", "resnet20_teacher"),
    Row("plain56_kd", "plain56", "kd", "resnet56_teacher"),
    Row("plain20_kd", "plain20", "kd", "resnet20_teacher"),
    Row("plain56_alone_seed2", "plain56", "plain", seed=2),
    Row("plain56_rd_seed2", "plain56", "rd", "resnet56_teacher", seed=2),
    Row("plain56_rd_keep_downsample", "plain56", "rd", "resnet56_teacher",
        overrides={"plain_variant": "keep_downsample"}),
))
# Depth 20 first, so that a converged, deployable plain student exists early; then depth 56; then the
# Dirac-parametrised plain-56 (the authors' lever against under-fitting, which RD-56 showed: 9 points of training
# accuracy under its teacher), with RD and alone; then, as time allows, the extra rows. RD without the feature
# term (lambda = 0) comes first of those: it tests whether that term crowds out the cross-entropy; then KD at
# depth 56 (RD against the usual alternative); the second RD-56 seed (16 hours, the dearest) last.
CONVERGED = Study("converged", "configs/cifar10_converged.yaml",
                  os.path.join("bench", "results", "cifar10_converged"), (
    Row("resnet20_teacher", "resnet20", "teacher"),
    Row("plain20_rd", "plain20", "rd", "resnet20_teacher"),
    Row("plain20_alone", "plain20", "plain"),
    Row("resnet56_teacher", "resnet56", "teacher"),
    Row("plain56_rd_seed1", "plain56", "rd", "resnet56_teacher"),
    Row("plain56_alone", "plain56", "plain"),
    Row("plain56_dirac_rd", "plain56", "rd", "resnet56_teacher", overrides={"dirac": True}),
    Row("plain56_dirac_alone", "plain56", "plain", overrides={"dirac": True}),
    Row("plain56_rd_lambda0", "plain56", "rd", "resnet56_teacher", overrides={"fd_lambda": 0.0}),
    Row("plain56_kd", "plain56", "kd", "resnet56_teacher"),
    Row("plain56_rd_seed2", "plain56", "rd", "resnet56_teacher", seed=2),
))
# The paper's CIFAR architecture (ResNet-18 widths, CIFAR stem): the teacher first (the budget is chosen on it),
# then the fully plain student with RD, then the same student alone. The student is Dirac-parametrised, as the
# converged study's depth-56 rows advise: with Dirac the plain-56 RD student fits (97% training accuracy against
# 90%) and ends 4.5 points higher, and alone it fits far faster than the ordinary plain-56. The price is INT8:
# such a student needs percentile calibration (docs/deployment.md).
PLAIN18 = Study("plain18", "configs/cifar10_plain18_study.yaml", os.path.join("bench", "results", "cifar10_plain18"), (
    Row("resnet18_teacher", "resnet18", "teacher"),
    Row("plain18_rd", "plain18", "rd", "resnet18_teacher", overrides={"dirac": True}),
    Row("plain18_alone", "plain18", "plain", overrides={"dirac": True}),
))
STUDIES = {study.name: study for study in (CONVERGED, SHORT, PLAIN18)}


def teacher_checkpoint(teacher_row, results_dir):
    """A finished teacher row's best.ckpt is copied beside its JSON (and committed with it): students can be
    rerun on any machine, and its sha256 is in the row JSON."""
    return os.path.join(results_dir, f"{teacher_row}.ckpt")


def train_command(row, data_path, run_dir, results_dir, recipe, settings=()):
    cmd = [sys.executable, "train.py", "--config", recipe, "--data_path", data_path, "--output_dir", run_dir,
           "--arch", row.arch, "--procedure", row.procedure, "--seed", str(row.seed)]
    if row.teacher:
        cmd += ["--teacher_ckpt", teacher_checkpoint(row.teacher, results_dir)]
    for key, value in list(row.overrides.items()) + list(settings):
        cmd += [f"--{key}", str(value)]
    if os.path.isfile(os.path.join(run_dir, "last.ckpt")):
        cmd += ["--resume", "auto"]
    return cmd


def placeholders(data_path, output_dir, results_dir):
    """(machine path, what a user reads instead) pairs, to apply in order: the data and run folders become
    placeholders, the results folder its place in the repository (also when the runner ran from another
    checkout), this checkout's root nothing. Longest first, so that a folder inside another keeps its own name."""
    in_repo = [s.results for s in STUDIES.values() if results_dir.endswith(os.sep + s.results)]
    pairs = ((results_dir, in_repo[0] if in_repo else "RESULTS_DIR"), (data_path, "DATA_PATH"),
             (output_dir, "OUTPUT_DIR"), (ROOT + os.sep, ""))
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def portable(command, data_path, output_dir, results_dir):
    """The command as a user would type it: no machine paths."""
    out = []
    for arg in command[1:]:
        for old, new in placeholders(data_path, output_dir, results_dir):
            arg = arg.replace(old, new)
        out.append(arg)
    return "python " + " ".join(out)


def snapshot_dir(results_dir, row):
    """Where an unfinished row's resumable files are committed (``--snapshot``), so that a row longer than one
    working session continues on another machine; removed when the row finishes."""
    return os.path.join(results_dir, "unfinished", row.name)


def row_result(row, run_dir, wall_seconds, command):
    """The small JSON kept in git for a finished row: per-epoch curve, final and best validation accuracy."""
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        epochs = json.load(f)["epochs"]
    curve = [{k: e[k] for k in ("epoch", "val_top1", "val_top5", "train_loss", "train_acc", "epoch_seconds",
                                "train_images_per_s", "eta", "train_ce", "train_mixed_ce", "train_fd", "train_kd")
              if k in e} for e in epochs]
    best = max(epochs, key=lambda e: e["val_top1"])
    final_ckpt = os.path.join(run_dir, "final.ckpt")  # train.py writes it since 2026-12-04: what the Hub publishes
    best_ckpt = os.path.join(run_dir, "best.ckpt")
    return {
        "row": row.name, "group": row.group, "arch": row.arch, "procedure": row.procedure, "seed": row.seed,
        "teacher": row.teacher, "overrides": row.overrides, "recipe": command[command.index("--config") + 1],
        "command": command,
        "final_val_top1": epochs[-1]["val_top1"], "final_epoch": epochs[-1]["epoch"],
        "best_val_top1": best["val_top1"], "best_epoch": best["epoch"],
        "wall_seconds": round(wall_seconds, 1),
        "epoch_seconds_total": round(sum(e.get("epoch_seconds", 0.0) for e in epochs), 1),
        # best.ckpt is missing where a snapshot without it was restored and no later epoch was better
        **({"best_ckpt_sha256": file_sha256(best_ckpt)} if os.path.isfile(best_ckpt) else {}),
        **({"final_ckpt_sha256": file_sha256(final_ckpt)} if os.path.isfile(final_ckpt) else {}),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "epochs": curve,
    }


class StudyError(Exception):
    """A problem with the study's files or folders; main prints it as one ``error:`` line and exits 2."""


RESULT_KEYS = ("final_val_top1", "best_val_top1", "best_epoch", "seed", "group", "epochs")


def load_results(results_dir, study):
    out = {}
    for row in study.rows:
        path = os.path.join(results_dir, f"{row.name}.json")
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    result = json.load(f)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise StudyError(f"row result {path} cannot be read ({exc}); restore it (git checkout -- FILE) or "
                                 f"delete it to train the row again") from None
            if not isinstance(result, dict) or any(k not in result for k in RESULT_KEYS):
                lacking = [k for k in RESULT_KEYS if not isinstance(result, dict) or k not in result]
                raise StudyError(f"row result {path} is not a row result (it lacks {', '.join(lacking)}); restore "
                                 f"it (git checkout -- FILE) or delete it to train the row again")
            out[row.name] = result
    return out


def _mean_spread(values):
    mean = sum(values) / len(values)
    return mean, (max(values) - min(values)) / 2 if len(values) > 1 else None


def row_colours(names, study):
    """A row's plot colour says its role: its procedure and its overrides, not its depth or seed, so that both
    panels use one colour for, say, RD, and the seeds of one row share theirs."""
    roles = {}
    for name in names:
        row = study.row(name)
        roles.setdefault((row.procedure, tuple(sorted(row.overrides.items()))), []).append(name)
    return {name: PALETTE[i % len(PALETTE)] for i, members in enumerate(roles.values()) for name in members}


def panel_of(row, study):
    """The teacher row whose plot panel ``row`` joins: its own for a teacher, its teacher for a distilled student,
    and for a student trained alone the teacher of the study's distilled rows of the same network."""
    if row.procedure == "teacher":
        return row.name
    if row.teacher:
        return row.teacher
    return next(r.teacher for r in study.rows if r.arch == row.arch and r.teacher)


def report(results_dir, study):
    """Regenerate table.md (mean and half-range over seeds per group), val_top1.png and train_acc.png (how fast
    each row fits its training data: under-fitting shows there, not in validation) from the row JSONs."""
    results = load_results(results_dir, study)
    if not results:
        print("no finished rows yet")
        return []
    groups = {}
    for name, r in results.items():
        groups.setdefault(r["group"], []).append(r)
    lines = ["| row | seeds | final val top-1 (%) | best val top-1 (%) at epoch | final train acc (%) | "
             "time per run (epochs summed) |", "|---|---|---|---|---|---|"]
    for group, rows in groups.items():
        final_mean, final_spread = _mean_spread([r["final_val_top1"] for r in rows])
        best_txt = ", ".join(f"{r['best_val_top1']:.2f} @ {r['best_epoch']}" for r in rows)
        spread = f" ± {final_spread:.2f}" if final_spread is not None else ""
        seeds = ",".join(str(r["seed"]) for r in rows)
        # summed epoch times (training + validation) survive a killed runner; wall_seconds counts only the
        # runner invocations that saw the row finish
        wall = ", ".join(f"{r.get('epoch_seconds_total', r['wall_seconds']) / 60:.0f} min" for r in rows)
        each = " (" + ", ".join(f"{r['final_val_top1']:.2f}" for r in rows) + ")" if len(rows) > 1 else ""
        train_acc = ", ".join(f"{r['epochs'][-1]['train_acc']:.2f}" for r in rows)  # the last epoch's mean
        lines.append(f"| {group} | {seeds} | {final_mean:.2f}{spread}{each} | {best_txt} | {train_acc} | {wall} |")
    table = "\n".join(lines) + "\n"
    write_text(os.path.join(results_dir, "table.md"), table)
    print(table)
    # one panel per teacher and its students, on one y scale; rows drawn in the study's order, however they finished
    order = study.names  # load_results reads the study's rows only
    colours = row_colours(order, study)
    pngs = []
    for key, file_name, what, ylabel in (
            ("val_top1", "val_top1.png", "validation top-1 per epoch (held-out data_batch_5)", "val top-1 (%)"),
            ("train_acc", "train_acc.png", "training accuracy per epoch (augmented batches, as trained)",
             "train acc (%)")):
        by_teacher = {}
        for name in sorted(results, key=order.index):
            epochs = results[name]["epochs"]
            by_teacher.setdefault(panel_of(study.row(name), study), {})[name] = (
                [e["epoch"] for e in epochs], [e[key] for e in epochs])
        panels = [{"series": series, "title": f"{study.row(teacher).arch} and its plain students: {what}",
                   "xlabel": "epoch", "ylabel": ylabel,
                   "dashed": [n for n in series if study.row(n).procedure == "teacher"],
                   "colours": {n: colours[n] for n in series}}
                  for teacher, series in sorted(by_teacher.items(), key=lambda item: order.index(item[0]))]
        pngs.append(side_by_side(panels, os.path.join(results_dir, file_name)))
    return [os.path.join(results_dir, "table.md")] + [p for p in pngs if p]


def after_row(command, row, study, files, message=""):
    """Run the user's ``--after_row`` command on a finished row's files (appended as arguments; STUDY, STUDY_ROW
    and, for a snapshot, STUDY_MESSAGE in its environment), e.g. scripts/commit_study_row.sh, which commits them.
    Its failure is reported, not fatal: the next row still runs."""
    env = {**os.environ, "STUDY": study.name, "STUDY_ROW": row.name, **({"STUDY_MESSAGE": message} if message else {})}
    done = subprocess.run(shlex.split(command) + files, cwd=ROOT, env=env)
    if done.returncode != 0:
        print(f"[{row.name}] --after_row command exited {done.returncode}")


def wait_for_row(child, row, run_dir, args):
    """Wait for the row's train.py and return its exit code. With --snapshot_minutes M, snapshot the row (and run
    --after_row on it, e.g. to commit it) whenever at least M minutes have passed since the last snapshot and
    it has finished another epoch since: a working session that ends abruptly then loses at most about M
    minutes of the row. A failed snapshot is reported and training goes on."""
    if not args.snapshot_minutes:
        return child.wait()
    interval = args.snapshot_minutes * 60
    saved, last = run_snapshot.epochs_done(snapshot_dir(args.results_dir, row)), time.monotonic()
    while True:
        try:
            return child.wait(timeout=min(30.0, interval))
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() - last >= interval and run_snapshot.epochs_done(run_dir) > saved:
            try:
                saved = snapshot_row(row, run_dir, args)
            except (OSError, RuntimeError, ValueError) as exc:
                print(f"[{row.name}] snapshot failed, training goes on: {exc}", flush=True)
            last = time.monotonic()


def run_row(row, args):
    run_dir = os.path.join(args.output_dir, row.name)
    if row.teacher and not os.path.isfile(teacher_checkpoint(row.teacher, args.results_dir)):
        print(f"[{row.name}] waiting for its teacher row {row.teacher}")
        return None
    restored = run_snapshot.restore(snapshot_dir(args.results_dir, row), run_dir)
    if restored:
        print(f"[{row.name}] restored {restored} epoch(s) from its committed snapshot", flush=True)
    command = train_command(row, args.data_path, run_dir, args.results_dir, args.recipe, args.settings)
    print(f"[{row.name}] {'resuming' if '--resume' in command else 'starting'}: {' '.join(command[1:])}", flush=True)
    wall_file = os.path.join(run_dir, "study_wall_seconds.json")
    spent = 0.0
    if os.path.isfile(wall_file):
        with open(wall_file, encoding="utf-8") as f:
            spent = json.load(f)["seconds"]
    start = time.time()
    # this checkout's own package first: a runner started from another checkout (a worktree kept at the study's
    # commit) must not train with whatever checkout `pip install -e` last pointed at
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.path.join(ROOT, "src"),
                                                                     os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        code = wait_for_row(child, row, run_dir, args)
    finally:
        if child.poll() is None:  # the runner itself failed or was interrupted: no orphaned training
            child.terminate()
            child.wait()
    spent += time.time() - start
    if os.path.isdir(run_dir):
        save_report({"seconds": spent}, wall_file)
    if code != 0:
        raise SystemExit(f"[{row.name}] train.py exited with {code}; its log is {run_dir}/train.log. Fix the cause "
                         f"and rerun: the row continues from its last checkpoint")
    result = row_result(row, run_dir, spent, portable(command, args.data_path, args.output_dir, args.results_dir))
    paths = []
    if row.procedure == "teacher":
        paths.append(teacher_checkpoint(row.name, args.results_dir))
        with published(paths[-1]) as staging:
            shutil.copyfile(os.path.join(run_dir, "best.ckpt"), staging)
    path = os.path.join(args.results_dir, f"{row.name}.json")
    save_report(result, path)
    paths.append(path)
    snapshot = snapshot_dir(args.results_dir, row)
    if os.path.isdir(snapshot):  # the row is done: its snapshot goes (the hook commits the removal)
        shutil.rmtree(snapshot)
        paths.append(snapshot)
    print(f"[{row.name}] final val top-1 {result['final_val_top1']:.2f}%, best {result['best_val_top1']:.2f}% at "
          f"epoch {result['best_epoch']}, {spent / 60:.1f} min")
    return paths


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=CONVERGED.name, choices=list(STUDIES),
                        help="which study: converged, plain18 or short, as above (default: %(default)s)")
    parser.add_argument("--data_path", default="", help="CIFAR-10 binary folder (data_batch_1..5.bin)")
    parser.add_argument("--rows", default="", help="comma-separated row names (default: every row, in order)")
    parser.add_argument("--output_dir", default="",
                        help="run folders (checkpoints, logs); default runs/<the results folder's name>")
    parser.add_argument("--results_dir", default="",
                        help="where the row JSONs, table.md, val_top1.png and train_acc.png go; default the "
                             "study's folder, "
                             + ", ".join(f"{s.results} ({s.name})" for s in STUDIES.values()))
    parser.add_argument("--recipe", default="", help="the shared budget (YAML); default the study's, "
                        + ", ".join(f"{s.recipe} ({s.name})" for s in STUDIES.values()))
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key for every row (repeatable), e.g. for a quick smoke run")
    parser.add_argument("--after_row", default="", metavar="COMMAND",
                        help="run COMMAND FILE... after each finished row, with its result files (e.g. bash "
                             "scripts/commit_study_row.sh, what scripts/run_cifar10_study.sh --git_commit passes)")
    parser.add_argument("--list", action="store_true", help="print every row's status and exit")
    parser.add_argument("--report", action="store_true", help="regenerate the table and plot, run nothing")
    parser.add_argument("--snapshot", action="store_true",
                        help="copy every started, unfinished row's resumable files to RESULTS_DIR/unfinished/ROW "
                             "(then --after_row on them), so that another machine continues it; safe while the row "
                             "trains. A later run restores a snapshot that is further along than its run folder")
    parser.add_argument("--snapshot_minutes", type=float, default=0.0, metavar="M",
                        help="while a row trains, snapshot it as --snapshot does (and run --after_row on it) every "
                             "M minutes in which it finished an epoch, so that a session that ends abruptly loses "
                             "at most about M minutes of it; 0 (default): only on --snapshot")
    args = parser.parse_args(argv)
    if args.snapshot_minutes < 0:
        parser.error(f"--snapshot_minutes must be 0 (off) or a positive number of minutes, "
                     f"not {args.snapshot_minutes:g}")
    args.study = STUDIES[args.study]
    args.recipe = args.recipe or args.study.recipe
    args.results_dir = args.results_dir or os.path.join(ROOT, args.study.results)
    args.output_dir = args.output_dir or os.path.join(ROOT, "runs", os.path.basename(args.study.results))
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in args.study.names]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)} in the {args.study.name} study; its rows: "
                     f"{', '.join(args.study.names)}")
    args.selected = [args.study.row(n) for n in names] or list(args.study.rows)
    args.settings = key_values(parser, args.settings)
    if not (args.list or args.report or args.snapshot):
        if not args.data_path:
            parser.error("--data_path is required to run rows (the CIFAR-10 binary folder)")
        if not os.path.isdir(args.data_path):
            parser.error(f"--data_path {args.data_path} is not a directory")
        args.data_path = os.path.abspath(args.data_path)
    args.output_dir, args.results_dir = os.path.abspath(args.output_dir), os.path.abspath(args.results_dir)
    return args


def lock_path(output_dir):
    """One runner at a time per ``output_dir``: it holds an exclusive lock on this file while it runs."""
    return os.path.join(output_dir, ".lock")


def try_lock(lock):
    """Take the exclusive lock on the open file ``lock`` without waiting; False if another process holds it."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def runner_active(output_dir):
    """True while a runner holds the lock of ``output_dir`` (see main)."""
    if not os.path.isfile(lock_path(output_dir)):
        return False
    with open(lock_path(output_dir)) as lock:
        if not try_lock(lock):
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False


def row_status(row, run_dir, result, snapshot):
    if result is not None:
        return f"done: final {result['final_val_top1']:.2f}%, best {result['best_val_top1']:.2f}% at epoch " \
               f"{result['best_epoch']}"
    here, saved = run_snapshot.finished_epochs(run_dir), run_snapshot.finished_epochs(snapshot)
    if len(saved) > len(here):
        return f"started: {len(saved)} epoch(s) in its committed snapshot{latest_val(saved)}, continues from it"
    if not os.path.isfile(os.path.join(run_dir, "last.ckpt")):
        return "to do"
    return f"started: {len(here)} epoch(s) done{latest_val(here)}, continues from last.ckpt"


def latest_val(epochs):
    """`` (val top-1 71.83% after epoch 7)``: how far an unfinished row has got, for --list."""
    last = epochs[-1] if epochs else {}
    if not isinstance(last, dict) or not isinstance(last.get("val_top1"), (int, float)):
        return ""
    return f" (val top-1 {last['val_top1']:.2f}% after epoch {last.get('epoch', len(epochs))})"


def snapshot_row(row, run_dir, args):
    """Copy an unfinished row's resumable files to its snapshot folder, then run --after_row on that folder;
    returns the number of epochs saved."""
    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
        data_path = yaml.safe_load(f).get("data_path") or args.data_path  # the data folder the row trains on
    dest = snapshot_dir(args.results_dir, row)
    # best.ckpt travels only for a teacher row (its students train from it); a resume does not read it
    keep_best = any(r.teacher == row.name for r in args.study.rows)
    epochs = run_snapshot.save(run_dir, dest, placeholders(data_path or "\0", args.output_dir, args.results_dir),
                               keep_best=keep_best)
    print(f"[{row.name}] snapshot of {epochs} epoch(s) in {dest}", flush=True)
    if args.after_row:
        after_row(args.after_row, row, args.study, [dest], f"CIFAR-10 {args.study.name} study: row {row.name}, "
                  f"snapshot after {epochs} epoch(s) (to resume on another machine)")
    return epochs


def save_snapshots(args):
    """``--snapshot``: each selected row that has epochs in its run folder but no result yet."""
    saved = 0
    for row in args.selected:
        run_dir = os.path.join(args.output_dir, row.name)
        if os.path.isfile(os.path.join(args.results_dir, f"{row.name}.json")) or not run_snapshot.epochs_done(run_dir):
            continue
        try:
            snapshot_row(row, run_dir, args)
        except OSError as exc:  # save() stages aside: the committed snapshot, if any, is as it was
            raise StudyError(f"cannot write the snapshot of {row.name} to {snapshot_dir(args.results_dir, row)} "
                             f"({exc.strerror or exc}); make the results folder writable or pass --results_dir. "
                             f"The previous snapshot, if any, is kept") from None
        saved += 1
    if not saved:
        print(f"no started, unfinished row in {args.output_dir}")
    return 0


def stop_on_sigterm(signum, frame):
    """SIGTERM (a session's end, ``kill``) unwinds the runner like Ctrl-C, so that run_row's ``finally`` stops
    the row's train.py instead of leaving it to train on alone (re-parented to init)."""
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(argv)
    try:
        return run_study(args)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_study(args):
    try:
        os.makedirs(args.results_dir, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"cannot create the results folder {args.results_dir} ({exc.strerror or exc}); pass a "
                         f"writable --results_dir") from None
    if args.list:
        done = load_results(args.results_dir, args.study)
        active = runner_active(args.output_dir)
        print(f"run folders in {args.output_dir}: "
              + ("a runner is working there now" if active else "no runner active"))
        for row in args.study.rows:
            status = row_status(row, os.path.join(args.output_dir, row.name), done.get(row.name),
                                snapshot_dir(args.results_dir, row))
            print(f"{row.name:30s} {status}")
        return 0
    if args.report:
        report(args.results_dir, args.study)
        return 0
    if args.snapshot:
        return save_snapshots(args)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(lock_path(args.output_dir), "w") as lock:
        if not try_lock(lock):
            raise SystemExit(f"another study runner is using {args.output_dir}; wait for it or stop it")
        for row in args.selected:
            if os.path.isfile(os.path.join(args.results_dir, f"{row.name}.json")):
                print(f"[{row.name}] done, skipped")
                continue
            paths = run_row(row, args)
            if paths:
                files = paths + report(args.results_dir, args.study)
                if args.after_row:
                    after_row(args.after_row, row, args.study, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
