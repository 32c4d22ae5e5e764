"""The benchmark scripts' own logic (parsing settings, summing oneDNN's log); no timing is asserted here."""
import os
import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))

import onednn_profile  # noqa: E402
import runtime_settings  # noqa: E402


def test_settings_are_environment_variables_or_benchmark_arguments():
    assert runtime_settings.parse_setting("A=1, B=x=y") == ({"A": "1", "B": "x=y"}, [])
    assert runtime_settings.parse_setting("default") == ({}, [])
    assert runtime_settings.parse_setting("A=1,--graph_kernel") == ({"A": "1"}, ["--graph_kernel"])
    with pytest.raises(ValueError, match="not NAME=VALUE"):
        runtime_settings.parse_setting("A")


def test_recorded_commands_name_no_machine_folders():
    import benchutil
    command = benchutil.portable_command("/somewhere/bench/runtime_settings.py", [
        "--output", os.path.join(ROOT, "bench", "results", "x.json"), "--output=/tmp/run7/y.json", "--nets", "r20",
        "--ckpt_files", "/tmp/a/b.ckpt,c.ckpt," + os.path.join(ROOT, "hub", "d.ckpt")])
    assert command == ("runtime_settings.py --output bench/results/x.json --output=y.json --nets r20 "
                       "--ckpt_files b.ckpt,c.ckpt,hub/d.ckpt")


def test_committed_bench_reports_name_no_machine_folders():
    results = os.path.join(ROOT, "bench", "results")
    for dirpath, _, names in os.walk(results):
        for name in names:
            if name.endswith((".json", ".md", ".yaml", ".log")):
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    text = f.read()
                for folder in ("/work/", "/home/", "/root/", "/tmp/"):
                    assert folder not in text, f"{name} names a machine folder {folder}"


def test_a_single_setting_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        runtime_settings.main(["--settings", "A=1"])
    assert exc.value.code == 2 and "at least two settings" in capsys.readouterr().err


def test_onednn_log_is_summed_after_the_marker_with_convolution_gflops():
    conv = ("onednn_verbose,v1,primitive,exec,cpu,convolution,x64:gemm:jit,backward_weights,src:f32 dst:f32,,"
            "alg:convolution_direct,mb2_ic4oc8_ih8oh8kh3sh1dh0ph1_iw8ow8kw3sw1dw0pw1,{ms}")
    bnorm = ("onednn_verbose,v1,primitive,exec,cpu,batch_normalization,ncsp_bnorm:any,backward,data:f32,,flags:CH,"
             "mb2ic8ih8iw8,0.5")
    lines = [conv.format(ms=100.0), onednn_profile.MARK, conv.format(ms=1.0), bnorm, conv.format(ms=3.0), bnorm]
    rows = {r["primitive"]: r for r in onednn_profile.summarise(lines, steps=2)}
    assert rows["convolution"]["calls_per_step"] == 1 and rows["convolution"]["ms_per_step"] == 2.0
    flop = 2 * 2 * 4 * 8 * 8 * 8 * 3 * 3  # 2 * N * Cin * Cout * Hout * Wout * Kh * Kw
    assert rows["convolution"]["gflop_per_s"] == pytest.approx(flop / 1e9 / 3.0e-3, rel=1e-3)  # median call: 3 ms
    assert rows["batch_normalization"]["ms_per_step"] == 0.5 and "gflop_per_s" not in rows["batch_normalization"]


@pytest.mark.slow
def test_profile_of_an_rd_step_shows_the_frozen_teacher_gets_no_weight_gradient(tmp_path, capsys):
    """The profiler end to end on the smallest pair, and what its counts say of the RD step (resnet8/plain8:
    3 stages of one block; the teacher's stages 2 and 3 have a projection shortcut, 3 convolutions each)."""
    import json

    out = tmp_path / "profile.json"
    assert onednn_profile.main(["--net", "resnet8", "--procedure", "rd", "--steps", "1", "--output", str(out)]) == 0
    calls = {}
    for row in json.load(open(out))["rows"]:
        if row["primitive"] == "convolution":
            calls[row["pass"]] = calls.get(row["pass"], 0) + row["calls_per_step"]
    # weight gradients: the student's 7 convolutions and the feature connector's 1x1, none of the teacher's
    assert calls["backward_weights"] == 7 + 1
    # forward: student 7 + connector 1 + the whole teacher 9 (its feature) + mixed paths 6 (stages 2-3) and 3
    assert calls["forward_training"] == 7 + 1 + 9 + 6 + 3
    # input gradients: student 6 (not the first conv's image) + connector 1 + mixed paths 6 + 3
    assert calls["backward_data"] == 6 + 1 + 6 + 3
    assert "resnet8 rd, batch 16" in capsys.readouterr().out


def test_liveness_walk_on_a_hand_computed_network():
    """image -> c1 -> c2 (+ image) -> add; every tensor 1x2x2x2 float32 = 32 bytes."""
    from resdist.deploy import memory as mm

    shape = (1, 2, 2, 2)
    residual = [mm.Op("c1", ["image"], "c1", shape, 10), mm.Op("c2", ["c1"], "c2", shape, 10),
                mm.Op("add", ["c2", "image"], "add", shape, 8, ["image"])]
    r = mm.walk(residual, {"image": shape})
    # at c2: image (kept for the add), c1 (c2's input), c2 = 96; at add: image, c2, add = 96 (not higher)
    assert r["peak_bytes"] == 96 and r["peak_op"] == "c2" and r["shortcut_bytes_at_peak"] == 32
    assert r["traffic_bytes"] == (32 + 32) + (32 + 32) + (32 + 32 + 32) and r["flops"] == 28
    plain = mm.walk(residual[:2], {"image": shape})
    # image is freed after c1: at c2 only c1 and c2 are live
    assert plain["peak_bytes"] == 64 and plain["shortcut_bytes_at_peak"] == 0 and plain["traffic_bytes"] == 128


