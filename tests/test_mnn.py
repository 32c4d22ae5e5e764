"""MNN, a mobile inference engine that installs here: export.py --file_format MNN (the ONNX export converted by
MNN's converter), the file loaded back by MNN's runtime, eval.py --mnn, bad files, and that MNN's telemetry-laden
wrapper scripts are never involved."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

import eval as eval_script
import export as export_script
from resdist import checkpoint as ckpt_io
from resdist.models import create_model

try:
    import MNN  # noqa: F401
except ImportError:
    pytest.skip("MNN is not installed: pip install -e '.[mnn]'", allow_module_level=True)

from test_export import _save, _trained_looking  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnn")
    ckpt = _save(_trained_looking("plain8"), folder / "best.ckpt", "plain8", plain_variant="full")
    assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", str(folder / "p8"),
                               "--file_format", "MNN", "--dataset", "cifar10"]) == 0
    return ckpt, str(folder / "p8.mnn"), folder


def test_an_mnn_export_runs_in_mnn_as_the_checkpoint_does(exported, capsys):
    from resdist.deploy.exported import load_exported

    ckpt, path, folder = exported
    assert sorted(os.listdir(folder)) == ["best.ckpt", "p8.mnn"]  # no ONNX or staging left beside it
    model = load_exported(path)
    assert (model.format, model.batch, model.input_shape, model.num_classes) == ("mnn", 1, [1, 3, 32, 32], 10)
    assert model.record == {"arch": "plain8", "plain_variant": "full", "num_classes": "10", "dataset": "cifar10",
                            "source_sha256": ckpt_io.file_sha256(ckpt)}
    import mindspore as ms

    net = create_model("plain8", num_classes=10)
    ckpt_io.load_network(net, ckpt_io.read(ckpt), arch="plain8")
    net.set_train(False)
    x = np.random.default_rng(5).standard_normal((3, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), net(ms.Tensor(x)).asnumpy(), rtol=1e-4, atol=1e-4)


def test_eval_of_an_mnn_file_gives_the_checkpoints_accuracy(exported, cifar10_dir, tmp_path):
    ckpt, path, _ = exported
    common = ["--arch", "plain8", "--dataset", "cifar10", "--data_path", cifar10_dir, "--val_split", "0.02",
              "--batch_size", "100"]
    results = {}
    for flag, source in (("--ckpt_file", ckpt), ("--mnn", path)):
        out = str(tmp_path / f"{flag.strip('-')}.json")
        assert eval_script.main(common + [flag, source, "--output_json", out]) == 0
        results[flag] = json.load(open(out))
    assert results["--mnn"]["num_samples"] == 1000 and results["--mnn"]["model_kind"] == "MNN (MNN runtime)"
    assert (results["--mnn"]["top1"], results["--mnn"]["top5"]) == \
        (results["--ckpt_file"]["top1"], results["--ckpt_file"]["top5"])


@pytest.mark.parametrize("case,message", [
    ("empty", "is empty"),
    ("truncated", "cannot be loaded"),
    ("onnx_named_mnn", "is ONNX, not MNN: pass --onnx"),
    ("another_network", "was exported from arch 'plain8', not 'plain20'"),
])
def test_eval_refuses_a_bad_mnn_file_in_one_line(exported, made_cifar10, tmp_path, capsys, case, message):
    _, path, _ = exported
    bad = tmp_path / "bad.mnn"
    arch = "plain8"
    if case == "empty":
        bad.write_bytes(b"")
    elif case == "truncated":
        bad.write_bytes(open(path, "rb").read()[:5000])
    elif case == "onnx_named_mnn":
        assert export_script.main(["--ckpt_file", exported[0], "--arch", "plain8", "--file_name",
                                   str(tmp_path / "p8"), "--file_format", "ONNX"]) == 0
        os.replace(tmp_path / "p8.onnx", bad)
    else:
        bad = path
        arch = "plain20"
    out = tmp_path / "never.json"
    assert eval_script.main(["--arch", arch, "--dataset", "cifar10", "--data_path", made_cifar10, "--mnn", str(bad),
                             "--output_json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not out.exists()


def test_without_mnn_the_export_is_refused_before_anything_is_written(exported, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "MNN", None)  # `import MNN` raises ImportError, as where it is absent
    assert export_script.main(["--ckpt_file", exported[0], "--arch", "plain8", "--file_name", str(tmp_path / "x"),
                               "--file_format", "MNN"]) == 2
    assert capsys.readouterr().err.strip() == ("error: a .mnn model needs MNN (Alibaba's mobile inference engine): "
                                               "pip install -e '.[mnn]'")
    assert os.listdir(tmp_path) == []


def test_a_conversion_installs_nothing_and_imports_no_telemetry(exported, tmp_path):
    """MNN's wrapper scripts (MNN/tools/*.py) import a logger that runs `pip install -U aliyun-log-python-sdk`
    with whatever pip is on PATH and posts the machine id: a conversion here must do neither. A `pip` first on
    PATH records any call; the converting process lists the modules it imported."""
    marker = tmp_path / "pip_was_called"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("pip", "pip3"):
        (fake_bin / name).write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\n")
        (fake_bin / name).chmod(0o755)
    code = ("import sys, json\n"
            "from resdist.deploy import mnn\n"
            f"mnn.convert_onnx({str(tmp_path / 'm.onnx')!r}, {str(tmp_path / 'm.mnn')!r}, "
            "{'resdist.arch': 'plain8'})\n"
            "print(json.dumps(sorted(m for m in sys.modules if 'aliyun' in m.lower() or m.startswith('MNN.tools'))))\n")
    assert export_script.main(["--ckpt_file", exported[0], "--arch", "plain8", "--file_name", str(tmp_path / "m"),
                               "--file_format", "ONNX"]) == 0
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert not marker.exists()
    from resdist.deploy.mnn import read_record

    assert read_record(str(tmp_path / "m.mnn")) == {"resdist.arch": "plain8"}


@pytest.mark.slow
def test_an_int8_mnn_export_is_checked_on_held_out_images_and_keeps_its_record(exported, made_jpegs, tmp_path,
                                                                             capsys):
    """MNN's own quantizer (its C extension, in a child process), calibrated on training images, accepted by its
    agreement with the float model on the validation images; eval.py --mnn reads the INT8 file as the float one."""
    ckpt, _, _ = exported
    out = tmp_path / "p8"
    argv = ["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", str(out), "--file_format", "MNN",
            "--dataset", "imagefolder", "--height", "32", "--quantize", "int8", "--calib_data", made_jpegs,
            "--calib_size", "64"]
    assert export_script.main(argv + ["--calib_method", "entropy"]) == 0
    printed = capsys.readouterr().out
    path = str(out) + ".int8.mnn"
    assert os.listdir(tmp_path) == ["p8.int8.mnn"]  # no float model, PNGs or config left
    assert "(INT8 MNN: MNN's own quantizer, entropy calibration on 64 images of the train split" in printed
    assert "compared with the float model on 64 images of the val/ folder (held out from calibration)" in printed
    from resdist.deploy.mnn import read_record

    assert read_record(path)["resdist.arch"] == "plain8"
    result = str(tmp_path / "eval.json")
    assert eval_script.main(["--arch", "plain8", "--dataset", "imagefolder", "--image_size", "32", "--data_path",
                             made_jpegs, "--mnn", path, "--output_json", result]) == 0
    assert json.load(open(result))["num_samples"] == 100
    assert export_script.main(argv + ["--calib_method", "percentile", "--file_name", str(tmp_path / "x")]) == 2
    assert "MNN's quantizer calibrates with entropy or minmax, not --calib_method percentile" in \
        capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["eval.json", "p8.int8.mnn"]
