"""Distributed training through scripts/run_distribute_train.sh and msrun: real processes (2 CPU workers), tiny
networks, synthetic data."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT

from resdist import checkpoint as ckpt_io
from resdist.models import create_model

SCRIPT = os.path.join(ROOT, "scripts", "run_distribute_train.sh")


def _free_port():
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _launch(*args, timeout=600):
    return subprocess.run(["bash", SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    path = folder / "tiny.yaml"
    path.write_text("arch: plain8\nprocedure: rd\nsynthetic_train_size: 128\nsynthetic_val_size: 32\n"
                    "batch_size: 16\nepochs: 2\nlog_interval: 2\nkeep_checkpoint_max: 1\n")
    teacher = str(folder / "teacher.ckpt")
    ckpt_io.save(teacher, ckpt_io.network_params(create_model("resnet8", num_classes=10)),
                 ckpt_io.network_identity("resnet8"))
    return str(path), teacher


# --- argument checking (no process is started) -------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    ([], "CONFIG, DATA_PATH and OUTPUT_DIR are required"),
    (["--worker_num", "0", "RECIPE", "none", "OUT"], "--worker_num must be a positive integer, not '0'"),
    (["--worker_num", "two", "RECIPE", "none", "OUT"], "--worker_num must be a positive integer, not 'two'"),
    (["--worker_num", "2", "--local_worker_num", "3", "RECIPE", "none", "OUT"], "exceeds --worker_num 2"),
    (["/nonexistent.yaml", "none", "OUT"], "config /nonexistent.yaml does not exist"),
    (["RECIPE", "/nonexistent/data", "OUT"], "data path /nonexistent/data is not a directory"),
    (["--rank_table_file", "/nonexistent.json", "RECIPE", "none", "OUT"],
     "rank table /nonexistent.json does not exist"),
    (["--rank_table_file", "BADJSON", "RECIPE", "none", "OUT"], "is not a valid HCCL rank table"),
    (["--bogus", "1", "RECIPE", "none", "OUT"], "unknown launcher option --bogus"),
    (["RECIPE", "none", "OUT", "stray"], "unexpected argument 'stray'"),
    (["--master_port", "80", "RECIPE", "none", "OUT"], "--master_port must be in 1024..65535"),
    # train.py's options are checked once, before msrun starts any worker
    (["RECIPE", "none", "OUT", "--worker_num", "2"], "error: unknown argument '--worker_num'"),
    (["RECIPE", "none", "OUT", "--lr", "0"], "error: lr=0.0 (from command line) must be > 0"),
    (["RECIPE", "none", "OUT", "--arch", "resnet21"], "error: unknown arch 'resnet21'"),
    (["--rank_table_file", "BADJSON", "RECIPE", "none", "OUT", "--epochs", "x"], "epochs: 'x' is not an integer"),
])
def test_launcher_argument_errors(recipe, tmp_path, args, message):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    args = [recipe[0] if a == "RECIPE" else str(bad_json) if a == "BADJSON" else str(tmp_path / "out") if a == "OUT"
            else a for a in args]
    result = _launch(*args)
    assert result.returncode == 2 and message in result.stderr
    assert "msrun" not in result.stdout and not (tmp_path / "out").exists()


def test_a_port_in_use_is_refused(recipe, tmp_path):
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        result = _launch("--worker_num", "2", "--master_port", busy.getsockname()[1], recipe[0], "none",
                         tmp_path / "out")
    assert result.returncode == 2 and "is already in use on this node" in result.stderr


def test_rank_table_dry_run_prints_one_command_per_device(recipe, tmp_path):
    table = {"version": "1.0", "server_count": "1", "status": "completed", "server_list": [
        {"server_id": "10.0.0.1", "device": [{"device_id": str(d), "device_ip": f"192.98.92.{d}", "rank_id": str(d)}
                                            for d in range(4)]}]}
    path = tmp_path / "rank_table_4p.json"
    path.write_text(json.dumps(table))
    out = tmp_path / "out"
    result = _launch("--rank_table_file", path, "--dry_run", recipe[0], "none", out, "--epochs", "90")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4
    for d, line in enumerate(lines):
        assert line.startswith(f"cd {out}/rank_{d} && env RANK_TABLE_FILE={path} RANK_SIZE=4 RANK_ID={d} "
                               f"DEVICE_ID={d} python {ROOT}/train.py --config {recipe[0]} --output_dir {out} "
                               f"--distribute true --epochs 90 --device_target Ascend")
    assert not out.exists()


def test_msrun_dry_run_command(recipe, tmp_path):
    result = _launch("--worker_num", "16", "--local_worker_num", "8", "--master_addr", "10.0.0.1", "--node_rank",
                     "1", "--master_port", "8118", "--dry_run", recipe[0], "none", tmp_path / "out", "--lr", "0.4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(
        f"msrun --worker_num=16 --local_worker_num=8 --master_addr=10.0.0.1 --master_port=8118 --node_rank=1 "
        f"--log_dir={tmp_path}/out/msrun_log --join=True --cluster_time_out=600 {ROOT}/train.py --config "
        f"{recipe[0]} --output_dir {tmp_path}/out --distribute true --lr 0.4 --cpu_threads ")


# --- real runs -----------------------------------------------------------------------------------------------------

def _checksums(path):
    return re.findall(r"epoch (\d+): weights checksum (\S+)", open(path).read())


@pytest.mark.slow
def test_rd_on_two_workers_then_resume(recipe, tmp_path):
    config, teacher = recipe
    out = tmp_path / "run"
    result = _launch("--worker_num", "2", "--master_port", _free_port(), "--cluster_time_out", "120", config, "none",
                     out, "--teacher_ckpt", teacher)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0, rank1 = out / "train.log", out / "train_rank1.log"
    sums0, sums1 = _checksums(rank0), _checksums(rank1)
    assert len(sums0) == 2 and sums0 == sums1  # the same student weights on both ranks after every epoch
    shards = [re.search(r"(\d+) images \(train\) per rank x 2 ranks \(rank (\d): images (\d), (\d)", open(p).read())
              .groups() for p in (rank0, rank1)]
    assert [s[1:] for s in shards] == [("0", "0", "2"), ("1", "1", "3")]  # disjoint: even and odd images
    assert sum(int(s[0]) for s in shards) == 128  # together: the whole training set
    assert "val top-1" in rank0.read_text() and "val top-1" not in rank1.read_text()  # validated once, by rank 0
    assert sorted(f for f in os.listdir(out) if f.endswith(".ckpt")) == ["best.ckpt", "epoch_0002.ckpt", "final.ckpt",
                                                                         "last.ckpt"]
    assert not [f for f in os.listdir(out) if f.startswith("rank_")]
    # every rank resumes from the same last.ckpt
    result = _launch("--worker_num", "2", "--master_port", _free_port(), "--cluster_time_out", "120", config, "none",
                     out, "--teacher_ckpt", teacher, "--resume", "auto", "--epochs", "3")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [e["epoch"] for e in json.load(open(out / "metrics.json"))["epochs"]] == [1, 2, 3]
    assert _checksums(rank0)[-1] == _checksums(rank1)[-1] and _checksums(rank0)[-1][0] == "3"


@pytest.mark.slow
def test_two_workers_equal_one_process_on_the_global_batch(tmp_path):
    """Without BatchNorm, averaging the gradients of two half batches is one gradient of the whole batch."""
    worker = os.path.join(ROOT, "tests", "dist_equivalence_worker.py")
    cmd = ["msrun", "--worker_num=2", "--local_worker_num=2", f"--master_port={_free_port()}",
           f"--log_dir={tmp_path / 'log'}", "--join=True", "--cluster_time_out=120", worker, str(tmp_path),
           "distributed"]
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path).returncode == 0
    single = subprocess.run([sys.executable, worker, str(tmp_path), "single"], capture_output=True, text=True,
                            timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    r0, r1, one = (np.load(tmp_path / f) for f in ("weights_rank0_of2.npz", "weights_rank1_of2.npz",
                                                   "weights_rank0_of1.npz"))
    for name in one.files:
        np.testing.assert_array_equal(r0[name], r1[name])
        np.testing.assert_allclose(r0[name], one[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_a_killed_worker_ends_the_job(recipe, tmp_path):
    """msrun kills the other workers at once and the scheduler gives up on the lost one after its heartbeat
    time-out (about 30 s here, whatever --cluster_time_out: that one only bounds the wait for workers to join, so the
    default 600 s is kept, giving a loaded machine time to start both workers)."""
    long = tmp_path / "long.yaml"
    long.write_text("arch: resnet8\nprocedure: teacher\nsynthetic_train_size: 256\nsynthetic_val_size: 32\n"
                    "batch_size: 16\nepochs: 200\nlog_interval: 1\n")
    out = tmp_path / "run"
    job = subprocess.Popen(["bash", SCRIPT, "--worker_num", "2", "--master_port", str(_free_port()),
                            str(long), "none", str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and "step 2/" not in (
                (out / "train_rank1.log").read_text() if (out / "train_rank1.log").exists() else ""):
            time.sleep(1)
        victim = [pid for pid in subprocess.run(["pgrep", "-f", f"train.py --config {long}"], capture_output=True,
                                                text=True).stdout.split()
                  if "RANK_ID=1" in open(f"/proc/{pid}/environ").read().split("\0")
                  and "MS_ROLE=MS_WORKER" in open(f"/proc/{pid}/environ").read().split("\0")]
        assert len(victim) == 1
        killed = time.time()
        os.kill(int(victim[0]), signal.SIGKILL)
        _, err = job.communicate(timeout=120)
        assert job.returncode != 0 and "the distributed job failed" in err
        assert time.time() - killed < 90  # ~30 s of heartbeat time-out, and margin for a loaded machine
        assert not [f for f in os.listdir(out) if ".partial" in f]
    finally:
        if job.poll() is None:
            job.kill()
        subprocess.run(["pkill", "-9", "-f", f"train.py --config {long}"])


@pytest.mark.slow
def test_a_worker_that_never_joins_ends_the_job_after_the_cluster_time_out(tmp_path):
    """--cluster_time_out is how long the scheduler and the workers wait for the whole job to join: here this node
    starts 1 of 2 workers, so the job must wait that long, then fail with nothing written but msrun's logs."""
    config = tmp_path / "one.yaml"
    config.write_text("arch: resnet8\nprocedure: teacher\nsynthetic_train_size: 64\nsynthetic_val_size: 32\n"
                      "batch_size: 16\nepochs: 1\n")
    out = tmp_path / "run"
    start = time.time()
    result = _launch("--worker_num", "2", "--local_worker_num", "1", "--master_port", _free_port(),
                     "--cluster_time_out", "10", config, "none", out)
    waited = time.time() - start
    assert result.returncode == 1 and "the distributed job failed (msrun exit 1)" in result.stderr
    assert 10 <= waited < 10 + 90, waited
    assert os.listdir(out) == ["msrun_log"]
