"""Export: BatchNorm folding, MindIR and ONNX files loaded back by MindSpore and onnxruntime, the deployed graph's
operators, eval.py on exported files, and bad input."""
import json
import os
import tempfile

import mindspore as ms
import numpy as np
import pytest

import eval as eval_script
import export as export_script
from resdist import checkpoint as ckpt_io
from resdist.deploy.exported import graph_ops, load_exported
from resdist.models import create_model
from resdist.models.fold import fold_batchnorm


def _trained_looking(arch, seed=0, **kwargs):
    """A network whose BatchNorms are not the identity (so folding has something to fold)."""
    rng = np.random.default_rng(seed)
    ms.set_seed(seed)
    net = create_model(arch, num_classes=10, **kwargs)
    for name, p in net.parameters_and_names():
        if name.endswith(("moving_mean", "beta")):
            p.set_data(ms.Tensor(rng.normal(0, 0.1, p.shape).astype(np.float32)))
        elif name.endswith(("moving_variance", "gamma")):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
    net.set_train(False)
    return net


def _save(net, path, arch, **identity):
    ckpt_io.save(str(path), ckpt_io.network_params(net), ckpt_io.network_identity(arch, **identity))
    return str(path)


def _images(n=2, size=32):
    return np.random.default_rng(1).standard_normal((n, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("arch,kwargs,size", [("plain8", {}, 32), ("resnet8", {}, 32),
                                               ("resnet18", {"stem": "imagenet"}, 64),
                                               ("plain50", {"stem": "cifar", "plain_variant": "keep_downsample"}, 32)])
def test_folding_batchnorm_keeps_the_logits(arch, kwargs, size):
    net = _trained_looking(arch, **kwargs)
    folded = fold_batchnorm(net)
    x = ms.Tensor(_images(size=size))
    np.testing.assert_allclose(folded(x).asnumpy(), net(x).asnumpy(), rtol=1e-4, atol=1e-4)
    assert not [n for n, c in folded.cells_and_names() if isinstance(c, ms.nn.BatchNorm2d)]
    assert any(isinstance(c, ms.nn.BatchNorm2d) for _, c in net.cells_and_names())  # the original is untouched


@pytest.fixture(scope="module")
def plain8_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    return _save(_trained_looking("plain8"), folder / "best.ckpt", "plain8", plain_variant="full"), folder


@pytest.mark.parametrize("fmt,suffix,ops", [("MINDIR", ".mindir", ("Conv2D", "ReLU", "BatchNorm", "Add")),
                                            ("ONNX", ".onnx", ("Conv", "Relu", "BatchNormalization", "Add"))])
def test_exported_plain_student_is_conv_relu_only_and_matches_the_checkpoint(plain8_ckpt, tmp_path, capsys, fmt,
                                                                             suffix, ops):
    ckpt, _ = plain8_ckpt
    out = str(tmp_path / "plain8")
    os.chmod(tmp_path, 0o755)
    assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", out, "--file_format", fmt,
                               "--dataset", "cifar10"]) == 0
    assert os.stat(tmp_path).st_mode & 0o777 == 0o755  # ms.export chmods the folder it writes into: not this one
    printed = capsys.readouterr().out
    assert f"to {out}{suffix}" in printed and "(OK)" in printed
    path = out + suffix
    assert sorted(os.listdir(tmp_path)) == [f"plain8{suffix}"]  # no temporary file left
    conv, relu, batchnorm, add = ops
    graph = graph_ops(path)
    assert graph.count(conv) == 1 + 6 and graph.count(relu) == 1 + 6  # the stem, then 3 stages of 2 convolutions
    assert graph.count(batchnorm) == 0 and graph.count(add) == 0  # no BN, no shortcut addition
    net = create_model("plain8", num_classes=10)
    ckpt_io.load_network(net, ckpt_io.read(ckpt), arch="plain8")
    net.set_train(False)
    model = load_exported(path)
    assert (model.batch, model.input_shape, model.num_classes, model.residual) == (1, [1, 3, 32, 32], 10, False)
    assert model.record == {"arch": "plain8", "plain_variant": "full", "num_classes": "10", "dataset": "cifar10",
                            "source_sha256": ckpt_io.file_sha256(ckpt)}
    x = _images(3)  # three images through a batch-1 graph
    np.testing.assert_allclose(model.predict(x), net(ms.Tensor(x)).asnumpy(), rtol=1e-4, atol=1e-4)


