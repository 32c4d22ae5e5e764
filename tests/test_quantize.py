"""INT8: the quantized ONNX export (onnxruntime's post-training quantization), its check against the float model,
eval.py on it, MindSpore Lite's full-quantization files, the calibration split, and bad input."""
import json
import os
import re

import numpy as np
import onnx
import pytest
from conftest import write_image_folder
from test_export import _refused, _save, _trained_looking

import eval as eval_script
import export as export_script
from resdist.data import calibration_images, create_dataset
from resdist.deploy.exported import graph_ops
from resdist.models import create_model


@pytest.fixture(scope="module")
def plain8_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    return _save(_trained_looking("plain8"), folder / "best.ckpt", "plain8", plain_variant="full")


def _int8_argv(ckpt, out, calib, *extra):
    return ["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", str(out), "--file_format", "ONNX",
            "--dataset", "imagefolder", "--height", "32", "--quantize", "int8", "--calib_data", calib,
            "--calib_size", "120", *extra]


def _zero_point_types(path):
    model = onnx.load(path)
    zero_points = {n.input[2] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    return {onnx.helper.tensor_dtype_to_np_dtype(t.data_type) for t in model.graph.initializer
            if t.name in zero_points}


def conv_weight_types(path):
    """The stored type of each convolution's weights in an INT8 (QDQ) file, in graph order."""
    graph = onnx.load(path).graph
    types = {t.name: t.data_type for t in graph.initializer}
    dequantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return [types[dequantized[n.input[1]]] for n in graph.node if n.op_type == "Conv"]


def test_int8_export_is_quantized_per_channel_checked_and_read_by_eval(plain8_ckpt, made_jpegs, tmp_path, capsys):
    out = tmp_path / "p8"
    assert export_script.main(_int8_argv(plain8_ckpt, out, made_jpegs)) == 0
    printed = capsys.readouterr().out
    path = str(out) + ".int8.onnx"
    assert os.listdir(tmp_path) == ["p8.int8.onnx"]  # no float intermediate, no staging folder left
    assert f"to {path}" in printed and "on 120 images of the train split" in printed
    # checked on held-out images (val/), not on the calibration images (train/) whose ranges it was fitted to
    assert "compared with the float model on 100 images of the val/ folder (held out from calibration)" in printed
    agreement = float(printed.split("top-1 agreement ")[1].split("%")[0])
    assert 95.0 <= agreement <= 100.0
    float_top1, int8_top1 = (float(x) for x in re.search(r"top-1 float ([0-9.]+)% / INT8 ([0-9.]+)%", printed).groups())
    assert "on the calibration images themselves: agreement " in printed
    model = onnx.load(path)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [13]
    ops = graph_ops(path)
    assert ops.count("Conv") == 1 + 6 and ops.count("QuantizeLinear") > 0 and "Add" not in ops
    # per-channel weights: the convolution weights' DequantizeLinear carries an axis and one scale per channel
    initializers = {t.name: t for t in model.graph.initializer}
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initializers
                 and len(initializers[n.input[0]].dims) == 4]
    assert len(weight_dq) == 1 + 6
    assert all(initializers[n.input[1]].dims[0] == initializers[n.input[0]].dims[0] for n in weight_dq)
    assert _zero_point_types(path) == {np.dtype(np.uint8)}
    # uint8 weights in the first convolution (onnxruntime's x86 int8 kernels saturate on the image without VNNI)
    assert conv_weight_types(path) == [onnx.TensorProto.UINT8] + [onnx.TensorProto.INT8] * 6
    assert "per-channel int8 weights (uint8 in the first convolution)" in printed
    # a quarter of the float32 weights, plus per-channel scales, zero points and the graph
    float_bytes = 4 * sum(p.size for p in create_model("plain8", num_classes=10).trainable_params())
    assert os.path.getsize(path) < 0.35 * float_bytes

    results = {}
    for flag, model_file in (("--ckpt_file", plain8_ckpt), ("--onnx", path)):
        result_json = str(tmp_path / f"{flag.strip('-')}.json")
        assert eval_script.main(["--arch", "plain8", "--dataset", "imagefolder", "--image_size", "32",
                                 "--data_path", made_jpegs, flag, model_file, "--output_json", result_json]) == 0
        results[flag] = json.load(open(result_json))
    assert results["--onnx"]["num_samples"] == results["--ckpt_file"]["num_samples"] == 100
    assert abs(results["--onnx"]["top1"] - results["--ckpt_file"]["top1"]) <= 5.0
    # the export's own check ran on those same 100 val/ images: its top-1 figures are eval.py's
    assert (float_top1, int8_top1) == (round(results["--ckpt_file"]["top1"], 2), round(results["--onnx"]["top1"], 2))