def test_graph_of_a_real_network_has_its_shortcuts():
    from resdist.deploy import memory as mm
    from resdist.models import create_model

    r20 = mm.analyse(create_model("resnet20", num_classes=10), 1, 32)
    p20 = mm.analyse(create_model("plain20", num_classes=10), 1, 32)
    assert r20["additions"] == 9 and p20["additions"] == 0
    assert r20["peak_bytes"] > p20["peak_bytes"] and r20["shortcut_bytes_at_peak"] > 0
    # convolution FLOPs of ResNet-20 (He et al.: about 41 M multiply-adds) plus the projections
    assert 80e6 < r20["flops"] < 84e6


def test_study_commands_carry_no_machine_paths_and_the_table_averages_seeds(tmp_path):
    import json as json_module

    import cifar10_study as study

    cmd = ["/usr/bin/python", "train.py", "--data_path", "/data/cifar", "--output_dir", "/runs/study/plain56_rd_seed1",
           "--teacher_ckpt", os.path.join(study.ROOT, "bench", "results", "cifar10_study", "resnet56_teacher.ckpt")]
    results = os.path.join(study.ROOT, "bench", "results", "cifar10_study")
    expected = ("python train.py --data_path DATA_PATH --output_dir OUTPUT_DIR/plain56_rd_seed1 "
                "--teacher_ckpt bench/results/cifar10_study/resnet56_teacher.ckpt")
    assert study.portable(cmd, "/data/cifar", "/runs/study", results) == expected
    # the runner started from another checkout (a worktree), writing into this one's results folder
    other = ["/usr/bin/python", "train.py", "--data_path", "/data/cifar", "--output_dir",
             "/runs/study/plain56_rd_seed1", "--teacher_ckpt", "/elsewhere/bench/results/cifar10_study/"
             "resnet56_teacher.ckpt"]
    assert study.portable(other, "/data/cifar", "/runs/study", "/elsewhere/bench/results/cifar10_study") == expected
    other[-1] = "/mine/resnet56_teacher.ckpt"
    assert study.portable(other, "/data/cifar", "/runs/study", "/mine").endswith("RESULTS_DIR/resnet56_teacher.ckpt")
    for row, final, best in (("plain56_rd_seed1", 60.0, 61.0), ("plain56_rd_seed2", 64.0, 64.5),
                             ("plain20_alone", 70.0, 70.0)):
        epochs = [{"epoch": 1, "val_top1": best, "train_acc": 50.0}, {"epoch": 2, "val_top1": final,
                                                                        "train_acc": final + 20}]
        spec = study.SHORT.row(row)
        (tmp_path / f"{row}.json").write_text(json_module.dumps(
            {"row": row, "group": spec.group, "seed": spec.seed, "final_val_top1": final, "best_val_top1": best,
             "best_epoch": 1, "wall_seconds": 60, "epoch_seconds_total": 600, "epochs": epochs}))
    study.report(str(tmp_path), study.SHORT)
    table = (tmp_path / "table.md").read_text()
    # the training accuracy is each run's last epoch's
    assert ("| plain56_rd | 1,2 | 62.00 ± 2.00 (60.00, 64.00) | 61.00 @ 1, 64.50 @ 1 | 80.00, 84.00 | "
            "10 min, 10 min |") in table
    from PIL import Image

    for name in ("val_top1.png", "train_acc.png"):
        with Image.open(tmp_path / name) as png:  # one panel per teacher, side by side
            assert png.size == (2 * 760, 520)
    colours = study.row_colours(study.SHORT.names, study.SHORT)  # a colour per role, whatever depth or seed
    assert colours["plain56_rd_seed1"] == colours["plain56_rd_seed2"] == colours["plain20_rd"]
    assert colours["resnet20_teacher"] == colours["resnet56_teacher"]
    assert colours["plain56_alone_seed2"] == colours["plain20_alone"] != colours["plain20_kd"]
    assert len({colours[n] for n in ("plain56_rd_seed1", "plain56_rd_eta1", "plain56_rd_keep_downsample",
                                     "plain56_kd", "plain56_alone_seed1", "resnet56_teacher")}) == 6