def test_imagenet_stem_exports_to_onnx_with_torchvision_pooling(tmp_path):
    """The ImageNet stem's padded max-pool must export (ONNX opset 11) and give the checkpoint network's logits."""
    ckpt = _save(_trained_looking("plain18", stem="imagenet"), tmp_path / "p18.ckpt", "plain18",
                 plain_variant="full", stem="imagenet")
    out = str(tmp_path / "p18")
    assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain18", "--stem", "imagenet", "--height", "65",
                               "--file_name", out, "--file_format", "ONNX"]) == 0
    graph = graph_ops(out + ".onnx")
    assert graph.count("MaxPool") == 1 and graph.count("Pad") == 1 and graph.count("Add") == 0


def test_exported_resnet_has_one_addition_per_block(tmp_path):
    ckpt = _save(_trained_looking("resnet8"), tmp_path / "r8.ckpt", "resnet8")
    out = str(tmp_path / "r8")
    assert export_script.main(["--ckpt_file", ckpt, "--arch", "resnet8", "--file_name", out,
                               "--file_format", "ONNX", "--batch_size", "4", "--dataset", "cifar10"]) == 0
    graph = graph_ops(out + ".onnx")
    # 3 blocks of 2 convolutions after the stem, and the 1x1 projections of the 2 down-sampling shortcuts
    assert graph.count("Add") == 3 and graph.count("Conv") == 1 + 6 + 2 and graph.count("BatchNormalization") == 0
    assert load_exported(out + ".onnx").batch == 4


def test_eval_of_exported_files_gives_the_checkpoints_accuracy(plain8_ckpt, cifar10_dir, tmp_path):
    ckpt, folder = plain8_ckpt
    files = {}
    for fmt, flag in (("MINDIR", "--mindir"), ("ONNX", "--onnx")):
        base = str(tmp_path / f"p8_{fmt}")
        assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", base, "--file_format",
                                   fmt, "--batch_size", "64", "--dataset", "cifar10"]) == 0
        files[flag] = base + (".mindir" if fmt == "MINDIR" else ".onnx")
    common = ["--arch", "plain8", "--dataset", "cifar10", "--data_path", cifar10_dir, "--val_split", "0.02",
              "--batch_size", "100"]
    results = {}
    for flag, path in [("--ckpt_file", ckpt)] + list(files.items()):
        out = str(tmp_path / f"{flag.strip('-')}.json")
        assert eval_script.main(common + [flag, path, "--output_json", out]) == 0
        results[flag] = json.load(open(out))
    assert results["--ckpt_file"]["num_samples"] == 1000
    for flag in files:
        assert results[flag]["top1"] == results["--ckpt_file"]["top1"]
        assert results[flag]["top5"] == results["--ckpt_file"]["top5"]


# --- bad input: one line, exit 2, nothing written ----------------------------------------------------------------

def _refused(argv, folder, capsys, message):
    before = sorted(os.listdir(folder))
    assert export_script.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
    assert sorted(os.listdir(folder)) == before


def test_export_refuses_bad_input(plain8_ckpt, tmp_path, capsys):
    ckpt, _ = plain8_ckpt
    out = str(tmp_path / "net")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    _refused(["--ckpt_file", str(tmp_path / "none.ckpt"), "--arch", "plain8", "--file_name", out], tmp_path, capsys,
             "does not exist")
    _refused(["--ckpt_file", str(garbage), "--arch", "plain8", "--file_name", out], tmp_path, capsys,
             "cannot be read: it is corrupt")
    _refused(["--ckpt_file", ckpt, "--arch", "resnet8", "--file_name", out], tmp_path, capsys,
             "was saved from arch 'plain8', not 'resnet8'")
    _refused(["--ckpt_file", ckpt, "--arch", "plain8", "--plain_variant", "keep_downsample", "--file_name", out],
             tmp_path, capsys, "was saved from plain_variant 'full', not 'keep_downsample'")
    _refused(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", out, "--file_format", "AIR"], tmp_path, capsys,
             "AIR export needs MindSpore on an Ascend device")
    _refused(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", str(tmp_path / "no" / "net")], tmp_path,
             capsys, "does not exist; create it")


