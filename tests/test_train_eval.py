"""End to end: train.py and eval.py as a user runs them (in-process `main`), on tiny settings."""
import json
import os
import re

import numpy as np
import pytest
from conftest import ROOT

import eval as eval_script
import train as train_script
from resdist import checkpoint as ckpt_io
from resdist.models.dirac import dirac_record

TINY = ["--arch", "resnet8", "--synthetic_train_size", "512", "--synthetic_val_size", "64", "--batch_size", "32",
        "--log_interval", "4", "--lr", "0.05"]
EVAL = ["--arch", "resnet8", "--synthetic_val_size", "64", "--batch_size", "32"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "r20")
    assert train_script.main(TINY + ["--epochs", "2", "--output_dir", out, "--lr_schedule", "step",
                                     "--lr_milestones", "2"]) == 0
    return out


def test_training_writes_metrics_checkpoints_and_a_log(trained_run):
    metrics = json.load(open(os.path.join(trained_run, "metrics.json")))["epochs"]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[1]["train_acc"] > 30.0  # 10 classes: chance is 10%
    assert {"last.ckpt", "best.ckpt", "final.ckpt", "epoch_0001.ckpt", "epoch_0002.ckpt", "config.yaml",
            "train.log"} <= \
        set(os.listdir(trained_run))
    log = open(os.path.join(trained_run, "train.log")).read()
    assert "DEMO: training on generated synthetic images" in log
    assert "epoch 2/2 step 16/16 loss" in log and "img/s" in log and "val top-1" in log
    # the time left, after every epoch but the last
    assert re.search(r"epoch 1/2: 1 to go, about \d+ (s|min \d\d s) at \d+ s an epoch", log)
    assert "to go" not in log.split("epoch 2/2 done in")[1]  # nothing is left after the last epoch
    state = ckpt_io.read(os.path.join(trained_run, "last.ckpt"))
    assert int(state["global_step"].asnumpy()[0]) == 32
    assert state["arch"] == "resnet8" and ckpt_io.meta_value(state, "epoch") == 2
    # final.ckpt: the network alone as the last epoch left it (last.ckpt's weights, no optimizer state)
    final = ckpt_io.read(os.path.join(trained_run, "final.ckpt"))
    weights = {k: v for k, v in final.items() if not isinstance(v, str) and k not in ckpt_io.META_KEYS}
    assert weights and not [k for k in weights if k.startswith(ckpt_io.OPTIMIZER_PREFIXES)]
    for name, value in weights.items():
        np.testing.assert_array_equal(value.asnumpy(), state[name].asnumpy())
    assert final["arch"] == "resnet8" and ckpt_io.meta_value(final, "epoch") == 2


def test_resume_continues_epochs_and_optimizer_step(trained_run, tmp_path):
    import shutil

    run = str(tmp_path / "copy")
    shutil.copytree(trained_run, run)
    assert train_script.main(TINY + ["--epochs", "3", "--output_dir", run, "--resume", "auto",
                                     "--lr_schedule", "step", "--lr_milestones", "2"]) == 0
    metrics = json.load(open(os.path.join(run, "metrics.json")))["epochs"]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    state = ckpt_io.read(os.path.join(run, "last.ckpt"))
    assert int(state["global_step"].asnumpy()[0]) == 48  # 32 restored + 16 new, so the lr schedule continued
    assert "lr 0.00500" in open(os.path.join(run, "train.log")).read().split("resumed from")[1]
    # the closing line names the best epoch over both sessions, the one best.ckpt holds
    best = max(metrics, key=lambda m: m["val_top1"])
    assert (f"final epoch 3: val top-1 {metrics[-1]['val_top1']:.2f}% (final.ckpt); best {best['val_top1']:.2f}% "
            f"at epoch {best['epoch']} (best.ckpt)") in open(os.path.join(run, "train.log")).read()
    assert ckpt_io.meta_value(ckpt_io.read(os.path.join(run, "final.ckpt")), "epoch") == 3  # the new last epoch