@pytest.mark.slow
def test_study_runner_skips_finished_rows_and_continues_an_interrupted_one(tmp_path):
    """The real runner, twice over two tiny rows (synthetic images instead of the recipe's CIFAR-10 budget): rows
    with a result are skipped and their files left alone; a row whose result is missing but whose run folder has
    a checkpoint continues from it (here: to a second epoch) instead of starting again."""
    import json
    import subprocess

    runs, results = tmp_path / "runs", tmp_path / "results"
    tiny = []
    # a step schedule: the row is run for 1 epoch, then continued to 2 (a cosine one keeps its length on resume)
    for setting in ("dataset=synthetic", "data_path=", "val_split=auto", "train_subset=0", "synthetic_train_size=64",
                    "synthetic_val_size=32", "batch_size=32", "warmup_epochs=0", "log_interval=1",
                    "lr_schedule=step"):
        tiny += ["--set", setting]

    def runner(*args):
        cmd = [sys.executable, os.path.join(ROOT, "bench", "cifar10_study.py"), "--data_path", str(tmp_path),
               "--output_dir", str(runs), "--results_dir", str(results)] + tiny + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    hook_log = tmp_path / "after_row.log"
    hook = f"sh -c 'echo \"$STUDY $STUDY_ROW $*\" >> {hook_log}' sh"
    first = runner("--rows", "resnet20_teacher,plain20_alone", "--set", "epochs=1", "--after_row", hook)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    calls = hook_log.read_text().splitlines()  # once per finished row, with its files
    assert [c.split()[:2] for c in calls] == [["converged", "resnet20_teacher"], ["converged", "plain20_alone"]]
    assert f"{results}/plain20_alone.json" in calls[1].split() and f"{results}/table.md" in calls[1].split()
    assert {"resnet20_teacher.json", "resnet20_teacher.ckpt", "plain20_alone.json", "table.md", "val_top1.png",
            "train_acc.png"} <= \
        {p.name for p in results.iterdir()}
    row = json.loads((results / "plain20_alone.json").read_text())
    assert [e["epoch"] for e in row["epochs"]] == [1] and str(tmp_path) not in row["command"]
    before = {p.name: p.read_bytes() for p in results.iterdir()}

    again = runner("--rows", "resnet20_teacher,plain20_alone", "--set", "epochs=1", "--after_row", hook)
    assert again.returncode == 0 and "[resnet20_teacher] done, skipped" in again.stdout
    assert len(hook_log.read_text().splitlines()) == 2  # nothing finished: the hook did not run
    assert "[plain20_alone] done, skipped" in again.stdout
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before

    (results / "plain20_alone.json").unlink()  # as if the runner had died after the row's first epoch
    listed = runner("--list")
    val = json.loads((runs / "plain20_alone" / "metrics.json").read_text())["epochs"][-1]["val_top1"]
    assert (f"plain20_alone                  started: 1 epoch(s) done (val top-1 {val:.2f}% after epoch 1), "
            f"continues from last.ckpt") in listed.stdout
    # the session ends: the unfinished row is saved for the next machine, and this machine's run folder is lost
    saved = runner("--snapshot", "--after_row", hook)
    assert saved.returncode == 0 and "[plain20_alone] snapshot of 1 epoch(s)" in saved.stdout, saved.stderr
    snapshot = results / "unfinished" / "plain20_alone"
    # what a resume needs; no best.ckpt: no row trains from this one (metrics.json has its best epoch)
    assert {p.name for p in snapshot.iterdir()} == {"last.ckpt", "metrics.json", "config.yaml", "train.log",
                                                    "study_wall_seconds.json"}
    for name in ("config.yaml", "train.log", "metrics.json"):  # committed: no machine folder in them
        assert str(tmp_path) not in (snapshot / name).read_text(), name
    assert "OUTPUT_DIR/plain20_alone" in (snapshot / "config.yaml").read_text()
    assert hook_log.read_text().splitlines()[-1] == f"converged plain20_alone {snapshot}"
    import shutil

    shutil.rmtree(runs / "plain20_alone")
    assert (f"plain20_alone                  started: 1 epoch(s) in its committed snapshot (val top-1 {val:.2f}% "
            f"after epoch 1), continues from it") in runner("--list").stdout
    resumed = runner("--rows", "plain20_alone", "--set", "epochs=2", "--after_row", hook)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "[plain20_alone] restored 1 epoch(s) from its committed snapshot" in resumed.stdout
    assert "[plain20_alone] resuming" in resumed.stdout
    row2 = json.loads((results / "plain20_alone.json").read_text())
    assert [e["epoch"] for e in row2["epochs"]] == [1, 2]
    assert row2["epochs"][0] == row["epochs"][0]  # epoch 1 kept, not trained again
    assert not snapshot.exists()  # finished: the snapshot is gone, and the hook was given it to commit its removal
    assert str(snapshot) in hook_log.read_text().splitlines()[-1].split()


@pytest.mark.slow
def test_study_runner_snapshots_a_training_row_every_so_often(tmp_path):
    """--snapshot_minutes: the runner snapshots the row while train.py trains it (and gives the hook each
    snapshot to commit), then, when the row finishes, deletes the snapshot and gives the hook its removal."""
    import json
    import subprocess

    runs, results = tmp_path / "runs", tmp_path / "results"
    hook_log = tmp_path / "after_row.log"
    hook = f"sh -c 'echo \"$STUDY_ROW|${{STUDY_MESSAGE:-finished}}|$*\" >> {hook_log}' sh"
    cmd = [sys.executable, os.path.join(ROOT, "bench", "cifar10_study.py"), "--data_path", str(tmp_path),
           "--output_dir", str(runs), "--results_dir", str(results), "--rows", "plain20_alone", "--after_row", hook,
           "--snapshot_minutes", "0.0002"]
    for setting in ("dataset=synthetic", "data_path=", "val_split=auto", "synthetic_train_size=64",
                    "synthetic_val_size=32", "batch_size=32", "warmup_epochs=0", "epochs=3",
                    "arch=plain8"):  # the row's recipe on a tiny network, for speed
        cmd += ["--set", setting]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    calls = [line.split("|") for line in hook_log.read_text().splitlines()]
    snapshot = results / "unfinished" / "plain20_alone"
    taken = [int(c[1].split("snapshot after ")[1].split()[0]) for c in calls[:-1]]
    assert taken and taken == sorted(set(taken)) and all(1 <= n <= 3 for n in taken), calls  # each a new epoch
    assert all(c[0] == "plain20_alone" and c[2] == str(snapshot) for c in calls[:-1])
    assert f"[plain20_alone] snapshot of {taken[0]} epoch(s)" in done.stdout
    assert calls[-1][1] == "finished" and str(snapshot) in calls[-1][2].split()  # its removal, to commit
    assert not snapshot.exists()
    row = json.loads((results / "plain20_alone.json").read_text())
    assert [e["epoch"] for e in row["epochs"]] == [1, 2, 3]


def test_study_runner_refuses_a_negative_snapshot_interval(tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "cifar10_study.py"), "--data_path",
                           str(tmp_path), "--output_dir", str(tmp_path / "runs"), "--snapshot_minutes", "-5"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--snapshot_minutes must be 0 (off) or a positive number" in done.stderr
    assert not (tmp_path / "runs").exists()


def _fake_run(folder, epochs, stamp=0):
    import json

    folder.mkdir(parents=True)
    for name in ("last.ckpt", "best.ckpt"):
        (folder / name).write_bytes(b"weights %d" % epochs)
        os.utime(folder / name, ns=(stamp, stamp))
    (folder / "metrics.json").write_text(json.dumps({"epochs": [{"epoch": e + 1} for e in range(epochs)]}))
    (folder / "config.yaml").write_text("data_path: /data/cifar\noutput_dir: /runs/row\n")


