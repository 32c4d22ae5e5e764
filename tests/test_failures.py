"""Bad input and faults: one readable error line, exit status 2, nothing half-written, no result overwritten.
Each case here is a row of the bad-input table in docs/errors.md."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

import eval as eval_script
import train as train_script
from resdist import checkpoint as ckpt_io

TINY = ["--arch", "resnet8", "--synthetic_train_size", "128", "--synthetic_val_size", "32", "--batch_size", "32",
        "--log_interval", "2", "--lr", "0.05", "--keep_checkpoint_max", "0"]


def _tree(folder):
    """{relative path: file bytes} of a folder, to show that a refused command changed nothing."""
    out = {}
    for base, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(base, f)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("good") / "run")
    assert train_script.main(TINY + ["--epochs", "1", "--output_dir", out]) == 0
    return out


# --- a run that diverges ----------------------------------------------------------------------------------------

def test_divergence_in_the_first_epoch_saves_nothing(tmp_path, capsys):
    out = tmp_path / "diverged"
    assert train_script.main(TINY + ["--lr", "1e6", "--max_steps_per_epoch", "4", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: training diverged at epoch 1 step") and "\n" not in err
    assert "Lower --lr (now 1e+06)" in err and "no checkpoint had been written yet" in err
    assert not [f for f in os.listdir(out) if f.endswith(".ckpt")]
    assert "training diverged at epoch 1" in (out / "train.log").read_text()


def test_divergence_later_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run = str(tmp_path / "run")
    # a schedule that multiplies the lr by 1e8 after epoch 1: the resumed epoch 2 diverges
    explodes = TINY + ["--lr_schedule", "step", "--lr_milestones", "1", "--lr_gamma", "1e8", "--output_dir", run]
    assert train_script.main(explodes + ["--epochs", "1"]) == 0
    good = open(os.path.join(run, "last.ckpt"), "rb").read()
    best = open(os.path.join(run, "best.ckpt"), "rb").read()
    assert train_script.main(explodes + ["--epochs", "3", "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert "training diverged at epoch 2" in err and f"{run}/last.ckpt (epoch 1) is kept" in err
    assert open(os.path.join(run, "last.ckpt"), "rb").read() == good
    assert open(os.path.join(run, "best.ckpt"), "rb").read() == best
    state = ckpt_io.read(os.path.join(run, "last.ckpt"))
    assert all(np.isfinite(v.asnumpy()).all() for k, v in state.items() if not isinstance(v, str))


# --- checkpoints of another network -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keep_downsample_plain8(tmp_path_factory):
    """A plain8 (keep_downsample) checkpoint: exactly the parameter names and shapes of a resnet8."""
    from resdist.models import create_model

    path = str(tmp_path_factory.mktemp("kd") / "plain8_kd.ckpt")
    net = create_model("plain8", num_classes=10, plain_variant="keep_downsample")
    ckpt_io.save(path, ckpt_io.network_params(net), ckpt_io.network_identity("plain8", "keep_downsample"))
    assert set(ckpt_io.network_params(net)) == set(ckpt_io.network_params(create_model("resnet8", num_classes=10)))
    return path


@pytest.mark.parametrize("argv,message", [
    (["--arch", "resnet8"], "was saved from arch 'plain8', not 'resnet8'"),
    (["--arch", "plain8", "--plain_variant", "full"], "was saved from plain_variant 'keep_downsample', not 'full'"),
])
def test_eval_refuses_a_checkpoint_recorded_as_another_network(keep_downsample_plain8, tmp_path, capsys, argv,
                                                               message):
    out = tmp_path / "eval.json"
    assert eval_script.main(argv + ["--ckpt_file", keep_downsample_plain8, "--synthetic_val_size", "32",
                                    "--output_json", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_rd_refuses_a_plain_network_as_teacher(keep_downsample_plain8, tmp_path, capsys):
    out = tmp_path / "never"
    assert train_script.main(["--arch", "plain8", "--procedure", "rd", "--teacher_ckpt", keep_downsample_plain8,
                              "--output_dir", str(out)]) == 2
    assert "teacher checkpoint" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["--arch", "resnet20"], "arch 'resnet8' -> 'resnet20'"),
    (["--arch", "plain8", "--procedure", "plain"], "arch 'resnet8' -> 'plain8'; procedure 'teacher' -> 'plain'"),
    (["--batch_size", "16"], "batch_size 32 -> 16"),
    (["--batch_size", "4096"], "batch_size 32 -> 4096"),
    (["--max_steps_per_epoch", "2"], "max_steps_per_epoch 0 -> 2"),
    (["--seed", "99"], "seed 1 -> 99"),
    (["--lr", "0.1", "--synthetic_train_size", "256"], "synthetic_train_size 128 -> 256; lr 0.05 -> 0.1"),
    (["--epochs", "0"], "epochs=0 (from command line) must be > 0"),
])
def test_a_refused_resume_leaves_the_run_as_it_was(one_epoch_run, tmp_path, capsys, argv, message):
    run = str(tmp_path / "run")
    shutil.copytree(one_epoch_run, run)
    before = _tree(run)
    assert train_script.main(TINY + ["--epochs", "2", "--output_dir", run, "--resume", "auto"] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert _tree(run) == before


def test_a_resume_may_add_epochs_and_change_logging(one_epoch_run, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(one_epoch_run, run)
    assert train_script.main(TINY + ["--epochs", "2", "--output_dir", run, "--resume", "auto", "--log_interval",
                                     "1", "--keep_checkpoint_max", "2"]) == 0
    import yaml
    recorded = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    assert (recorded["epochs"], recorded["log_interval"], recorded["seed"]) == (2, 1, 1)
    assert os.path.exists(os.path.join(run, "epoch_0002.ckpt"))


def test_a_resume_with_fewer_epochs_than_done_is_refused(one_epoch_run, tmp_path, capsys):
    run = str(tmp_path / "run")
    shutil.copytree(one_epoch_run, run)
    two = TINY + ["--output_dir", run, "--resume", "auto", "--epochs", "2"]
    assert train_script.main(two) == 0
    before = _tree(run)
    assert train_script.main(TINY + ["--output_dir", run, "--resume", "auto", "--epochs", "1"]) == 2
    assert "has 2 epochs done, more than epochs=1; pass --epochs 3 or more" in capsys.readouterr().err
    assert train_script.main(two) == 0  # as many epochs as done: nothing to do, nothing written
    assert _tree(run) == before


def test_a_resume_from_a_checkpoint_without_recorded_settings_checks_the_network(one_epoch_run, tmp_path, capsys):
    """A last.ckpt copied away from its run folder has no config.yaml beside it: the network it records is
    still checked, and the log says the settings could not be compared."""
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(os.path.join(one_epoch_run, "last.ckpt"), moved / "last.ckpt")
    new = tmp_path / "new"
    assert train_script.main(TINY + ["--arch", "resnet20", "--epochs", "2", "--resume", str(moved / "last.ckpt"),
                                     "--output_dir", str(new)]) == 2
    assert "was saved from arch 'resnet8', not 'resnet20'" in capsys.readouterr().err and not new.exists()
    assert train_script.main(TINY + ["--epochs", "2", "--resume", str(moved / "last.ckpt"),
                                     "--output_dir", str(new)]) == 0
    assert "no config.yaml beside" in (new / "train.log").read_text()


@pytest.mark.parametrize("dirac", [True, False])
def test_a_moved_checkpoint_resumed_with_the_other_dirac_setting_is_refused(tmp_path, capsys, dirac):
    """Without config.yaml beside it, only the state can say whether the run was Dirac-parametrised; loaded into
    the other network (folded, or missing alpha and beta) it would train on as another experiment."""
    plain8 = ["--arch", "plain8", "--procedure", "plain"] + TINY[2:]
    run = tmp_path / "run"
    assert train_script.main(plain8 + ["--epochs", "1", "--dirac", str(dirac).lower(), "--output_dir",
                                       str(run)]) == 0
    moved = tmp_path / "moved.ckpt"
    shutil.copy(run / "last.ckpt", moved)
    capsys.readouterr()
    new = tmp_path / "new"
    assert train_script.main(plain8 + ["--epochs", "2", "--dirac", str(not dirac).lower(), "--resume", str(moved),
                                       "--output_dir", str(new)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: resume: ") and "\n" not in err and f"pass --dirac {str(dirac).lower()}" in err
    assert not new.exists()


def test_a_resume_with_an_unreadable_recorded_config_is_refused(one_epoch_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    (run / "config.yaml").write_text("seed: [unclosed\n")
    before = _tree(run)
    assert train_script.main(TINY + ["--epochs", "2", "--output_dir", str(run), "--resume", "auto"]) == 2
    assert "the settings the run recorded, cannot be read as a YAML mapping" in capsys.readouterr().err
    assert _tree(run) == before


def test_a_too_large_batch_is_refused_before_the_run_folder_is_made(tmp_path, capsys):
    new = tmp_path / "new"
    assert train_script.main(TINY + ["--batch_size", "4096", "--output_dir", str(new)]) == 2
    assert "128 training images per rank is fewer than batch_size=4096" in capsys.readouterr().err
    assert not new.exists()


def test_resuming_from_a_network_alone_is_refused_before_any_folder_is_made(one_epoch_run, tmp_path, capsys):
    before = _tree(one_epoch_run)
    new = tmp_path / "new_run"
    best = os.path.join(one_epoch_run, "best.ckpt")
    assert train_script.main(TINY + ["--epochs", "2", "--resume", best, "--output_dir", str(new)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: resume checkpoint {best} has no optimizer state: it is a network alone (as best.ckpt "
                   f"is), not a training checkpoint; resume from the run's last.ckpt (--resume auto) or an "
                   f"epoch_NNNN.ckpt")
    assert not new.exists() and _tree(one_epoch_run) == before


def test_resuming_from_a_missing_checkpoint_makes_no_new_folder(tmp_path, capsys):
    new = tmp_path / "new_run"
    missing = tmp_path / "gone" / "last.ckpt"
    assert train_script.main(TINY + ["--epochs", "2", "--resume", str(missing), "--output_dir", str(new)]) == 2
    assert f"resume checkpoint {missing} does not exist" in capsys.readouterr().err
    assert not new.exists()
    # --resume auto in a folder with nothing to continue: one message (no warning about settings first)
    assert train_script.main(TINY + ["--resume", "auto", "--output_dir", str(new)]) == 2
    err = capsys.readouterr().err
    assert f"resume checkpoint {new / 'last.ckpt'} does not exist; to start a new run there, leave out --resume" \
        in err and "config.yaml" not in err
    assert not new.exists()


def test_unfinished_writes_are_removed_on_resume_and_never_read(one_epoch_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    partial = [run / "last.ckpt.4242.partial.ckpt", run / "last.ckpt.4242.partial.tmp", run / "metrics.json.1.partial"]
    for p in partial:
        p.write_bytes(b"half a file")
    with pytest.raises(ckpt_io.CheckpointError, match="unfinished write"):
        ckpt_io.read(str(partial[0]))
    assert train_script.main(TINY + ["--epochs", "2", "--output_dir", str(run), "--resume", "auto"]) == 0
    assert not any(p.exists() for p in partial)
    assert "removed unfinished writes of an interrupted run: last.ckpt.4242.partial.ckpt" in \
        (run / "train.log").read_text()


def test_empty_checkpoint_is_named_plainly(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ckpt_io.CheckpointError) as exc:
        ckpt_io.read(str(empty))
    assert "is empty (0 bytes)" in str(exc.value) and "filter_prefix" not in str(exc.value)


# --- bad values and paths: one line, exit 2, no run folder --------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["--lr", "inf"], "lr: 'inf' is not a finite number"),
    (["--weight_decay", "inf"], "weight_decay: 'inf' is not a finite number"),
    (["--seed", "4294967296"], "seed=4294967296 (from command line) must be between 0 and 4294967295"),
    (["--seed", "-3"], "must be between 0 and 4294967295"),
    (["--val_split", "1.5"], "the synthetic data set has its own generated validation set"),
    (["--lrr", "0.1"], "unknown argument '--lrr' (did you mean '--lr'?)"),
    (["--resume", "/nonexistent/last.ckpt"], "resume checkpoint /nonexistent/last.ckpt does not exist"),
    (["--new_classifier", "true"], "new_classifier=true starts a pretrained network's classifier afresh, but no "
                                   "pretrained_ckpt is given"),
    (["--crop_scale_min", "0.5"], "crop_scale_min=0.5 shapes image folders' random-resized crop; "
                                  "dataset=synthetic trains with its own crop and would ignore it"),
])
def test_bad_values_fail_with_one_line_and_leave_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert train_script.main(TINY + argv + ["--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
    assert not out.exists()


def test_data_path_with_the_synthetic_data_set_is_an_error(tmp_path, capsys):
    (tmp_path / "data" / "train" / "cat").mkdir(parents=True)
    assert train_script.main(["--data_path", str(tmp_path / "data"), "--output_dir", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "dataset=synthetic generates its images and would ignore it" in err
    assert "--dataset imagefolder (the folder looks like imagefolder)" in err
    assert not (tmp_path / "never").exists()


def test_duplicate_yaml_keys_are_refused(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.1\nepochs: 2\nlr: 0.2\n")
    assert train_script.main(["--config", str(recipe), "--output_dir", str(tmp_path / "never")]) == 2
    assert "key 'lr' is given twice (line 3)" in capsys.readouterr().err


def test_a_recipe_of_nested_aliases_is_refused_without_expanding_it(tmp_path, capsys):
    """A few hundred bytes that stand for 9^8 values: refused at the first alias, before anything quotes them."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8)]
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("\n".join(lines) + "\nlr: *a7\n")
    assert train_script.main(["--config", str(recipe), "--output_dir", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: config file {recipe}: a YAML alias (*a0, line 2); a recipe is a flat mapping of "
                   f"key: value, write the value out")
    assert not (tmp_path / "never").exists()


def test_a_long_bad_value_is_quoted_short(tmp_path, capsys):
    recipe = tmp_path / "long.yaml"
    recipe.write_text("nesterov: [" + ", ".join(["x" * 50] * 1000) + "]\n")
    assert train_script.main(["--config", str(recipe), "--output_dir", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: nesterov: ['xxx") and "is not a boolean" in err and len(err) < 400


@pytest.mark.parametrize("value", ["null", "[a, b]", "{a: 1}"])
def test_a_yaml_value_that_is_not_text_is_refused_for_a_text_key(tmp_path, capsys, value):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {value}\n")
    before = sorted(os.listdir(os.getcwd()))
    assert train_script.main(["--config", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: output_dir: ") and "is not a text value (from " in err and "\n" not in err
    assert sorted(os.listdir(os.getcwd())) == before  # no folder named None or ['a', 'b']


@pytest.mark.parametrize("kind", ["proc", "file"])
def test_output_dir_that_cannot_be_created(tmp_path, capsys, kind):
    if kind == "proc":
        target = "/proc/resdist_cannot_be_here"
        message = "cannot create output_dir /proc/resdist_cannot_be_here"
    else:
        target = str(tmp_path / "a_file")
        open(target, "w").write("not a folder")
        message = "exists and is not a folder"
    assert train_script.main(TINY + ["--output_dir", target]) == 2
    assert message in capsys.readouterr().err


def _run(args, shell_prefix=""):
    """Run train.py in a child process (for faults that need a process of their own)."""
    cmd = f"{shell_prefix} exec {sys.executable} train.py " + " ".join(args)
    return subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_device_this_build_lacks(tmp_path):
    result = _run(TINY + ["--device_target", "GPU", "--output_dir", str(tmp_path / "never")])
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: device_target=GPU is not available in this MindSpore build")
    assert "Traceback" not in result.stderr and not (tmp_path / "never").exists()


def test_a_full_disk_leaves_no_partial_checkpoint(tmp_path):
    """ulimit -f: the first checkpoint (~2 MB of training state) cannot be written."""
    out = tmp_path / "run"
    result = _run(TINY + ["--epochs", "1", "--max_steps_per_epoch", "2", "--output_dir", str(out)], "ulimit -f 400;")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not write checkpoint") and "nothing was written under that name" in last
    assert "Traceback" not in result.stderr
    assert not [f for f in os.listdir(out) if f.endswith(".ckpt") or ".partial" in f]


# --- broken data files --------------------------------------------------------------------------------------------

def test_cifar_label_out_of_range_names_file_and_label(tmp_path, capsys):
    from resdist.data import CIFAR10_RECORD

    records = np.zeros((10000, CIFAR10_RECORD), np.uint8)
    records[:, 0] = np.arange(10000) % 10
    records[17, 0] = 12
    (tmp_path / "cifar").mkdir()
    records.tofile(tmp_path / "cifar" / "data_batch_1.bin")
    assert train_script.main(["--dataset", "cifar10", "--data_path", str(tmp_path / "cifar"),
                              "--output_dir", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "data_batch_1.bin record 17 has label 12, but labels go from 0 to 9" in err


@pytest.mark.parametrize("broken", [b"", b"this is not an image"])
def test_a_corrupt_image_is_named(tmp_path, capsys, broken):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "data" / "train" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                tmp_path / "data" / "train" / cls / f"{i}.jpg")
    bad = tmp_path / "data" / "train" / "b" / "broken.jpg"
    bad.write_bytes(broken)
    code = train_script.main(["--arch", "plain8", "--procedure", "plain", "--dataset", "imagefolder",
                              "--data_path", str(tmp_path / "data"), "--image_size", "32", "--batch_size", "3",
                              "--val_split", "none", "--epochs", "1", "--num_parallel_workers", "1",
                              "--output_dir", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"training data: cannot read {bad}" in err and "corrupt or empty" in err


# --- a kill while an epoch is being saved -------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("killed_at,epoch", [("final.ckpt", 3), ("metrics.json", 2)])
def test_a_kill_while_an_epoch_is_saved_trains_that_epoch_again(tmp_path, killed_at, epoch):
    """Killed as the last epoch's final.ckpt, or an epoch's metrics.json, is written: the run must neither look
    finished with no final.ckpt nor lose the epoch's record; the resume trains the epoch again, and the summary's
    best epoch is the one best.ckpt holds."""
    out = tmp_path / "run"
    argv = TINY + ["--epochs", "3", "--output_dir", str(out)]
    killed = subprocess.run([sys.executable, os.path.join("tests", "kill_at_write.py"), killed_at, str(epoch)]
                            + argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # last.ckpt is written last: it still holds the epoch before
    assert ckpt_io.meta_value(ckpt_io.read(str(out / "last.ckpt")), "epoch") == epoch - 1
    assert train_script.main(argv + ["--resume", "auto"]) == 0
    metrics = json.load(open(out / "metrics.json"))
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert ckpt_io.meta_value(ckpt_io.read(str(out / "final.ckpt")), "epoch") == 3
    best = ckpt_io.read(str(out / "best.ckpt"))
    assert ckpt_io.meta_value(best, "epoch") == metrics["summary"]["best_epoch"]
    assert ckpt_io.meta_value(best, "best_acc") == pytest.approx(metrics["summary"]["best_val_top1"])


# --- a resume that would change the learning-rate schedule ------------------------------------------------------

def test_a_cosine_run_keeps_its_length_and_a_step_run_may_be_extended(tmp_path, capsys):
    out = tmp_path / "cos"
    cosine = TINY + ["--lr_schedule", "cosine", "--output_dir", str(out)]
    assert train_script.main(cosine + ["--epochs", "2", "--max_steps_per_epoch", "2"]) == 0
    capsys.readouterr()
    before = _tree(out)
    assert train_script.main(cosine + ["--epochs", "4", "--max_steps_per_epoch", "2", "--resume", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: resume: {out}/last.ckpt follows a cosine learning-rate schedule over 2 epochs; "
                   f"epochs=4 would change the learning rate of every step still to come. Pass --epochs 2, or "
                   f"train on from its final.ckpt with --pretrained_ckpt and a schedule of its own")
    assert _tree(out) == before
    step = tmp_path / "step"  # milestones are epochs: the added epochs run at the last milestone's rate
    args = TINY + ["--lr_schedule", "step", "--lr_milestones", "1", "--max_steps_per_epoch", "2",
                   "--output_dir", str(step)]
    assert train_script.main(args + ["--epochs", "1"]) == 0
    assert train_script.main(args + ["--epochs", "2", "--resume", "auto"]) == 0
    assert "epoch 2/2 step 2/2 loss" in (step / "train.log").read_text()
    assert " lr 0.00500 " in (step / "train.log").read_text().split("resumed from")[1]


@pytest.mark.parametrize("change", [["--batch_size", "16"], ["--max_steps_per_epoch", "3"]])
def test_a_moved_checkpoint_resumed_with_other_steps_per_epoch_is_refused(one_epoch_run, tmp_path, capsys, change):
    """Out of its run folder there is no config.yaml to compare with; the checkpoint records its steps an epoch."""
    moved = tmp_path / "moved.ckpt"
    shutil.copyfile(os.path.join(one_epoch_run, "last.ckpt"), moved)
    out = tmp_path / "new"
    argv = TINY + ["--epochs", "2", "--resume", str(moved), "--output_dir", str(out)] + change
    assert train_script.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: resume: {moved} was trained with 4 steps an epoch, this run would take ")
    assert "\n" not in err and not out.exists()


# --- two runs in one folder ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_run_in_a_folder_in_use_is_refused_and_a_killed_run_resumes(tmp_path, capsys):
    """Two real train.py processes: while the first trains, a second on the same --output_dir (here resuming
    it) is refused by the run folder's lock, changing nothing; once the first is killed, --resume auto works."""
    run = tmp_path / "run"
    small = TINY + ["--synthetic_train_size", "64", "--output_dir", str(run)]
    first = subprocess.Popen([sys.executable, "train.py"] + small + ["--epochs", "100000"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if (run / "last.ckpt").exists() or first.poll() is not None:
                break
            subprocess.run(["sleep", "0.5"])
        assert first.poll() is None, first.stderr.read()
        assert (run / ".train.lock").read_text().strip() == str(first.pid)
        second = subprocess.run([sys.executable, "train.py"] + small + ["--epochs", "100000", "--resume", "auto"],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert first.poll() is None  # still training: the refusal was the lock's, not a finished run's
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1] == (
            f"error: output_dir {run} is in use by another training process (pid {first.pid}); wait for it to "
            f"end, or choose another --output_dir")
        assert "resumed from" not in (run / "train.log").read_text()  # the second wrote nothing to the log
    finally:
        first.kill()
        first.wait()
    done = int(ckpt_io.meta_value(ckpt_io.read(str(run / "last.ckpt")), "epoch", 0))
    assert done >= 1
    capsys.readouterr()
    assert train_script.main(small + ["--epochs", str(done + 1), "--resume", "auto"]) == 0
    assert f"resumed from {run}/last.ckpt: {done} epochs done" in (run / "train.log").read_text()