def test_resnet_checkpoint_exported_as_plain_is_refused(tmp_path, capsys):
    ckpt = _save(_trained_looking("resnet8"), tmp_path / "r8.ckpt", "resnet8")
    _refused(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", str(tmp_path / "x")], tmp_path, capsys,
             "was saved from arch 'resnet8', not 'plain8'")


def test_existing_output_needs_overwrite_and_unwritable_folder(plain8_ckpt, tmp_path, capsys):
    ckpt, _ = plain8_ckpt
    out = str(tmp_path / "net")
    argv = ["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", out, "--file_format", "ONNX"]
    assert export_script.main(argv) == 0
    first = open(out + ".onnx", "rb").read()
    _refused(argv, tmp_path, capsys, "exists; pass --overwrite")
    assert open(out + ".onnx", "rb").read() == first
    assert export_script.main(argv + ["--overwrite", "true"]) == 0
    _refused(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", "/proc/resdist_net"], tmp_path, capsys,
             "output folder /proc is not writable")


# --- eval.py refuses exported files that cannot be what the command says ------------------------------------------

@pytest.fixture(scope="module")
def exported_files(tmp_path_factory):
    """A plain8 (10 classes), a resnet8 and a 100-class plain8, each exported to MindIR and ONNX; a plain8 at
    64x64; and a resnet8 ONNX file with export.py's record stripped (as a file from elsewhere would be)."""
    import onnx

    folder = tmp_path_factory.mktemp("exported")
    files = {}
    nets = {"p8": ("plain8", _trained_looking("plain8"), {"plain_variant": "full"}),
            "r8": ("resnet8", _trained_looking("resnet8"), {}),
            "p8c100": ("plain8", create_model("plain8", num_classes=100), {"plain_variant": "full"})}
    for key, (arch, net, identity) in nets.items():
        ckpt = _save(net, folder / f"{key}.ckpt", arch, **identity)
        for fmt in ("MINDIR", "ONNX"):
            base = str(folder / key)
            assert export_script.main(["--ckpt_file", ckpt, "--arch", arch, "--file_name", base, "--file_format", fmt,
                                       "--dataset", "cifar10"]) == 0
            files[key, fmt.lower()] = base + (".mindir" if fmt == "MINDIR" else ".onnx")
    assert export_script.main(["--ckpt_file", str(folder / "p8.ckpt"), "--arch", "plain8", "--file_name",
                               str(folder / "p8_64"), "--file_format", "ONNX", "--height", "64"]) == 0
    files["p8_64", "onnx"] = str(folder / "p8_64.onnx")
    model = onnx.load(files["r8", "onnx"])
    del model.metadata_props[:]
    files["r8_bare", "onnx"] = str(folder / "r8_bare.onnx")
    onnx.save(model, files["r8_bare", "onnx"])
    for fmt in ("mindir", "onnx"):
        data = open(files["p8", fmt], "rb").read()
        files["truncated", fmt] = str(folder / f"truncated.{fmt}")
        open(files["truncated", fmt], "wb").write(data[:len(data) // 2])
    files["empty", "onnx"] = str(folder / "empty.onnx")
    open(files["empty", "onnx"], "wb").close()
    files["text", "mindir"] = str(folder / "notes.mindir")
    open(files["text", "mindir"], "w").write("not a model\n")
    return files


@pytest.mark.parametrize("flag,key,fmt,argv,message", [
    ("--onnx", "p8c100", "onnx", [], "has 100 classes but synthetic has 10: it was trained for another data set"),
    ("--mindir", "p8c100", "mindir", [], "has 100 classes but synthetic has 10"),
    ("--onnx", "r8", "onnx", ["--arch", "plain8"], "was exported from arch 'resnet8', not 'plain8' (recorded in "
                                                     "the file by export.py); pass --arch resnet8"),
    ("--mindir", "p8", "mindir", ["--arch", "plain56"], "was exported from arch 'plain8', not 'plain56'"),
    ("--onnx", "p8", "onnx", ["--plain_variant", "keep_downsample"], "plain_variant 'full', not 'keep_downsample'"),
    ("--onnx", "r8_bare", "onnx", ["--arch", "plain8"], "has shortcut additions, so it is not --arch plain8"),
    ("--mindir", "p8", "onnx", [], "is ONNX, not MindIR: pass --onnx"),
    ("--onnx", "p8", "mindir", [], "is MindIR, not ONNX: pass --mindir"),
    ("--onnx", "empty", "onnx", [], "is empty"),
    ("--mindir", "text", "mindir", [], "is not a MindIR file"),
    ("--onnx", "truncated", "onnx", [], "cannot be loaded ("),
    ("--mindir", "truncated", "mindir", [], "cannot be loaded ("),
    ("--onnx", "p8_64", "onnx", [], "takes inputs of shape [1, 3, 64, 64], but synthetic gives 3x32x32 images"),
])
def test_eval_refuses_an_exported_file_that_does_not_fit(exported_files, tmp_path, capsys, flag, key, fmt, argv,
                                                        message):
    out = tmp_path / "eval.json"
    argv = ["--arch", "plain8"] + argv + [flag, exported_files[key, fmt], "--synthetic_val_size", "32",
                                           "--output_json", str(out)]
    assert eval_script.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not out.exists()


def test_eval_of_an_exported_file_records_what_ran_it(exported_files, tmp_path):
    for flag, fmt, kind in (("--mindir", "mindir", "MindIR (MindSpore)"), ("--onnx", "onnx", "ONNX (onnxruntime)")):
        out = tmp_path / f"{fmt}.json"
        assert eval_script.main(["--arch", "resnet8", flag, exported_files["r8", fmt], "--synthetic_val_size", "32",
                                 "--output_json", str(out)]) == 0
        result = json.load(open(out))
        assert (result["arch"], result["model_kind"]) == ("resnet8", kind)
        assert result["model_sha256"] == ckpt_io.file_sha256(exported_files["r8", fmt])


# --- export paths, scales and leftovers ---------------------------------------------------------------------------

def test_export_beside_a_checkpoint_in_a_folder_with_a_space_and_non_ascii(tmp_path):
    """ms.export refuses such paths: the file is made elsewhere and moved; the folder keeps its mode."""
    folder = tmp_path / "My Models" / "modèles"
    folder.mkdir(parents=True)
    os.chmod(folder, 0o755)
    ckpt = _save(_trained_looking("plain8"), folder / "best.ckpt", "plain8", plain_variant="full")
    for fmt, suffix in (("MINDIR", ".mindir"), ("ONNX", ".onnx")):
        assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain8", "--file_format", fmt,
                                   "--dataset", "cifar10"]) == 0
        assert load_exported(str(folder / f"plain8{suffix}")).record["arch"] == "plain8"
    assert sorted(os.listdir(folder)) == ["best.ckpt", "plain8.mindir", "plain8.onnx"]
    assert os.stat(folder).st_mode & 0o777 == 0o755