def test_int8_from_a_float_onnx_file_with_int8_activations_and_already_quantized_refused(plain8_ckpt, made_jpegs,
                                                                                          tmp_path, capsys):
    float_base = tmp_path / "p8"
    assert export_script.main(["--ckpt_file", plain8_ckpt, "--arch", "plain8", "--file_name", str(float_base),
                               "--file_format", "ONNX"]) == 0
    argv = ["--onnx_file", str(float_base) + ".onnx", "--file_format", "ONNX", "--dataset", "imagefolder",
            "--quantize", "int8", "--calib_data", made_jpegs, "--calib_size", "64", "--quant_activations", "int8",
            "--calib_method", "percentile", "--first_conv_weights", "int8"]
    assert export_script.main(argv) == 0
    path = str(float_base) + ".int8.onnx"  # the default name: beside the float file
    assert _zero_point_types(path) == {np.dtype(np.int8)}
    assert conv_weight_types(path) == [onnx.TensorProto.INT8] * 7
    assert "(int8 in the first convolution), int8 activations, percentile calibration on 64 images" in \
        capsys.readouterr().out
    _refused(["--onnx_file", path] + argv[2:] + ["--file_name", str(tmp_path / "again")], tmp_path, capsys,
             "is already quantized (it has DequantizeLinear, QuantizeLinear nodes)")


