"""The training loop as Ascend needs it: the host reads the device once a logging window (not every step), the
logging window changes no result, divergence inside a window is still caught, and the data-sink choice."""
import json
import math
import os
import re

import numpy as np
import pytest

import train as train_script
from resdist import checkpoint as ckpt_io
from resdist.config import Config
from resdist.errors import ConfigError
from resdist.train import trainer

STEPS = 10  # 320 synthetic images, batch 32
TINY = ["--arch", "resnet8", "--synthetic_train_size", "320", "--synthetic_val_size", "32", "--batch_size", "32",
        "--lr", "0.05", "--epochs", "2", "--keep_checkpoint_max", "0"]


def _run(tmp_path, name, log_interval, monkeypatch):
    reads = []
    real = trainer.read_back

    def counting(tensor):
        reads.append(1)
        return real(tensor)

    monkeypatch.setattr(trainer, "read_back", counting)
    out = str(tmp_path / name)
    assert train_script.main(TINY + ["--log_interval", str(log_interval), "--output_dir", out]) == 0
    epochs = json.load(open(os.path.join(out, "metrics.json")))["epochs"]
    state = ckpt_io.read(os.path.join(out, "last.ckpt"))
    weights = {k: v.asnumpy() for k, v in state.items() if not isinstance(v, str)}
    return epochs, weights, len(reads), open(os.path.join(out, "train.log")).read()


@pytest.mark.slow
def test_the_logging_window_changes_no_result_and_the_host_reads_once_a_window(tmp_path, monkeypatch):
    every_step, weights_1, reads_1, _ = _run(tmp_path, "log1", 1, monkeypatch)
    windowed, weights_4, reads_4, log = _run(tmp_path, "log4", 4, monkeypatch)
    assert reads_1 == 2 * STEPS
    assert reads_4 == 2 * math.ceil(STEPS / 4)  # steps 4, 8 and the epoch's last, in each of 2 epochs
    assert "epoch 1/2 step 4/10 loss" in log and "epoch 1/2 step 10/10 loss" in log
    assert "epoch 1/2 step 5/10" not in log
    # the same steps ran: identical weights; the epoch means are sums in another order (float32 on the device)
    assert weights_1.keys() == weights_4.keys()
    for name in weights_1:
        np.testing.assert_array_equal(weights_1[name], weights_4[name], err_msg=name)
    for a, b in zip(every_step, windowed):
        for key in ("train_loss", "train_ce", "train_acc", "val_top1"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key


def test_divergence_inside_a_window_is_caught_names_the_steps_and_saves_nothing(tmp_path, capsys):
    out = tmp_path / "diverged"
    assert train_script.main(TINY + ["--lr", "1e8", "--log_interval", "4", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    # a window's loss sum is read after its 4 steps: the error names that window (here whichever blew up first)
    assert re.match(r"error: training diverged at epoch 1 steps (1-4|5-8|9-10): the loss became (nan|-?inf)\. ",
                    err) and "\n" not in err, err
    assert not [f for f in os.listdir(out) if f.endswith(".ckpt")]


def test_data_sink_is_on_off_the_cpu_and_refused_on_it():
    def mode(value, target):
        return trainer.dataset_sink_mode(Config(dataset_sink_mode=value, device_target=target))

    assert (mode("auto", "CPU"), mode("auto", "Ascend"), mode("auto", "GPU")) == (False, True, True)
    assert (mode("false", "Ascend"), mode("true", "GPU")) == (False, True)
    with pytest.raises(ConfigError, match="dataset_sink_mode=true needs device_target Ascend or GPU"):
        mode("true", "CPU")


@pytest.mark.parametrize("steps,log_interval,expected", [(312, 50, 39), (10, 4, 2), (16, 4, 4), (13, 4, 1),
                                                         (3, 20, 3), (1, 1, 1)])
def test_sink_size_divides_the_epoch(steps, log_interval, expected):
    size = trainer.sink_size(steps, log_interval)
    assert size == expected and steps % size == 0 and size <= log_interval


def test_sink_mode_true_on_cpu_fails_before_writing(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_script.main(TINY + ["--dataset_sink_mode", "true", "--output_dir", str(out)]) == 2
    assert "dataset_sink_mode=true needs device_target Ascend or GPU" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_data_sink_is_built_once_a_run_from_the_runs_training_pipeline(tmp_path, monkeypatch):
    """Data sink cannot run on CPU: here ``ms.data_sink`` is stood in for by a host loop that does what the real
    one does (``sink_size`` steps of the given step function on the given data set, the data set looped without
    end), so that the loop around it can be checked by construction: one data_sink a run (each is compiled anew on
    a device) over the one training pipeline the run built, and the epochs' steps all taken."""
    import mindspore as ms

    sinks, train_pipelines = [], []
    real_build = trainer.build_dataset

    def build_dataset(cfg, split, *args, **kwargs):
        train_pipelines.extend([split] if split == "train" else [])
        return real_build(cfg, split, *args, **kwargs)

    def data_sink(fn, dataset, sink_size, jit_config=None):
        sinks.append(dataset)

        def forever():
            while True:
                yield from dataset.create_tuple_iterator(num_epochs=1)
        batches = forever()
        return lambda: [fn(*next(batches)) for _ in range(sink_size)][-1]

    monkeypatch.setattr(trainer, "dataset_sink_mode", lambda cfg: True)
    monkeypatch.setattr(trainer, "build_dataset", build_dataset)
    monkeypatch.setattr(ms, "data_sink", data_sink)
    out = tmp_path / "sink"
    assert train_script.main(TINY + ["--log_interval", "4", "--output_dir", str(out)]) == 0
    assert len(sinks) == 1 and train_pipelines == ["train"]
    log = (out / "train.log").read_text()
    assert "data sink: 2 steps per device call" in log
    assert "epoch 1/2 step 10/10 loss" in log and "epoch 2/2 step 10/10 loss" in log
    assert [e["epoch"] for e in json.load(open(out / "metrics.json"))["epochs"]] == [1, 2]