def test_export_check_is_relative_to_the_logits_scale(tmp_path, capsys):
    """A network whose logits are near 1e8 differs from its export by float32 rounding (~1e1 there), not by a bug."""
    net = _trained_looking("plain20")  # deep enough that the export's float32 rounding shows (plain8 matches exactly)
    net.fc.weight.set_data(ms.Tensor(net.fc.weight.asnumpy() * 1e7))
    net.fc.bias.set_data(ms.Tensor(np.full(10, 1e8, np.float32)))
    ckpt = _save(net, tmp_path / "big.ckpt", "plain20", plain_variant="full")
    assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain20", "--file_name", str(tmp_path / "big"),
                               "--file_format", "ONNX", "--dataset", "cifar10"]) == 0
    printed = capsys.readouterr().out
    diff = float(printed.split("max |logit difference| ")[1].split()[0])
    assert "(OK)" in printed and diff > 1e-4  # above the old absolute tolerance, within the scaled one


def test_export_refuses_a_folder_a_trailing_slash_and_an_absurd_input(plain8_ckpt, tmp_path, capsys):
    ckpt, _ = plain8_ckpt
    (tmp_path / "net.onnx").mkdir()
    (tmp_path / "net.onnx" / "keep").write_text("mine")
    base = ["--ckpt_file", ckpt, "--arch", "plain8", "--file_format", "ONNX"]
    _refused(base + ["--file_name", str(tmp_path / "net"), "--overwrite", "true"], tmp_path, capsys,
             "net.onnx is a folder; pass a --file_name that names a file")
    assert (tmp_path / "net.onnx" / "keep").read_text() == "mine"
    _refused(base + ["--file_name", str(tmp_path) + "/"], tmp_path, capsys, "--file_name gives no file name")
    _refused(base + ["--file_name", str(tmp_path / "huge"), "--height", "100000"], tmp_path, capsys,
             "an exported input of shape [1, 3, 100000, 100000]")
    _refused(base + ["--file_name", str(tmp_path / "huge"), "--batch_size", "100000", "--dataset", "cifar10"],
             tmp_path, capsys, "above 256 MiB; export a smaller batch or image size")


