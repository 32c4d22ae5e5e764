"""Quantization-aware fine-tuning: the simulated INT8 network against onnxruntime's INT8 model, the ordinary
checkpoint it is saved as, train.py --qat (and its refusals), and export.py's check of a QAT checkpoint."""
import json
import os

import mindspore as ms
import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_export import _trained_looking

import export as export_script
import train as train_script
from resdist import checkpoint as ckpt_io
from resdist.deploy.quantize import quantize_onnx
from resdist.models import create_model, qat
from resdist.models.fold import fold_batchnorm

TINY = ["--synthetic_train_size", "128", "--synthetic_val_size", "32", "--batch_size", "32", "--log_interval", "2",
        "--keep_checkpoint_max", "0", "--epochs", "1"]


def _images(n, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def test_fake_quantized_weights_sit_on_onnxruntimes_grid_and_pass_the_gradient_through():
    weight = ms.Tensor(np.random.default_rng(0).normal(0, 0.1, (4, 3, 3, 3)).astype(np.float32))
    quantized = qat.fake_quant_weight(weight).asnumpy()
    scale = np.abs(weight.asnumpy()).reshape(4, -1).max(1) / 127
    steps = quantized / scale.reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)  # integer multiples of the channel's scale
    assert np.abs(steps).max() == pytest.approx(127, abs=1e-3)
    assert np.abs(quantized - weight.asnumpy()).max() <= scale.max() / 2 + 1e-7
    grad = ms.grad(lambda w: (qat.fake_quant_weight(w) * 3).sum())(weight).asnumpy()
    np.testing.assert_allclose(grad, np.full(grad.shape, 3.0))  # straight through the rounding