def test_existing_run_is_not_overwritten(trained_run, capsys):
    before = {f: os.path.getmtime(os.path.join(trained_run, f)) for f in os.listdir(trained_run)}
    assert train_script.main(TINY + ["--output_dir", trained_run]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert before == {f: os.path.getmtime(os.path.join(trained_run, f)) for f in os.listdir(trained_run)}


def test_eval_reproduces_the_best_validation_accuracy(trained_run, tmp_path, capsys):
    out = str(tmp_path / "eval.json")
    assert eval_script.main(EVAL + ["--ckpt_file", os.path.join(trained_run, "best.ckpt"), "--output_json", out]) == 0
    result = json.load(open(out))
    best = max(m["val_top1"] for m in json.load(open(os.path.join(trained_run, "metrics.json")))["epochs"])
    assert result["top1"] == pytest.approx(best)
    assert result["num_samples"] == 64 and result["split"] == "generated validation set"
    assert "top-1" in capsys.readouterr().out


def test_eval_rejects_a_checkpoint_of_another_architecture(trained_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = eval_script.main(EVAL + ["--arch", "resnet32", "--ckpt_file", os.path.join(trained_run, "best.ckpt"),
                                    "--output_json", str(out)])
    assert code == 2 and not out.exists()
    assert "saved from arch 'resnet8', not 'resnet32'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--arch", "resnet21"], "unknown arch 'resnet21'; known: plain110"),
    (["--arch", "plain8", "--procedure", "teacher"], "procedure=teacher trains a residual network"),
    (["--dataset", "cifar10", "--data_path", "/nonexistent/cifar"], "data_path /nonexistent/cifar is not a directory"),
    (["--dataset", "cifar10", "--data_path", "MADE_CIFAR10", "--val_split", "test"], "no official test split"),
    (["--lr", "0"], "lr=0.0 (from command line) must be > 0"),
])
def test_bad_input_fails_before_writing_anything(made_cifar10, tmp_path, capsys, argv, message):
    argv = [made_cifar10 if a == "MADE_CIFAR10" else a for a in argv]
    out = tmp_path / "never"
    assert train_script.main(argv + ["--output_dir", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_eval_missing_checkpoint(capsys):
    assert eval_script.main(["--ckpt_file", "/nonexistent.ckpt"]) == 2
    assert "checkpoint /nonexistent.ckpt does not exist" in capsys.readouterr().err


# --- distillation procedures -----------------------------------------------------------------------------------

RD = ["--arch", "plain8", "--synthetic_train_size", "256", "--synthetic_val_size", "64", "--batch_size", "32",
      "--log_interval", "4", "--lr", "0.05"]


def test_rd_run_logs_every_term_and_saves_a_deployable_student(trained_run, tmp_path):
    out = str(tmp_path / "rd")
    teacher = os.path.join(trained_run, "best.ckpt")
    assert train_script.main(RD + ["--procedure", "rd", "--teacher_ckpt", teacher, "--epochs", "2", "--dirac", "true",
                                   "--eta_epochs", "2", "--output_dir", out]) == 0
    log = open(os.path.join(out, "train.log")).read()
    assert "epoch 1/2: eta 1.0000" in log and "epoch 2/2: eta 0.7500" in log
    assert "network: plain8, 0.076M parameters (plain, plain_variant full); procedure rd" in log
    assert "ce " in log and "mixed_ce " in log and "fd " in log
    metrics = json.load(open(os.path.join(out, "metrics.json")))["epochs"]
    assert metrics[1]["train_mixed_ce"] < metrics[0]["train_mixed_ce"]
    # best.ckpt is the bare student, Dirac folded: it loads into create_model and evaluates like in training
    result = str(tmp_path / "eval.json")
    assert eval_script.main(["--arch", "plain8", "--synthetic_val_size", "64", "--batch_size", "32",
                                        "--ckpt_file", os.path.join(out, "best.ckpt"), "--output_json", result]) == 0
    best = max(m["val_top1"] for m in metrics)
    assert json.load(open(result))["top1"] == pytest.approx(best)
    state = ckpt_io.read(os.path.join(out, "last.ckpt"))  # the training state keeps connector and Dirac scales
    assert "train_state.connector.conv.weight" in state and "stages.0.0.conv1.dirac_alpha" in state
    # the folded files record how they trained (a Hub card says so); a run without Dirac records nothing
    assert ckpt_io.read(os.path.join(out, "best.ckpt"))["dirac"] == dirac_record(False) == state["dirac"]
    assert "dirac" not in ckpt_io.read(teacher)
    # and eval.py scores it as training did at its epoch (Dirac convolutions folded on loading)
    assert eval_script.main(["--arch", "plain8", "--synthetic_val_size", "64", "--batch_size", "32",
                             "--ckpt_file", os.path.join(out, "last.ckpt"), "--output_json", result]) == 0
    assert json.load(open(result))["top1"] == pytest.approx(metrics[-1]["val_top1"])


def test_resumed_rd_reads_each_checkpoint_once(trained_run, tmp_path, monkeypatch):
    """check_inputs validates the resume and teacher checkpoints before anything is written; training reuses
    what it read (for ResNet-50 the training state is ~300 MB) instead of reading the files again."""
    out = str(tmp_path / "rd")
    teacher = os.path.join(trained_run, "best.ckpt")
    args = RD + ["--procedure", "rd", "--teacher_ckpt", teacher, "--max_steps_per_epoch", "2", "--output_dir", out]
    assert train_script.main(args + ["--epochs", "1"]) == 0
    reads, real_read = [], ckpt_io.read
    monkeypatch.setattr(ckpt_io, "read", lambda path, what="checkpoint": reads.append(path) or real_read(path, what))
    assert train_script.main(args + ["--epochs", "2", "--resume", "auto"]) == 0
    assert sorted(reads) == sorted([teacher, os.path.join(out, "last.ckpt")])
    assert [m["epoch"] for m in json.load(open(os.path.join(out, "metrics.json")))["epochs"]] == [1, 2]


def test_kd_and_fd_procedures_train_their_own_loss(trained_run, tmp_path):
    teacher = os.path.join(trained_run, "best.ckpt")
    for procedure, terms in [("kd", {"train_ce", "train_kd"}), ("fd", {"train_ce", "train_mixed_ce", "train_fd"})]:
        out = str(tmp_path / procedure)
        assert train_script.main(RD + ["--procedure", procedure, "--teacher_ckpt", teacher, "--epochs", "1",
                                       "--max_steps_per_epoch", "4", "--output_dir", out]) == 0
        record = json.load(open(os.path.join(out, "metrics.json")))["epochs"][0]
        assert terms <= set(record) and "eta" not in record  # neither has mixed paths to weigh
        assert all(np.isfinite(record[t]) and record[t] > 0 for t in terms - {"train_mixed_ce"})
        if procedure == "fd":
            assert record["train_mixed_ce"] == 0.0  # no injection point: no mixed path
            assert record["train_loss"] == pytest.approx(record["train_ce"] + 0.001 * record["train_fd"], rel=1e-4)
        else:
            assert record["train_loss"] == pytest.approx(0.1 * record["train_ce"] + 0.9 * record["train_kd"],
                                                         rel=1e-4)
        state = ckpt_io.read(os.path.join(out, "best.ckpt"))
        assert state["arch"] == "plain8" and not any(k.startswith("teacher.") for k in state)


@pytest.mark.parametrize("teacher,message", [
    ("", "procedure=rd needs a trained teacher: pass --teacher_ckpt"),
    ("/nonexistent/teacher.ckpt", "teacher checkpoint /nonexistent/teacher.ckpt does not exist"),
    ("garbage", "cannot be read: it is corrupt"),
    ("wrong_arch", "was saved from arch 'resnet32', not 'resnet8'"),
    ("no_record", "does not match the network resnet8"),
])
def test_bad_teacher_fails_before_training(tmp_path, capsys, teacher, message):
    if teacher == "garbage":
        teacher = str(tmp_path / "garbage.ckpt")
        open(teacher, "wb").write(b"not a checkpoint")
    elif teacher == "wrong_arch":
        from resdist.models import create_model
        teacher = str(tmp_path / "r32.ckpt")
        ckpt_io.save(teacher, ckpt_io.network_params(create_model("resnet32", num_classes=10)), {"arch": "resnet32"})
    elif teacher == "no_record":  # a checkpoint without metadata: names and shapes are still checked
        from resdist.models import create_model
        teacher = str(tmp_path / "r32_bare.ckpt")
        ckpt_io.save(teacher, ckpt_io.network_params(create_model("resnet32", num_classes=10)))
    out = tmp_path / "never"
    assert train_script.main(RD + ["--procedure", "rd", "--teacher_ckpt", teacher, "--output_dir", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_training_on_an_image_folder(jpeg_dir, tmp_path):
    out = str(tmp_path / "folder")
    assert train_script.main(["--arch", "plain8", "--procedure", "plain", "--dataset", "imagefolder",
                              "--data_path", jpeg_dir, "--image_size", "32", "--batch_size", "50", "--epochs", "1",
                              "--max_steps_per_epoch", "3", "--output_dir", out]) == 0
    log = open(os.path.join(out, "train.log")).read()
    assert "data: imagefolder" in log and "500 images (train)" in log and "100 images (val/ folder)" in log
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["epochs"][0]["val_top5"] > 0
    # val/ is the folder's official test split: best.ckpt's accuracy is optimistic, and the log says so
    assert metrics["summary"]["best_is_optimistic"] is True
    assert "WARNING best.ckpt was chosen by accuracy on the official test split" in log


def test_a_held_out_split_of_an_image_folder_is_not_optimistic(made_jpegs, tmp_path):
    out = str(tmp_path / "folder")
    assert train_script.main(["--arch", "plain8", "--procedure", "plain", "--dataset", "imagefolder",
                              "--data_path", made_jpegs, "--image_size", "32", "--batch_size", "50", "--epochs", "1",
                              "--max_steps_per_epoch", "2", "--val_split", "0.1", "--output_dir", out]) == 0
    summary = json.load(open(os.path.join(out, "metrics.json")))["summary"]
    assert summary["best_is_optimistic"] is False and "held out" in summary["validation"]
    assert "official test split" not in open(os.path.join(out, "train.log")).read()


def _weights(path):
    state = ckpt_io.read(path)
    return {k: v.asnumpy() for k, v in state.items() if k.startswith(("stem.", "stages.", "head."))}


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_runs_weights(tmp_path):
    """3 epochs in one go vs 1 epoch, stop, resume to 3: the same weights (each epoch has its own data order and
    augmentation, derived from the seed and the epoch). A constant lr makes the first leg's schedule the same."""
    run = TINY + ["--synthetic_train_size", "96", "--max_steps_per_epoch", "3", "--lr_schedule", "step",
                  "--keep_checkpoint_max", "0"]
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    assert train_script.main(run + ["--epochs", "3", "--output_dir", whole]) == 0
    assert train_script.main(run + ["--epochs", "1", "--output_dir", split]) == 0
    after_one = _weights(os.path.join(split, "last.ckpt"))
    # SGD's stat tensors are not stored (rebuilt from the step counter), and the resume is still exact
    assert not [k for k in ckpt_io.read(os.path.join(split, "last.ckpt")) if k.startswith("stat.")]
    assert train_script.main(run + ["--epochs", "3", "--output_dir", split, "--resume", "auto"]) == 0
    a, b = _weights(os.path.join(whole, "last.ckpt")), _weights(os.path.join(split, "last.ckpt"))
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert any(not np.allclose(after_one[n], b[n]) for n in b)  # the resumed epochs did train
    losses = [m["train_loss"] for m in json.load(open(os.path.join(whole, "metrics.json")))["epochs"]]
    assert [m["train_loss"] for m in json.load(open(os.path.join(split, "metrics.json")))["epochs"]] == \
        pytest.approx(losses, rel=1e-5)


@pytest.mark.slow
def test_demo_runs_teacher_rd_student_and_plain_student(tmp_path, capsys):
    """`python train.py` without arguments is this demo (with the default sizes); here at a tiny size."""
    out = tmp_path / "demo"
    assert train_script.main(["--demo", "true", "--epochs", "1", "--synthetic_train_size", "64",
                              "--synthetic_val_size", "32", "--batch_size", "32", "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "=== demo summary" in printed
    for line in ("ResNet-20 teacher (with shortcuts)", "plain-20 + Residual Distillation", "plain-20 alone"):
        assert line in printed
    assert "mixed_ce" in printed and f"python eval.py --arch plain20 --ckpt_file {out}/rd_student/best.ckpt" in printed
    for run in ("teacher", "rd_student", "plain_alone"):
        assert (out / run / "best.ckpt").is_file()
    assert "procedure=rd" in (out / "rd_student" / "train.log").read_text()
    result = str(tmp_path / "eval.json")  # the RD student is a bare plain-20
    assert eval_script.main(["--arch", "plain20", "--synthetic_val_size", "32", "--ckpt_file",
                             str(out / "rd_student" / "best.ckpt"), "--output_json", result]) == 0


def test_no_arguments_means_the_demo(monkeypatch):
    seen = {}
    monkeypatch.setattr(train_script.cli, "run_entry_point", lambda scope, doc, body, argv: seen.update(argv=argv))
    train_script.main([])
    assert seen["argv"] == ["--config", os.path.join(ROOT, "configs", "demo.yaml")]
    from resdist.config import parse_args

    cfg, _ = parse_args(seen["argv"], "train", "")
    assert cfg.demo and cfg.dataset == "synthetic" and cfg.lr_schedule == "cosine"


def test_metrics_summary_has_the_final_and_the_best_epoch(trained_run, tmp_path):
    summary = json.load(open(os.path.join(trained_run, "metrics.json")))["summary"]
    epochs = json.load(open(os.path.join(trained_run, "metrics.json")))["epochs"]
    assert summary["final_epoch"] == 2 and summary["final_val_top1"] == epochs[-1]["val_top1"]
    assert summary["best_val_top1"] == max(e["val_top1"] for e in epochs)
    assert summary["best_is_optimistic"] is False  # generated validation set, not a test split


def test_time_left_reads_as_a_person_would():
    from resdist.train.trainer import format_duration

    assert [format_duration(s) for s in (12.4, 250, 3 * 3600 + 330, 59.6)] == \
        ["12 s", "4 min 10 s", "3 h 05 min", "1 min 00 s"]