@pytest.mark.parametrize("first_conv_weights,hint", [
    ("uint8", "Try --calib_method percentile (a Dirac-parametrised student needs it"),
    ("int8", "On an x86 CPU without VNNI pass --first_conv_weights uint8"),
])
def test_an_int8_model_that_fails_its_check_is_not_written(plain8_ckpt, made_jpegs, tmp_path, capsys, monkeypatch,
                                                          first_conv_weights, hint):
    import resdist.deploy.quantize

    monkeypatch.setattr(resdist.deploy.quantize, "MIN_TOP1_AGREEMENT", 1.01)  # no model can pass: the refusal path
    assert export_script.main(_int8_argv(plain8_ckpt, tmp_path / "p8", made_jpegs, "--first_conv_weights",
                                         first_conv_weights)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the INT8 model's top-1 class agrees with the float model's on only" in err
    assert "nothing was written" in err and hint in err
    assert os.listdir(tmp_path) == []  # no INT8 file, no float intermediate, no staging folder


def test_int8_export_refuses_bad_calibration_data_and_models(plain8_ckpt, made_jpegs, made_cifar10, tmp_path,
                                                             capsys):
    out = tmp_path / "out" / "p8"
    out.parent.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    five_classes = write_image_folder(str(tmp_path / "five"), classes=5, train_per_class=4, val_per_class=1)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    cases = [
        (_int8_argv(plain8_ckpt, out, str(tmp_path / "none")), f"(--calib_data {tmp_path}/none): image folder"),
        (_int8_argv(plain8_ckpt, out, str(empty)), f"{empty}/train is not a directory"),
        (_int8_argv(plain8_ckpt, out, made_jpegs, "--calib_size", "600"),
         "calib_size=600 but the training split has only 500 images"),
        (_int8_argv(plain8_ckpt, out, five_classes), "has 5 classes but the model has 10"),
        ([a for a in _int8_argv(plain8_ckpt, out, "") if a not in ("--calib_data", "")],
         "--quantize int8 needs calibration images"),
        (_int8_argv(plain8_ckpt, out, made_jpegs, "--file_format", "MINDIR"),
         "writes an INT8 ONNX or MNN model: pass --file_format ONNX or MNN"),
        (_int8_argv(plain8_ckpt, out, made_jpegs, "--onnx_file", str(garbage)), "takes exactly one model"),
        (["--onnx_file", str(garbage), "--file_format", "ONNX", "--dataset", "imagefolder", "--quantize", "int8",
          "--calib_data", made_jpegs, "--file_name", str(out)], "is not a readable ONNX file"),
        # CIFAR images are 32x32: a model exported for 64x64 inputs cannot be calibrated with them
        (["--ckpt_file", plain8_ckpt, "--arch", "plain8", "--file_name", str(out), "--file_format", "ONNX",
          "--dataset", "cifar10", "--height", "64", "--quantize", "int8", "--calib_data", made_cifar10],
         "the model takes 64x64 images but cifar10 images are 32x32"),
    ]
    for argv, message in cases:
        _refused(argv, out.parent, capsys, message)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no staging folder left anywhere
    assert export_script.main(_int8_argv(plain8_ckpt, out, made_jpegs)) == 0
    first = open(str(out) + ".int8.onnx", "rb").read()
    _refused(_int8_argv(plain8_ckpt, out, made_jpegs), out.parent, capsys, "exists; pass --overwrite")
    assert open(str(out) + ".int8.onnx", "rb").read() == first


def test_calibration_images_come_from_the_training_split_with_the_evaluation_transform(made_cifar10):
    images, split = calibration_images("cifar10", made_cifar10, [1, 3, 32, 32], 10, 40)
    assert images.shape == (40, 3, 32, 32) and split == "40 images of the train minus held-out data_batch_5 split"
    again, _ = calibration_images("cifar10", made_cifar10, [1, 3, 32, 32], 10, 40)
    assert np.array_equal(images, again)  # the same images, no augmentation
    val, _ = create_dataset("cifar10", made_cifar10, "val", 1000, val_split="data_batch_5")
    held_out = np.concatenate([b[0] for b in val.create_tuple_iterator(num_epochs=1, output_numpy=True)])
    flat = {row.tobytes() for row in held_out.reshape(len(held_out), -1)}
    assert not any(row.tobytes() in flat for row in images.reshape(len(images), -1))


# --- MindSpore Lite full quantization (converter_lite does not install here: --dry_run) ---------------------------

def test_lite_full_quant_writes_calibration_files_and_config(made_jpegs, tmp_path):
    from test_scripts import _bash

    ckpt = _save(_trained_looking("plain8"), tmp_path / "best.ckpt", "plain8", plain_variant="full")
    assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", str(tmp_path / "p8"),
                               "--file_format", "MINDIR"]) == 0
    model = tmp_path / "p8.mindir"
    result = _bash("run_convert_lite.sh", model, tmp_path / "lite", "--quant", "int8", "--calib_dir", made_jpegs,
                   "--calib_size", "30", "--calib_method", "entropy", "--dry_run")
    assert result.returncode == 0, result.stderr[-2000:]
    config = tmp_path / "lite.full_quant.cfg"
    assert result.stdout.strip() == (f"converter_lite --fmk=MINDIR --modelFile={model} --outputFile={tmp_path}/lite "
                                     f"--optimize=general --configFile={config}")
    text = config.read_text()
    for line in ("[common_quant_param]", "quant_type=FULL_QUANT", "bit_num=8", "[data_preprocess_param]",
                 f"calibrate_path=x:{tmp_path}/lite.calibration", "calibrate_size=30", "input_type=BIN",
                 "[full_quant_param]", "activation_quant_method=KL", "per_channel=true"):
        assert line in text.splitlines()
    files = sorted(os.listdir(tmp_path / "lite.calibration"))
    assert files == [f"{i:05d}.bin" for i in range(30)]
    images, _ = calibration_images("imagefolder", made_jpegs, [1, 3, 32, 32], 10, 30)
    first = np.fromfile(tmp_path / "lite.calibration" / "00000.bin", np.float32)
    assert np.array_equal(first, images[0].transpose(1, 2, 0).ravel())  # NHWC buffer of the first image
    from resdist.deploy.quantize import main as quantize_main  # NCHW files, as Ascend's AMCT reads them

    assert quantize_main(["--mindir", str(model), "--calib_dir", made_jpegs, "--output", str(tmp_path / "amct"),
                          "--calib_size", "30", "--layout", "nchw"]) == 0
    first = np.fromfile(tmp_path / "amct.calibration" / "00000.bin", np.float32)
    assert np.array_equal(first, images[0].ravel())
    # a second run replaces its own calibration folder; one that holds anything else is refused, left whole
    again = _bash("run_convert_lite.sh", model, tmp_path / "lite", "--quant", "int8", "--calib_dir", made_jpegs,
                  "--calib_size", "20", "--dry_run")
    assert again.returncode == 0 and len(os.listdir(tmp_path / "lite.calibration")) == 20
    (tmp_path / "lite.calibration" / "my_notes.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in (tmp_path / "lite.calibration").iterdir()}
    refused = _bash("run_convert_lite.sh", model, tmp_path / "lite", "--quant", "int8", "--calib_dir", made_jpegs,
                    "--calib_size", "30", "--dry_run")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"error: {tmp_path}/lite.calibration exists and holds what this script did not "
                                      f"write (my_notes.txt); it would be replaced: move it, or choose another "
                                      f"output name")
    assert {p.name: p.read_bytes() for p in (tmp_path / "lite.calibration").iterdir()} == before