def test_simulation_has_onnxruntimes_ranges_and_logits(tmp_path):
    """The simulated network measures the activation ranges onnxruntime's MinMax calibration finds (every
    QuantizeLinear's scale and zero point) and computes the INT8 file's logits."""
    net = _trained_looking("plain8")
    calib, probe = _images(64), _images(32, seed=2)
    simulated = qat.quantization_aware(net)
    ranges = qat.measure_ranges(simulated, calib, batch_size=16)
    assert len(ranges) == 7 + 3  # every convolution's input, the pooled features' input, the classifier's in and out
    folded = fold_batchnorm(net)
    float_path, int8_path = str(tmp_path / "m.onnx"), str(tmp_path / "m.int8.onnx")
    ms.export(folded, ms.Tensor(calib[:1]), file_name=str(tmp_path / "m"), file_format="ONNX")
    quantize_onnx(float_path, int8_path, calib)
    model = onnx.load(int8_path)
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    onnx_scales = [float(values[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"]
    ours = [(max(high, 0) - min(low, 0)) / 255 for low, high in ranges.values()]
    np.testing.assert_allclose(onnx_scales, ours, rtol=1e-5)

    import onnxruntime as ort

    session = ort.InferenceSession(int8_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    int8 = np.concatenate([session.run(None, {name: probe[i:i + 1]})[0] for i in range(len(probe))])
    simulated_logits = simulated(ms.Tensor(probe)).asnumpy()
    float_logits = folded(ms.Tensor(probe)).asnumpy()
    low, high = ranges["fc.output_quant"]
    step = (max(high, 0) - min(low, 0)) / 255  # one level of the quantized logits
    diff = np.abs(int8 - simulated_logits)
    # within one level of the quantized logits everywhere (rounding in onnxruntime's integer arithmetic and its
    # int32 bias move a few values across a level), much closer than the float network
    assert diff.max() < 1.01 * step and diff.mean() < 0.5 * np.abs(int8 - float_logits).mean()
    assert np.abs(int8 - float_logits).max() > 2 * step


def test_a_qat_network_is_saved_as_an_ordinary_checkpoint_that_folds_back_to_it():
    net = _trained_looking("plain8")
    simulated = qat.quantization_aware(net)
    state = qat.ordinary_state(simulated, net)
    assert set(state) == {name for name, _ in net.parameters_and_names()}  # no range, no bias outside BatchNorm
    reloaded = create_model("plain8", num_classes=10)
    ckpt_io.load_network(reloaded, state, arch="plain8")
    images = ms.Tensor(_images(4))
    np.testing.assert_allclose(fold_batchnorm(reloaded)(images).asnumpy(), fold_batchnorm(net)(images).asnumpy(),
                               rtol=1e-4, atol=1e-5)


def test_simulation_refuses_a_network_with_shortcuts():
    for arch, kwargs in (("resnet8", {}), ("plain18", {"stem": "cifar", "plain_variant": "keep_downsample"})):
        with pytest.raises(ValueError, match="shortcut"):
            qat.quantization_aware(create_model(arch, num_classes=10, **kwargs))


@pytest.fixture(scope="module")
def plain8_trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("qat_pretrained")
    assert train_script.main(TINY + ["--arch", "plain8", "--procedure", "plain", "--lr", "0.05", "--output_dir",
                                     str(root / "run")]) == 0
    return str(root / "run" / "final.ckpt")


def test_qat_fine_tunes_and_saves_a_checkpoint_export_checks_against_the_simulation(plain8_trained, made_cifar10,
                                                                                 tmp_path, capsys):
    out = tmp_path / "qat"
    assert train_script.main(TINY + ["--arch", "plain8", "--procedure", "plain", "--pretrained_ckpt", plain8_trained,
                                     "--qat", "true", "--calib_size", "64", "--lr", "0.001", "--weight_decay", "0",
                                     "--output_dir", str(out)]) == 0
    log = open(out / "train.log", encoding="utf-8").read()
    assert "qat: BatchNorm folded, INT8 simulated" in log and "on 64 images of the" in log
    before, after = ckpt_io.read(plain8_trained), ckpt_io.read(str(out / "final.ckpt"))
    assert after["quantization_aware"] == qat.RECORD
    assert after["pretrained_sha256"] == ckpt_io.file_sha256(plain8_trained)  # what it was fine-tuned from
    assert not any(name.endswith(".range") for name in after)  # the ordinary format: ranges stay in last.ckpt
    assert np.all(after["stages.0.0.bn1.gamma"].asnumpy() == 1.0)  # BatchNorm as identity plus bias
    changed = np.abs(after["stages.0.0.conv1.weight"].asnumpy() - before["stages.0.0.conv1.weight"].asnumpy())
    assert changed.max() > 0  # trained
    assert any(name.endswith(".input_quant.range") for name in ckpt_io.read(str(out / "last.ckpt")))
    # a QAT run resumes from its own training state (folded weights, ranges, momentum)
    assert train_script.main(TINY[:-2] + ["--epochs", "2", "--arch", "plain8", "--procedure", "plain",
                                          "--pretrained_ckpt", plain8_trained, "--qat", "true", "--calib_size", "64",
                                          "--lr", "0.001", "--weight_decay", "0", "--output_dir", str(out),
                                          "--resume", "auto"]) == 0
    assert [e["epoch"] for e in json.load(open(out / "metrics.json"))["epochs"]] == [1, 2]
    resumed = ckpt_io.read(str(out / "final.ckpt"))
    assert resumed["quantization_aware"] == qat.RECORD and resumed["pretrained_sha256"] == after["pretrained_sha256"]

    base = str(tmp_path / "q8")
    argv = ["--ckpt_file", str(out / "final.ckpt"), "--arch", "plain8", "--file_name", base, "--file_format",
            "ONNX", "--dataset", "cifar10", "--quantize", "int8", "--calib_data", made_cifar10, "--calib_size", "64"]
    capsys.readouterr()
    assert export_script.main(argv + ["--calib_method", "percentile"]) == 2  # not the scheme it was trained for
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "fine-tuned for onnxruntime's INT8" in err and err.count("\n") == 0
    assert not os.path.exists(base + ".int8.onnx")
    assert export_script.main(argv) == 0
    printed = capsys.readouterr().out
    assert "compared with the simulated INT8 (QAT) model" in printed and "simulated " in printed
    assert os.path.isfile(base + ".int8.onnx")


@pytest.mark.slow
def test_a_hub_card_ships_the_int8_file_of_a_qat_copy_and_says_so(made_cifar10, tmp_path):
    """make_hub_card.py --int8_ckpt: the float assets are the published checkpoint's, the INT8 file is exported
    from its QAT copy (the simulation's scales), and the card states how it was made and what it scores."""
    import re
    import subprocess
    import sys

    import onnx
    from conftest import ROOT

    import eval as eval_script

    qat_run = tmp_path / "qat"
    published = str(tmp_path / "published.ckpt")  # a card publishes CIFAR-10 models only
    ckpt_io.save(published, ckpt_io.network_params(_trained_looking("plain8")),
                 {**ckpt_io.network_identity("plain8", "full"), "procedure": "plain", "dataset": "cifar10"})
    # calibrated on export.py's 512 images, as make_hub_card exports it
    assert train_script.main(["--dataset", "cifar10", "--data_path", made_cifar10, "--val_split", "data_batch_5",
                              "--batch_size", "32", "--max_steps_per_epoch", "4", "--epochs", "1", "--log_interval",
                              "2", "--keep_checkpoint_max", "0", "--arch", "plain8", "--procedure", "plain",
                              "--pretrained_ckpt", published, "--qat", "true", "--lr", "0.001", "--weight_decay",
                              "0", "--output_dir", str(qat_run)]) == 0
    common = ["--arch", "plain8", "--dataset", "cifar10", "--data_path", made_cifar10, "--val_split", "data_batch_5"]
    assert eval_script.main(common + ["--ckpt_file", published, "--output_json", str(tmp_path / "e.json")]) == 0
    hub = tmp_path / "hub"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")])}
    made = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_hub_card.py"), "--ckpt_file",
                           published, "--arch", "plain8", "--model_name", "p8q", "--eval_json",
                           str(tmp_path / "e.json"), "--trained_with", "python train.py ...", "--data_path",
                           made_cifar10, "--repo_link", "https://github.com/resdist/resdist", "--hub_dir", str(hub),
                           "--int8_ckpt", str(qat_run / "final.ckpt"), "--int8_trained_with",
                           "python train.py --qat true --pretrained_ckpt CKPT"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert made.returncode == 0, made.stderr[-3000:]
    assert open(hub / "assets" / "p8q.ckpt", "rb").read() == open(published, "rb").read()
    body = open(hub / "mshub_res" / "assets" / "resdist" / "1.0" / "p8q.md", encoding="utf-8").read()
    assert "(quantization-aware fine-tuning, then onnxruntime's quantizer: QDQ" in body
    assert "\n    python train.py --qat true --pretrained_ckpt CKPT\n" in body

    out = str(tmp_path / "int8.json")
    assert eval_script.main(common + ["--onnx", str(hub / "assets" / "p8q.int8.onnx"), "--output_json", out]) == 0
    stated = float(re.search(r"`p8q\.int8\.onnx` .*? scores\s+([0-9.]+)%\s+top-1", body, re.S).group(1))
    assert stated == round(json.load(open(out))["top1"], 2)
    # the INT8 file is the QAT copy's: its logits' range is the one the QAT run measured on its final weights
    graph = onnx.load(str(hub / "assets" / "p8q.int8.onnx")).graph
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    logits = [n for n in graph.node if n.op_type == "QuantizeLinear"][-1]
    low, high = (float(v) for v in ckpt_io.read(str(qat_run / "last.ckpt"))["fc.output_quant.range"].asnumpy())
    np.testing.assert_allclose(float(scales[logits.input[1]]), (max(high, 0) - min(low, 0)) / 255, rtol=1e-5)


@pytest.mark.parametrize("extra,message", [
    ([], "qat=true fine-tunes a trained network for INT8"),
    (["--pretrained_ckpt", "X", "--dirac", "true"], "leave out --dirac"),
    (["--pretrained_ckpt", "X", "--procedure", "rd"], "qat=true trains with procedure plain"),
    (["--pretrained_ckpt", "X", "--arch", "resnet8", "--procedure", "kd"], "has shortcut additions"),
    (["--pretrained_ckpt", "X", "--plain_variant", "keep_downsample"], "has shortcut additions"),
    (["--pretrained_ckpt", "X", "--freeze_stages", "1"], "leave out --freeze_stages"),
])
def test_qat_refuses_what_it_cannot_simulate(extra, message, tmp_path, capsys):
    argv = TINY + ["--arch", "plain8", "--procedure", "plain", "--qat", "true", "--output_dir",
                   str(tmp_path / "run")]
    assert train_script.main(argv + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and err.count("\n") == 0
    assert not os.path.exists(tmp_path / "run")
