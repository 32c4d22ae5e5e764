"""Put a MindSpore training curve and the PyTorch cross-check's curve side by side, epoch by epoch.

Why: the study notes compare the converged study's teachers with bench/torch_cifar_resnet.py's run of
the same recipe; this prints that comparison (a markdown table and a summary) from the two JSON files, so the
table in docs/ is generated rather than typed. Reads json only (no torch, no MindSpore).

    python bench/compare_curves.py bench/results/cifar10_converged/resnet20_teacher.json \
        bench/results/cifar10_converged/budget_trials/torch_reference_resnet20_30epochs.json

MINDSPORE_JSON: a study row's JSON or a run folder's metrics.json (both hold "epochs": [{"epoch", "train_acc",
"val_top1"}, ...]); REFERENCE_JSON: torch_cifar_resnet.py's --out file. Epochs present in both are compared.
"""
import argparse
import json
import sys


def load_epochs(path):
    """{epoch: record} from a file holding {"epochs": [...]}; a clear error for anything else."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise SystemExit(f"error: cannot read {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {path} is not JSON ({e.msg}, line {e.lineno})")
    epochs = data.get("epochs") if isinstance(data, dict) else None
    if not isinstance(epochs, list) or not all(
            isinstance(r, dict) and {"epoch", "train_acc", "val_top1"} <= r.keys() for r in epochs):
        raise SystemExit(f"error: {path} has no list of epochs with epoch, train_acc and val_top1: pass a study "
                         "row's JSON, a run folder's metrics.json or torch_cifar_resnet.py's --out file")
    return {int(r["epoch"]): r for r in epochs}


def compare(ms, ref):
    """The shared epochs' rows and a summary of the differences (MindSpore minus reference)."""
    shared = sorted(set(ms) & set(ref))
    if not shared:
        raise SystemExit("error: the two files share no epoch")
    rows = [(e, ms[e]["train_acc"], ref[e]["train_acc"], ms[e]["val_top1"], ref[e]["val_top1"]) for e in shared]
    train_diff = [r[1] - r[2] for r in rows]
    last = rows[-1]
    best_ms = max(rows, key=lambda r: r[3])
    best_ref = max(rows, key=lambda r: r[4])
    summary = {
        "epochs_compared": len(rows), "first_epoch": shared[0], "last_epoch": last[0],
        "train_acc_max_abs_diff": max(abs(d) for d in train_diff),
        "train_acc_mean_diff": sum(train_diff) / len(train_diff),
        "mindspore_lower_train_acc_epochs": sum(d < 0 for d in train_diff),
        "last_val_top1": {"mindspore": last[3], "reference": last[4]},
        "best_val_top1": {"mindspore": [best_ms[3], best_ms[0]], "reference": [best_ref[4], best_ref[0]]},
    }
    return rows, summary


def markdown(rows, summary, names):
    ms_name, ref_name = names
    lines = [f"| epoch | {ms_name} train acc | {ref_name} train acc | {ms_name} val top-1 | {ref_name} val top-1 |",
             "|---|---|---|---|---|"]
    lines += [f"| {e} | {a:.1f} | {b:.1f} | {c:.2f} | {d:.2f} |" for e, a, b, c, d in rows]
    s = summary
    lines += ["", f"epochs {s['first_epoch']}-{s['last_epoch']} ({s['epochs_compared']} compared): training "
              f"accuracy differs by at most {s['train_acc_max_abs_diff']:.2f} points (mean {ms_name} minus "
              f"{ref_name}: {s['train_acc_mean_diff']:+.2f}; {ms_name} lower in {s['mindspore_lower_train_acc_epochs']}"
              f" epochs); validation top-1 at epoch {s['last_epoch']}: {s['last_val_top1']['mindspore']:.2f} against "
              f"{s['last_val_top1']['reference']:.2f}; best {s['best_val_top1']['mindspore'][0]:.2f} (epoch "
              f"{s['best_val_top1']['mindspore'][1]}) against {s['best_val_top1']['reference'][0]:.2f} (epoch "
              f"{s['best_val_top1']['reference'][1]})"]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mindspore_json")
    p.add_argument("reference_json")
    p.add_argument("--names", default="MindSpore,PyTorch", help="the two columns' names, comma-separated")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    args = p.parse_args(argv)
    names = args.names.split(",")
    if len(names) != 2 or not all(names):
        p.error(f"--names takes two names separated by a comma, not {args.names!r}")
    rows, summary = compare(load_epochs(args.mindspore_json), load_epochs(args.reference_json))
    print(json.dumps(summary, indent=1) if args.json else markdown(rows, summary, names))


if __name__ == "__main__":
    sys.exit(main())