def test_lite_full_quant_refusals_leave_nothing(made_jpegs, tmp_path):
    from test_scripts import _bash

    model = tmp_path / "m.mindir"
    model.write_bytes(b"x")
    before = sorted(os.listdir(tmp_path))
    no_dir = _bash("run_convert_lite.sh", model, "--quant", "int8", "--dry_run")
    assert no_dir.returncode == 2 and "--quant int8 needs --calib_dir DIR" in no_dir.stderr
    stray = _bash("run_convert_lite.sh", model, "--calib_dir", made_jpegs, "--dry_run")
    assert stray.returncode == 2 and "go with --quant int8" in stray.stderr
    missing = _bash("run_convert_lite.sh", model, "--quant", "int8", "--calib_dir", tmp_path / "none", "--dry_run")
    assert missing.returncode == 2 and "calibration data folder" in missing.stderr
    corrupt = _bash("run_convert_lite.sh", model, "--quant", "int8", "--calib_dir", made_jpegs, "--dry_run")
    assert corrupt.returncode == 2 and "is not a readable MindIR file" in corrupt.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_calibration_batches_fill_the_models_fixed_batch():
    from resdist.deploy.quantize import _Batches

    images = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)
    reader = _Batches(images, 8, "x")  # fewer images than one batch: repeated to fill it
    first = reader.get_next()["x"]
    assert first.shape == (8, 2) and np.array_equal(first[3:6], images) and reader.get_next() is None
    reader = _Batches(np.arange(10, dtype=np.float32).reshape(5, 2), 2, "x")
    batches = [b["x"] for b in iter(reader.get_next, None)]
    assert [len(b) for b in batches] == [2, 2, 2] and np.array_equal(batches[2][1], [0, 1])


def test_the_first_convolution_is_the_one_reading_the_input():
    """Its weights are the ones given uint8 (first_conv_weights); a graph whose input reaches a convolution only
    through another op has none, and then nothing is overridden."""
    from onnx import TensorProto, helper

    from resdist.deploy.quantize import first_conv_weight

    def graph(nodes):
        weights = [helper.make_tensor(name, TensorProto.FLOAT, [4, 3, 3, 3], [0.0] * 108) for name in ("w1", "w2")]
        return helper.make_model(helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], weights))

    direct = graph([helper.make_node("Conv", ["x", "w1"], ["h"]), helper.make_node("Conv", ["h", "w2"], ["y"])])
    assert first_conv_weight(direct) == "w1"
    through = graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Conv", ["r", "w2"], ["y"])])
    assert first_conv_weight(through) is None


def test_entropy_calibration_chooses_its_own_ranges_not_minmax_ones(plain8_ckpt, tmp_path):
    """onnxruntime's entropy calibrator, as quantize_static calls it, searches a single candidate range (MinMax's):
    ours gives it enough bins, so some activation range is clipped below its maximum and none widened."""
    from onnx import numpy_helper

    from resdist.deploy.quantize import quantize_onnx

    base = tmp_path / "p8"
    assert export_script.main(["--ckpt_file", plain8_ckpt, "--arch", "plain8", "--file_name", str(base),
                               "--file_format", "ONNX"]) == 0
    images = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    scales = {}
    for method in ("minmax", "entropy"):
        path = str(tmp_path / f"{method}.onnx")
        quantize_onnx(str(base) + ".onnx", path, images, method=method)
        graph = onnx.load(path).graph
        activation_scales = {n.input[1] for n in graph.node if n.op_type == "QuantizeLinear"}
        scales[method] = {t.name: float(numpy_helper.to_array(t)) for t in graph.initializer
                          if t.name in activation_scales}
    assert scales["entropy"].keys() == scales["minmax"].keys() and len(scales["minmax"]) > 5
    ratios = [scales["entropy"][k] / scales["minmax"][k] for k in scales["minmax"]]
    assert max(ratios) <= 1 + 1e-6 and min(ratios) < 0.9
    assert sorted(os.listdir(tmp_path)) == ["entropy.onnx", "minmax.onnx", "p8.onnx"]  # no ranges file left