def test_an_export_killed_midway_leaves_nothing_for_long(plain8_ckpt, tmp_path):
    """The private folder of an export whose process is gone is removed by the next export to that name; a
    running export's folder is left alone."""
    ckpt, _ = plain8_ckpt
    dead = tmp_path / ".net.onnx.999999999.x1y2.partial"  # above any pid_max: no such process
    alive = tmp_path / f".net.onnx.{os.getpid()}.a1b2.partial"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half a file")
    assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", str(tmp_path / "net"),
                               "--file_format", "ONNX"]) == 0
    assert not dead.exists() and alive.exists()
    assert sorted(os.listdir(tmp_path)) == [alive.name, "net.onnx"]


def test_an_export_killed_while_staging_under_the_temporary_folder_leaves_nothing_for_long(plain8_ckpt, tmp_path,
                                                                                          monkeypatch):
    """Beside a path ms.export refuses (a space), files are staged under TMPDIR: a dead export's folder there is
    removed by the next export, a running one's kept."""
    ckpt, _ = plain8_ckpt
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    dead, alive = tmp / "resdist-export-999999999-k1l2", tmp / f"resdist-export-{os.getpid()}-m3n4"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half a file")
    out = tmp_path / "with space"
    out.mkdir()
    assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", str(out / "net"),
                               "--file_format", "ONNX"]) == 0
    assert not dead.exists() and alive.exists()
    assert sorted(os.listdir(tmp)) == [alive.name] and sorted(os.listdir(out)) == ["net.onnx"]


def test_a_recipes_batch_size_is_the_training_batch_not_the_exported_one(plain8_ckpt, tmp_path):
    """README's `export.py --config configs/cifar10_plain20_rd.yaml ...` exports batch 1, not the recipe's 128;
    export.py's own --batch_size (the model zoo's flag) sets the exported batch."""
    from conftest import ROOT

    ckpt, _ = plain8_ckpt
    recipe = os.path.join(ROOT, "configs", "cifar10_plain20_rd.yaml")
    for extra, batch in (([], 1), (["--batch_size", "4"], 4), (["--export_batch_size", "2"], 2)):
        out = str(tmp_path / f"b{batch}")
        # --arch plain8: the recipe's network at the suite's small depth (the batch rule does not depend on it)
        assert export_script.main(["--config", recipe, "--arch", "plain8", "--ckpt_file", ckpt, "--file_name", out,
                                   "--file_format", "ONNX"] + extra) == 0
        assert load_exported(out + ".onnx").input_shape == [batch, 3, 32, 32]
