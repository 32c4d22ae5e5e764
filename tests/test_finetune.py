"""Fine-tuning from a pretrained network: weights in place, a new classifier, frozen stages, the backbone's
learning rate, resume, RD from a pretrained student, and refusals."""
import json

import numpy as np
import pytest

import train as train_script
from resdist import checkpoint as ckpt_io

TINY = ["--synthetic_train_size", "128", "--synthetic_val_size", "32", "--batch_size", "32", "--log_interval", "2",
        "--lr", "0.05", "--keep_checkpoint_max", "0", "--epochs", "1"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A resnet8 and a plain8 trained one epoch on the 10-class synthetic set."""
    root = tmp_path_factory.mktemp("pretrained")
    out = {}
    for arch, procedure in (("resnet8", "teacher"), ("plain8", "plain")):
        assert train_script.main(TINY + ["--arch", arch, "--procedure", procedure, "--output_dir",
                                         str(root / arch)]) == 0
        out[arch] = str(root / arch / "best.ckpt")
    return out


def _arrays(path):
    """The network's parameters in a checkpoint (not its metadata)."""
    return {k: v.asnumpy() for k, v in ckpt_io.read(path).items()
            if hasattr(v, "asnumpy") and k not in ckpt_io.META_KEYS}


def test_fine_tuning_with_a_new_classifier_and_every_stage_frozen(pretrained, tmp_path):
    """5 classes instead of 10: the classifier is new; with the stem and all 3 stages frozen, every other weight
    and BatchNorm statistic is the pretrained one after training."""
    out = tmp_path / "ft"
    assert train_script.main(TINY + ["--arch", "resnet8", "--num_classes", "5", "--pretrained_ckpt",
                                     pretrained["resnet8"], "--freeze_stages", "3", "--output_dir", str(out)]) == 0
    before, after = _arrays(pretrained["resnet8"]), _arrays(str(out / "best.ckpt"))
    assert after["fc.weight"].shape == (5, 64) and before["fc.weight"].shape == (10, 64)
    same = [k for k in after if not k.startswith("fc.")]
    assert same and all(np.array_equal(after[k], before[k]) for k in same)
    log = (out / "train.log").read_text()
    assert "classifier re-initialised (10 classes in the checkpoint, 5 here)" in log
    assert "frozen: the stem and stages 1..3" in log


def test_new_classifier_starts_afresh_with_as_many_classes(pretrained, tmp_path):
    """10 classes here and in the checkpoint: kept by default (the other tests), new with new_classifier. With a
    learning rate of 1e-9 the trained classifier is still its initial one, far from the pretrained weights."""
    out = tmp_path / "newfc"
    assert train_script.main(TINY + ["--arch", "resnet8", "--pretrained_ckpt", pretrained["resnet8"],
                                     "--new_classifier", "true", "--lr", "1e-9", "--output_dir", str(out)]) == 0
    before, after = _arrays(pretrained["resnet8"]), _arrays(str(out / "best.ckpt"))
    assert not np.allclose(after["fc.weight"], before["fc.weight"], atol=1e-3)
    assert np.allclose(after["stages.2.0.conv2.weight"], before["stages.2.0.conv2.weight"], atol=1e-6)
    assert "classifier re-initialised (new_classifier=true)" in (out / "train.log").read_text()


def test_freezing_one_stage_keeps_it_and_trains_the_rest(pretrained, tmp_path):
    out = tmp_path / "ft1"
    assert train_script.main(TINY + ["--arch", "resnet8", "--pretrained_ckpt", pretrained["resnet8"],
                                     "--freeze_stages", "1", "--output_dir", str(out)]) == 0
    before, after = _arrays(pretrained["resnet8"]), _arrays(str(out / "best.ckpt"))
    frozen = [k for k in after if k.startswith(("stem.", "stages.0."))]
    trained = [k for k in after if k.startswith("stages.2.") and k.endswith("weight")]
    assert frozen and all(np.array_equal(after[k], before[k]) for k in frozen)
    assert trained and all(not np.array_equal(after[k], before[k]) for k in trained)


def test_dirac_keeps_frozen_stages_frozen(pretrained, tmp_path):
    """--dirac swaps in new convolutions (with new alpha, beta): they must freeze as the ones they replace. The
    saved student folds Dirac back, so a frozen stage's folded weights are the pretrained ones to the bit."""
    out = tmp_path / "dirac_frozen"
    assert train_script.main(TINY + ["--arch", "plain8", "--procedure", "plain", "--pretrained_ckpt",
                                     pretrained["plain8"], "--dirac", "true", "--freeze_stages", "1",
                                     "--output_dir", str(out)]) == 0
    before, after = _arrays(pretrained["plain8"]), _arrays(str(out / "best.ckpt"))
    frozen = [k for k in after if k.startswith(("stem.", "stages.0."))]
    trained = [k for k in after if k.startswith("stages.2.") and k.endswith("conv1.weight")]
    assert any(k.endswith("conv1.weight") for k in frozen)
    assert frozen and all(np.array_equal(after[k], before[k]) for k in frozen)
    assert trained and all(not np.array_equal(after[k], before[k]) for k in trained)
    state = ckpt_io.read(str(out / "last.ckpt"))  # the training state: frozen scales at their start
    assert np.array_equal(state["stages.0.0.conv1.dirac_alpha"].asnumpy(), np.zeros(16, np.float32))
    assert not np.array_equal(state["stages.2.0.conv1.dirac_alpha"].asnumpy(), np.zeros(64, np.float32))


def test_dirac_from_a_pretrained_network_starts_at_that_network(pretrained, tmp_path):
    """At a learning rate of ~0 (and BatchNorm statistics fixed), a Dirac run's first validation is the
    pretrained network's: the parametrisation starts at alpha 0, beta 1, i.e. at the loaded weights."""
    import eval as eval_script

    out = tmp_path / "dirac_pre"
    assert train_script.main(TINY + ["--arch", "plain8", "--procedure", "plain", "--pretrained_ckpt",
                                     pretrained["plain8"], "--dirac", "true", "--freeze_stages", "3",
                                     "--lr", "1e-12", "--output_dir", str(out)]) == 0
    first = json.load(open(out / "metrics.json"))["epochs"][0]
    result = tmp_path / "pretrained.json"
    assert eval_script.main(["--arch", "plain8", "--synthetic_val_size", "32", "--batch_size", "32",
                             "--ckpt_file", pretrained["plain8"], "--output_json", str(result)]) == 0
    assert first["val_top1"] == json.load(open(result))["top1"]
    assert "dirac: starting at alpha 0, beta 1" in (out / "train.log").read_text()
    before, after = _arrays(pretrained["plain8"]), _arrays(str(out / "best.ckpt"))
    np.testing.assert_allclose(after["stages.2.0.conv2.weight"], before["stages.2.0.conv2.weight"], atol=1e-9)


def test_backbone_lr_scale_reaches_the_optimizer_groups():
    from resdist.models import create_model
    from resdist.train.finetune import backbone_parameters
    from resdist.train.optim import create_optimizer

    net = create_model("plain8")
    lrs = np.arange(1, 5, dtype=np.float32) / 10  # a per-step schedule: 0.1 .. 0.4
    params = dict(net.parameters_and_names())
    optimizer = create_optimizer(params, lrs, scaled=backbone_parameters(net), lr_scale=0.1)
    per_param = {n: optimizer.get_lr_parameter(p).asnumpy() for n, p in params.items()}
    assert all(np.allclose(per_param[n], lrs) for n in ("fc.weight", "fc.bias"))  # the classifier: full lr
    backbone = [n for n in params if not n.startswith("fc.")]
    assert backbone and all(np.allclose(per_param[n], lrs * 0.1) for n in backbone)


def test_a_fine_tuning_run_resumes(pretrained, tmp_path):
    out = tmp_path / "ftr"
    args = TINY + ["--arch", "resnet8", "--num_classes", "5", "--pretrained_ckpt", pretrained["resnet8"],
                   "--backbone_lr_scale", "0.1", "--output_dir", str(out)]
    assert train_script.main(args) == 0
    assert train_script.main(args + ["--epochs", "2", "--resume", "auto"]) == 0
    epochs = json.load(open(out / "metrics.json"))["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    log = (out / "train.log").read_text()
    assert "resumed from" in log and log.count("classifier re-initialised") == 1  # only the first session


def test_rd_starts_its_student_from_a_pretrained_plain_network(pretrained, tmp_path):
    out = tmp_path / "rd"
    assert train_script.main(TINY + ["--arch", "plain8", "--procedure", "rd", "--teacher_ckpt",
                                     pretrained["resnet8"], "--pretrained_ckpt", pretrained["plain8"],
                                     "--max_steps_per_epoch", "1", "--output_dir", str(out)]) == 0
    assert f"pretrained {pretrained['plain8']}: " in (out / "train.log").read_text()


@pytest.mark.parametrize("case,message", [
    ("arch", "was saved from arch 'plain8', not 'resnet8'"),
    ("missing", "pretrained checkpoint"),
    ("freeze", "freeze_stages=4, but ResNet has stages 1..3"),
])
def test_bad_pretrained_input_is_refused_before_any_folder(pretrained, tmp_path, capsys, case, message):
    out = tmp_path / "never"
    extra = {"arch": ["--pretrained_ckpt", pretrained["plain8"]],
             "missing": ["--pretrained_ckpt", str(tmp_path / "none.ckpt")],
             "freeze": ["--freeze_stages", "4"]}[case]
    assert train_script.main(TINY + ["--arch", "resnet8", "--output_dir", str(out)] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists()