def test_run_snapshot_is_taken_whole_and_restored_only_when_further_along(tmp_path):
    import run_snapshot

    run, dest = tmp_path / "runs" / "row", tmp_path / "unfinished" / "row"
    _fake_run(run, 3)
    assert run_snapshot.save(str(run), str(dest), [("/data/cifar", "DATA_PATH"), ("/runs", "OUTPUT_DIR")]) == 3
    assert (dest / "config.yaml").read_text() == "data_path: DATA_PATH\noutput_dir: OUTPUT_DIR/row\n"
    assert (dest / "last.ckpt").read_bytes() == b"weights 3" and not (dest / "train.log").exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["row"]  # no staging folder left
    assert (dest / "best.ckpt").exists()
    lean = tmp_path / "lean"  # a row no other row trains from: best.ckpt need not travel
    assert run_snapshot.save(str(run), str(lean), keep_best=False) == 3
    assert sorted(p.name for p in lean.iterdir()) == ["config.yaml", "last.ckpt", "metrics.json"]

    # best.ckpt newer than last.ckpt and metrics.json: the copy fell inside an epoch's end (which writes best.ckpt,
    # metrics.json, then last.ckpt); never saved half-way
    os.utime(run / "metrics.json", ns=(1, 1))
    os.utime(run / "best.ckpt", ns=(10 ** 18, 10 ** 18))
    with pytest.raises(RuntimeError, match="kept changing"):
        run_snapshot.save(str(run), str(dest), attempts=2, wait=0)
    assert (dest / "last.ckpt").read_bytes() == b"weights 3"  # the earlier snapshot stands
    with pytest.raises(ValueError, match="no finished epoch"):
        run_snapshot.save(str(tmp_path / "nothing"), str(tmp_path / "x"))

    behind = tmp_path / "behind"  # this machine's folder is older than the snapshot: replaced, kept aside
    _fake_run(behind, 1)
    assert run_snapshot.restore(str(dest), str(behind)) == 3
    assert (behind / "last.ckpt").read_bytes() == b"weights 3"
    assert (tmp_path / "behind.superseded" / "last.ckpt").read_bytes() == b"weights 1"
    ahead = tmp_path / "ahead"  # further along than the snapshot: left as it is
    _fake_run(ahead, 5)
    assert run_snapshot.restore(str(dest), str(ahead)) == 0
    assert (ahead / "last.ckpt").read_bytes() == b"weights 5"
    assert run_snapshot.restore(str(dest), str(tmp_path / "fresh")) == 3  # a fresh machine


def test_commit_study_row_commits_only_the_rows_files(tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], check=True)
    (repo / "row.json").write_text("{}")
    (repo / "other.txt").write_text("staged work")
    subprocess.run(git + ["add", "other.txt"], check=True)
    env = {**os.environ, "STUDY": "converged", "STUDY_ROW": "plain20_rd", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(["bash", os.path.join(ROOT, "scripts", "commit_study_row.sh"), str(repo / "row.json")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    log = subprocess.run(git + ["log", "--format=%s", "--name-only"], capture_output=True, text=True).stdout
    assert log.split() == ["CIFAR-10", "converged", "study:", "row", "plain20_rd", "finished", "row.json"]
    status = subprocess.run(git + ["status", "--short"], capture_output=True, text=True).stdout
    assert status.strip() == "A  other.txt"  # still staged, not committed

    # a snapshot folder is committed, then removed when its row finishes: the removal is committed
    (repo / "unfinished" / "row").mkdir(parents=True)
    (repo / "unfinished" / "row" / "last.ckpt").write_bytes(b"w")
    commit = ["bash", os.path.join(ROOT, "scripts", "commit_study_row.sh")]
    snap = subprocess.run(commit + [str(repo / "unfinished" / "row")], capture_output=True, text=True,
                          env={**env, "STUDY_MESSAGE": "snapshot of row"})
    assert snap.returncode == 0, snap.stderr
    (repo / "unfinished" / "row" / "last.ckpt").unlink()
    (repo / "unfinished" / "row").rmdir()
    (repo / "row.json").write_text('{"done": 1}')
    done = subprocess.run(commit + [str(repo / "row.json"), str(repo / "unfinished" / "row"), str(repo / "never")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    log = subprocess.run(git + ["log", "--format=%s", "--name-status", "-2"], capture_output=True, text=True).stdout
    assert log.split() == ["CIFAR-10", "converged", "study:", "row", "plain20_rd", "finished", "M", "row.json",
                           "D", "unfinished/row/last.ckpt", "snapshot", "of", "row", "A", "unfinished/row/last.ckpt"]
    status = subprocess.run(git + ["status", "--short"], capture_output=True, text=True).stdout
    assert status.strip() == "A  other.txt"
    nothing = subprocess.run(commit + [str(repo / "never")], capture_output=True, text=True, env=env)
    assert nothing.returncode == 0 and "nothing to commit" in nothing.stdout
    assert subprocess.run(git + ["status", "--short"], capture_output=True, text=True).stdout.strip() == "A  other.txt"


@pytest.mark.slow
def test_transfer_bench_writes_the_digits_folder_and_runs_resumable_arms(tmp_path, monkeypatch):
    """bench/transfer.py on digits the test makes (the real ones come with scikit-learn, not a test dependency):
    the image folder's split, one real 1-epoch arm from a pretrained checkpoint, the report, and a second call
    that skips the finished arm."""
    import json

    import transfer
    from PIL import Image

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 12)
    images = rng.integers(0, 17, size=(len(labels), 8, 8)).astype(np.float64)
    root = transfer.write_digits_folder(images, labels, str(tmp_path / "digits"), train_per_class=8)
    for split, per_class in (("train", 8), ("val", 4)):
        counts = [len(os.listdir(tmp_path / "digits" / split / str(d))) for d in range(10)]
        assert counts == [per_class] * 10, split
    first = sorted(os.listdir(tmp_path / "digits" / "train" / "0"))[0]
    with Image.open(tmp_path / "digits" / "train" / "0" / first) as png:
        assert png.size == (32, 32) and png.mode == "RGB"
    assert transfer.write_digits_folder(images, labels, root) == root  # reused, not rewritten
    with pytest.raises(SystemExit, match="digit 0 has 12 images, not more than 12"):
        transfer.write_digits_folder(images, labels, str(tmp_path / "other"), train_per_class=12)
    assert not (tmp_path / "other").exists()

    import subprocess

    pre = tmp_path / "pre"
    done = subprocess.run([sys.executable, "train.py", "--arch", "plain8", "--procedure", "plain", "--epochs", "1",
                           "--synthetic_train_size", "64", "--synthetic_val_size", "32", "--batch_size", "32",
                           "--output_dir", str(pre)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    monkeypatch.setattr(transfer, "digits_arrays", lambda: (images, labels))
    monkeypatch.setattr(transfer, "write_digits_folder",
                        lambda imgs, labs, where, per_class: root)  # the folder made above
    report = tmp_path / "transfer.json"
    argv = ["--work_dir", str(tmp_path / "work"), "--arm", f"p=plain8:{pre / 'best.ckpt'}", "--set", "epochs=1",
            "--set", "batch_size=16", "--output", str(report)]
    assert transfer.main(argv) == 0
    arm = json.loads(report.read_text())["arms"][0]
    assert arm["arm"] == "p" and arm["start"].endswith("best.ckpt") and len(arm["val_top1_per_epoch"]) == 1
    log = (tmp_path / "work" / "per_class_100" / "runs" / "p" / "train.log").read_text()
    assert "classifier re-initialised (new_classifier=true)" in log
    assert "| p | plain8 |" in (tmp_path / "transfer.md").read_text()
    before = log
    assert transfer.main(argv) == 0  # finished: skipped, not trained again
    assert (tmp_path / "work" / "per_class_100" / "runs" / "p" / "train.log").read_text() == before
    for bad in (["--arm", "q=plain8:missing.ckpt"], ["--arm", "q=plain21"], ["--train_per_class", "0"]):
        with pytest.raises(SystemExit) as exc:
            transfer.main(["--work_dir", str(tmp_path / "refused")] + bad)
        assert exc.value.code == 2, bad
    assert not (tmp_path / "refused").exists()


def test_int8_bench_defaults_name_committed_checkpoints():
    """Run from the repository's top as documented, bench/int8.py's default networks are files a clone has."""
    import argparse

    import int8

    # parse_specs is the benchmark's own reading of --cifar: it exits naming any checkpoint that does not exist
    specs = int8.parse_specs(argparse.Namespace(cifar=int8.DEFAULT_CIFAR, data_path="", no_imagenet=True))
    assert [s["arch"] for s in specs] == ["resnet20", "plain20", "resnet56", "plain56"]
    assert all(s["ckpt"].startswith(ROOT) and os.path.isfile(s["ckpt"]) for s in specs)
    # the Dirac plain-56 calibrated as its Hub card is (percentile), the others as export.py's default
    assert [s["calib_method"] for s in specs] == ["minmax", "minmax", "minmax", "percentile"]
    with pytest.raises(SystemExit, match="unknown calibration method 'median'; after '@' write one of minmax"):
        int8.parse_specs(argparse.Namespace(cifar=f"plain20={specs[1]['ckpt']}@median", data_path="",
                                            no_imagenet=True))


@pytest.mark.slow
def test_int8_bench_compares_float_and_int8_resnet_and_plain(made_cifar10, tmp_path):
    """bench/int8.py end to end on the tiny pair (random weights, generated CIFAR files): every variant measured,
    and what onnxruntime made of each graph."""
    import json

    import int8

    from resdist import checkpoint as ckpt_io
    from resdist.models import create_model

    specs = []
    for arch in ("resnet8", "plain8"):
        path = str(tmp_path / f"{arch}.ckpt")
        ckpt_io.save(path, ckpt_io.network_params(create_model(arch, num_classes=10)),
                     ckpt_io.network_identity(arch, "full" if arch.startswith("plain") else None))
        specs.append(f"{arch}={path}" + ("@percentile" if arch == "plain8" else ""))
    out = tmp_path / "int8.json"
    assert int8.main(["--data_path", made_cifar10, "--cifar", ",".join(specs), "--no_imagenet", "--batches", "1",
                      "--calib_size", "32", "--val_images", "1000", "--rounds", "1", "--warmup", "0", "--runs",
                      "2", "--output", str(out)]) == 0
    report = json.load(open(out))
    assert report["first_conv_weights"] == "uint8" and isinstance(report["cpu_flags"], list)
    assert report["val_images"] == 1000
    rows = {r["net"]: r for r in report["rows"]}
    for row in rows.values():
        assert row["int8_u8"]["bytes"] < row["fp32"]["bytes"] / 2  # int8 weights
        for variant in int8.VARIANTS:
            assert 0 <= row[variant]["top1"] <= 100 and row[variant]["ms_b1"] > 0
            # INT8 top-1 also as the QDQ graph defines it (no integer kernels); float has one figure
            assert (0 <= row[variant]["top1_reference"] <= 100) if variant != "fp32" else \
                "top1_reference" not in row[variant]
    # uint8 activations: every convolution and every shortcut addition runs as an integer kernel
    resnet, plain = rows["resnet8"]["int8_u8"]["ops"], rows["plain8"]["int8_u8"]["ops"]
    assert resnet["QLinearConv"] == 9 and resnet["QLinearAdd"] == 3 and "Add" not in resnet and "Conv" not in resnet
    assert plain["QLinearConv"] == 7 and "QLinearAdd" not in plain
    assert rows["resnet8"]["fp32"]["ops"] == {"Conv": 9} and (tmp_path / "int8.png").is_file()
    # the README tables: each variant against float, and the plain/ResNet time ratio, from the JSON's figures
    table = (tmp_path / "int8.md").read_text()
    assert (rows["resnet8"]["calib_method"], rows["plain8"]["calib_method"]) == ("minmax", "percentile")
    u8 = rows["plain8"]["int8_u8"]
    assert (f"|  | INT8, uint8 activations, percentile | {u8['top1']:.2f}% | {u8['top1_reference']:.2f}% | "
            f"{u8['bytes'] / 2**20:.2f} | {u8['ms_b1']:.2f} | {u8['ms_b1'] / rows['plain8']['fp32']['ms_b1']:.2f}x |"
            ) in table
    ratio = rows["plain8"]["int8_s8"]["ms_b1"] / rows["resnet8"]["int8_s8"]["ms_b1"]
    assert f"| plain8 / resnet8, INT8, int8 activations | {ratio:.2f} |" in table


def test_int8_bench_refuses_too_few_calibration_images_and_writes_nothing(made_cifar10, tmp_path, capsys):
    """More calibration images than the training split holds: one line naming the problem, no report, and no
    temporary ONNX files left behind."""
    import glob
    import tempfile

    import int8

    from resdist import checkpoint as ckpt_io
    from resdist.models import create_model

    ckpt = str(tmp_path / "plain8.ckpt")
    ckpt_io.save(ckpt, ckpt_io.network_params(create_model("plain8", num_classes=10)),
                 ckpt_io.network_identity("plain8", "full"))
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "int8-bench-*")))
    out = tmp_path / "int8.json"
    assert int8.main(["--data_path", made_cifar10, "--cifar", f"plain8={ckpt}", "--no_imagenet", "--batches", "1",
                      "--calib_size", "1000000", "--output", str(out)]) == 2
    assert "calib_size=1000000 but the training split has only" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "int8.png").exists() and not (tmp_path / "int8.md").exists()
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "int8-bench-*"))) == before


def _curve_file(path, epochs):
    import json
    path.write_text(json.dumps({"epochs": [{"epoch": e, "train_acc": t, "val_top1": v} for e, t, v in epochs]}))
    return str(path)


def test_curve_comparison_pairs_the_shared_epochs_and_reports_the_differences(tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "bench", "reference"))
    import compare_curves
    ms = _curve_file(tmp_path / "ms.json", [(1, 30.0, 40.0), (2, 50.0, 55.0), (3, 60.0, 58.5)])
    ref = _curve_file(tmp_path / "ref.json", [(1, 31.0, 41.0), (2, 49.5, 56.25)])  # epoch 3 not run yet
    compare_curves.main([ms, ref, "--names", "MS,PT"])
    out = capsys.readouterr().out
    assert "| 1 | 30.0 | 31.0 | 40.00 | 41.00 |" in out and "| 2 | 50.0 | 49.5 | 55.00 | 56.25 |" in out
    assert "| 3 |" not in out and "| epoch | MS train acc | PT train acc |" in out
    _, summary = compare_curves.compare(compare_curves.load_epochs(ms), compare_curves.load_epochs(ref))
    assert summary["epochs_compared"] == 2 and summary["train_acc_max_abs_diff"] == 1.0
    assert summary["train_acc_mean_diff"] == pytest.approx(-0.25) and summary["mindspore_lower_train_acc_epochs"] == 1
    assert summary["best_val_top1"] == {"mindspore": [55.0, 2], "reference": [56.25, 2]}


def test_curve_comparison_rejects_files_without_epochs_by_name(tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "bench", "reference"))
    import compare_curves
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": [{"epoch": 1}]}')
    with pytest.raises(SystemExit, match="bad.json has no list of epochs"):
        compare_curves.load_epochs(str(bad))
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="bad.json is not JSON"):
        compare_curves.load_epochs(str(bad))
    a = _curve_file(tmp_path / "a.json", [(1, 30.0, 40.0)])
    b = _curve_file(tmp_path / "b.json", [(2, 30.0, 40.0)])
    with pytest.raises(SystemExit, match="share no epoch"):
        compare_curves.main([a, b])
    with pytest.raises(SystemExit) as bad_names:
        compare_curves.main([a, a, "--names", "MS"])
    assert bad_names.value.code == 2 and "--names takes two names separated by a comma" in capsys.readouterr().err


def test_bn_recalibration_sets_the_statistics_of_the_data_it_sees(made_cifar10):
    """With one batch, the re-estimated statistics are that batch's: evaluation mode then computes what training
    mode computes on it, which the wrong saved statistics did not."""
    import bn_recalibration
    import mindspore as ms

    from resdist.data import create_dataset
    from resdist.models import create_model

    net = create_model("plain8", num_classes=10)
    for _, bn in bn_recalibration.batchnorms(net):  # stale statistics, far from any the data gives
        bn.moving_mean.set_data(ms.Tensor(np.full(bn.moving_mean.shape, 3.0, np.float32)))
        bn.moving_variance.set_data(ms.Tensor(np.full(bn.moving_variance.shape, 9.0, np.float32)))
    data, _ = create_dataset("cifar10", made_cifar10, "calib", 64, calib_size=64)  # no augmentation: one batch
    images = next(data.create_tuple_iterator(num_epochs=1))[0]
    net.set_train(True)
    batch_stats = net(images).asnumpy()
    net.set_train(False)
    assert not np.allclose(net(images).asnumpy(), batch_stats, atol=1e-2)
    shifts, ratios = bn_recalibration.recalibrate(net, data)
    assert len(shifts) == len(ratios) == 7 and min(shifts) > 0.5  # every BatchNorm of plain8 moved, by many std
    assert min(ratios) > 1  # the stale variance 9 was larger than any the data gives
    np.testing.assert_allclose(net(images).asnumpy(), batch_stats, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_bn_recalibration_reports_both_accuracies_and_refuses_a_checkpoint_without_a_network(made_cifar10,
                                                                                                tmp_path, capsys):
    import json

    import bn_recalibration

    from resdist import checkpoint as ckpt_io
    from resdist.models import create_model

    params = ckpt_io.network_params(create_model("plain8", num_classes=10))
    ckpt = str(tmp_path / "run" / "last.ckpt")
    os.makedirs(os.path.dirname(ckpt))
    ckpt_io.save(ckpt, params, {**ckpt_io.network_identity("plain8", "full"), "epoch": 3})
    out = tmp_path / "report.json"
    assert bn_recalibration.main(["--ckpt_file", ckpt, "--data_path", made_cifar10, "--images", "128",
                                  "--batch_size", "64", "--output", str(out)]) == 0
    report = json.load(open(out))
    assert report["checkpoint"]["arch"] == "plain8" and report["checkpoint"]["epoch"] == 3
    for when in ("saved", "re_estimated"):
        assert set(report[when]) == {"val", "train_no_augmentation"}
        assert all(0 <= top1 <= 100 for top1 in report[when].values())
    assert report["mean_shift_in_std"]["layers"] == 7 and report["variance_ratio_saved_to_new"]["smallest"] > 0
    assert "fixed subset of 128" in report["statistics_from"]
    assert f"re-estimated:     val top-1 {report['re_estimated']['val']:.2f}%" in capsys.readouterr().out

    anonymous = str(tmp_path / "anonymous.ckpt")
    ckpt_io.save(anonymous, params)
    out2 = tmp_path / "report2.json"
    assert bn_recalibration.main(["--ckpt_file", anonymous, "--data_path", made_cifar10, "--images", "128",
                                  "--batch_size", "64", "--output", str(out2)]) == 2
    assert "records no network (arch)" in capsys.readouterr().err and not out2.exists()


def test_int8_weight_facts_count_the_levels_a_dominant_centre_tap_leaves():
    import int8_weights

    weight = np.zeros((2, 2, 3, 3))
    weight[0, 0, 1, 1], weight[0, 1, 0, 0], weight[0, 0, 2, 2] = 127.0, 1.0, -0.6  # channel 0: identity-like
    weight[1, 1, 1, 1], weight[1, 0, 2, 1] = 0.5, 2.0  # channel 1: an ordinary one, its largest weight off-centre
    facts = int8_weights.layer_facts(weight)
    # per channel, the largest |w| is 127 steps: 1.0 stays 1, -0.6 rounds to -1; channel 1 (scale 2/127) is exact
    # to within half a step: 0.5 -> 32 steps of 2/127
    error = 0.4 ** 2 + (0.5 - 32 * 2 / 127) ** 2
    assert facts["sqnr_db"] == pytest.approx(10 * np.log10((127 ** 2 + 1 + 0.36 + 0.25 + 4) / error))
    assert facts["centre_ratio"] == pytest.approx(np.median([127.0, 0.25]))
    assert facts["levels_left"] == pytest.approx(127 / np.median([127.0, 0.25]))
    assert "centre_ratio" not in int8_weights.layer_facts(np.ones((4, 2, 3, 3)))  # not square: no identity


def test_int8_weights_report_a_dirac_student_folded_and_refuse_a_checkpoint_without_a_network(tmp_path, capsys):
    import json

    import int8_weights

    from resdist import checkpoint as ckpt_io
    from resdist.models import create_model
    from resdist.models.dirac import apply_dirac

    files = []
    for dirac in (False, True):
        net = create_model("plain8", num_classes=10)
        if dirac:
            apply_dirac(net)  # alpha 1, beta 0.1: the identity dominates every block convolution
        files.append(str(tmp_path / f"dirac_{dirac}.ckpt"))
        ckpt_io.save(files[-1], ckpt_io.network_params(net),
                     {**ckpt_io.network_identity("plain8", "full"), "num_classes": 10})
    out = tmp_path / "report.json"
    assert int8_weights.main(["--ckpt_files", ",".join(files), "--output", str(out)]) == 0
    plain, dirac = json.load(open(out))["networks"]
    assert plain["convolutions"] == dirac["convolutions"] == 7 and plain["square_3x3"] == dirac["square_3x3"]
    assert plain["centre_ratio_median"] < 1 and plain["layers_under_8_levels"] == 0
    assert dirac["centre_ratio_median"] > 3 and dirac["levels_left_median"] < 127 / 3
    assert dirac["sqnr_db_median"] < plain["sqnr_db_median"]
    assert dirac["checkpoint"] == "dirac_True.ckpt"  # no machine folder in the report

    anonymous = str(tmp_path / "anonymous.ckpt")
    ckpt_io.save(anonymous, ckpt_io.network_params(create_model("plain8", num_classes=10)))
    out2 = tmp_path / "report2.json"
    assert int8_weights.main(["--ckpt_files", anonymous, "--output", str(out2)]) == 2
    assert "records no network (arch)" in capsys.readouterr().err and not out2.exists()


def test_int8_settings_measure_a_folded_dirac_student_against_its_own_float_model(made_cifar10, tmp_path, capsys):
    """The float top-1 is the Dirac training network's own on the held-out images (folding and export lose
    nothing); every setting is reported against it; bad settings and missing checkpoints write nothing."""
    import json

    import int8_settings
    import mindspore as ms

    from resdist import checkpoint as ckpt_io
    from resdist.data import create_dataset
    from resdist.models import create_model
    from resdist.models.dirac import apply_dirac

    net = apply_dirac(create_model("plain8", num_classes=10))
    net.set_train(False)
    ckpt = str(tmp_path / "dirac.ckpt")
    ckpt_io.save(ckpt, ckpt_io.network_params(net), ckpt_io.network_identity("plain8", "full"))
    data, _ = create_dataset("cifar10", made_cifar10, "val", 64, val_split="data_batch_5")
    correct = sum(int((net(ms.Tensor(x)).asnumpy().argmax(1) == y).sum())
                  for x, y in data.take(2).create_tuple_iterator(output_numpy=True))
    out = tmp_path / "report.json"
    assert int8_settings.main(["--data_path", made_cifar10, "--ckpt_files", ckpt, "--settings",
                               "export,a8w16,float_first10", "--images", "128", "--check_images", "64",
                               "--calib_size", "64", "--calib_samples", "2", "--batch", "64",
                               "--output", str(out)]) == 0
    report = json.load(open(out))
    assert report["batch"] == 64 and report["calib_samples"] == 2
    (entry,) = report["networks"]
    assert entry["arch"] == "plain8" and entry["images"] == 128 and entry["checkpoint"] == "dirac.ckpt"
    assert entry["float_top1"] == round(100 * correct / 128, 2)
    assert list(entry["settings"]) == ["export", "a8w16", "float_first10"]
    assert entry["settings"]["float_first10"]["float_convolutions"] == 7  # all of plain8's: only fc is INT8
    for row in entry["settings"].values():
        assert row["top1_change"] == round(row["top1"] - entry["float_top1"], 2)
        assert row["passes_export_check"] == (row["check_agreement"] >= 95)
        first, second = row["samples"]  # the headline is the first sample's (export.py's own)
        assert {k: row[k] for k in first} == first
        assert row["top1_min"] == min(first["top1"], second["top1"]) <= row["top1"] <= row["top1_max"]
    table = (tmp_path / "report.md").read_text()
    assert "| network | float | export | a8w16 | float_first10 |" in table and "; 2 samples " in table

    samples, _ = int8_settings.calibration_samples(made_cifar10, [1, 3, 32, 32], 10, 64, 3)
    assert [len(s) for s in samples] == [64, 64, 64]  # disjoint: no image in two samples
    assert len({image.tobytes() for s in samples for image in s}) == 192

    out2 = tmp_path / "report2.json"
    assert int8_settings.main(["--data_path", made_cifar10, "--ckpt_files", str(tmp_path / "none.ckpt"),
                               "--output", str(out2)]) == 2
    assert "does not exist" in capsys.readouterr().err and not out2.exists()
    with pytest.raises(SystemExit) as exc:
        int8_settings.main(["--data_path", made_cifar10, "--ckpt_files", ckpt, "--settings", "export,int4",
                            "--output", str(out2)])
    assert exc.value.code == 2 and "unknown int4" in capsys.readouterr().err and not out2.exists()
    with pytest.raises(SystemExit) as exc:
        int8_settings.main(["--data_path", made_cifar10, "--ckpt_files", ckpt, "--calib_samples", "0",
                            "--output", str(out2)])
    assert exc.value.code == 2 and "--calib_samples" in capsys.readouterr().err and not out2.exists()


def _study(tmp_path, *args, **kwargs):
    import subprocess

    cmd = [sys.executable, os.path.join(ROOT, "bench", "cifar10_study.py"), "--output_dir", str(tmp_path / "runs"),
           "--results_dir", str(tmp_path / "results")] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.mark.parametrize("content", ["{not json", '{"row": "plain20_alone"}', "[1, 2]"])
def test_study_report_and_list_refuse_a_corrupt_row_result_in_one_line(tmp_path, content):
    results = tmp_path / "results"
    results.mkdir()
    (results / "plain20_alone.json").write_text(content)
    for flag in ("--report", "--list"):
        done = _study(tmp_path, flag)
        assert done.returncode == 2, done.stderr
        err = done.stderr.strip()
        assert err.startswith(f"error: row result {results}/plain20_alone.json ") and "\n" not in err
        assert "restore it (git checkout -- FILE) or delete it to train the row again" in err
    assert sorted(p.name for p in results.iterdir()) == ["plain20_alone.json"]  # no table or plot half-made


def test_study_snapshot_into_a_read_only_folder_is_one_error_and_keeps_the_old_one(tmp_path):
    """unfinished/ read-only: as root (who writes through permissions) a read-only bind mount of it, in a mount
    namespace of the runner's own; as a user, its permissions."""
    import shlex
    import shutil
    import subprocess

    _fake_run(tmp_path / "runs" / "plain20_alone", 2)
    unfinished = tmp_path / "results" / "unfinished"
    old = unfinished / "plain20_alone"
    old.mkdir(parents=True)
    (old / "last.ckpt").write_bytes(b"weights 1")
    cmd = [sys.executable, os.path.join(ROOT, "bench", "cifar10_study.py"), "--output_dir", str(tmp_path / "runs"),
           "--results_dir", str(tmp_path / "results"), "--snapshot", "--rows", "plain20_alone"]
    if os.geteuid() == 0:
        if not shutil.which("unshare"):
            pytest.skip("needs unshare (util-linux) to make a read-only folder for root")
        ro = shlex.quote(str(unfinished))
        cmd = ["unshare", "-m", "sh", "-c", f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} {ro} && "
               f"exec {shlex.join(cmd)}"]
    else:
        unfinished.chmod(0o555)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        unfinished.chmod(0o755)
    assert done.returncode == 2, done.stdout + done.stderr
    err = done.stderr.strip()
    assert err.startswith(f"error: cannot write the snapshot of plain20_alone to {old} (") and "\n" not in err
    assert "The previous snapshot, if any, is kept" in err
    assert sorted(p.name for p in unfinished.iterdir()) == ["plain20_alone"]
    assert sorted(p.name for p in old.iterdir()) == ["last.ckpt"] and (old / "last.ckpt").read_bytes() == b"weights 1"


@pytest.mark.slow
def test_sigterm_to_the_study_runner_stops_its_training_child(tmp_path):
    import signal
    import subprocess
    import time

    runs = tmp_path / "runs"
    cmd = [sys.executable, os.path.join(ROOT, "bench", "cifar10_study.py"), "--data_path", str(tmp_path),
           "--output_dir", str(runs), "--results_dir", str(tmp_path / "results"), "--rows", "plain20_alone"]
    for setting in ("dataset=synthetic", "data_path=", "val_split=auto", "synthetic_train_size=64",
                    "synthetic_val_size=32", "batch_size=32", "epochs=100000", "arch=plain8"):
        cmd += ["--set", setting]
    runner = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = runs / "plain20_alone" / ".train.lock"
    try:
        for _ in range(600):
            if lock.exists() and lock.read_text().strip():
                break
            time.sleep(0.5)
        child = int(lock.read_text().strip())
        os.kill(child, 0)  # training
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=120) == 128 + signal.SIGTERM
        time.sleep(1)
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
    finally:
        if runner.poll() is None:
            runner.kill()
