"""Mixed precision (O2, O3) for every procedure, on MindSpore's CPU backend: compiled training steps with teacher
and student under one policy, losses in float32, dynamic loss scaling. train.py forces O0 on CPU; these tests
call the same apply_precision + make_train_step that train() calls on Ascend/GPU."""
import mindspore as ms
import numpy as np
import pytest

from resdist.distill.builder import make_objective
from resdist.models import create_model
from resdist.precision import apply_precision
from resdist.train.optim import create_optimizer
from resdist.train.trainer import make_train_step


def _objective(procedure, seed=0):
    ms.set_seed(seed)
    name, _, variant = procedure.partition("_")  # rd_paper, rd_joint
    if name == "teacher":
        return make_objective(name, create_model("resnet8", num_classes=10))
    student, teacher = create_model("plain8", num_classes=10), create_model("resnet8", num_classes=10)
    return make_objective(name, student, None if name == "plain" else teacher, fd_lambda=1e-5,
                          rd_variant=variant or "paper")


def _batch(n=8):
    rng = np.random.default_rng(0)
    return (ms.Tensor(rng.standard_normal((n, 3, 32, 32)).astype(np.float32)),
            ms.Tensor((np.arange(n) % 10).astype(np.int32)))


def _steps(procedure, level, steps=2, loss_scale=1.0, scale_type="static"):
    objective = apply_precision(_objective(procedure), level)
    params = {n: p for n, p in objective.parameters_and_names() if p.requires_grad}
    step = make_train_step(objective, create_optimizer(params, np.full(10, 0.01, np.float32)), loss_scale,
                           loss_scale_type=scale_type)
    images, labels = _batch()
    out = [step(images, labels) for _ in range(steps)]
    return objective, params, out


_REFERENCE = {}


def _reference_losses(procedure):
    """The float32 (O0) run's losses, once per procedure."""
    if procedure not in _REFERENCE:
        _REFERENCE[procedure] = [float(loss.asnumpy()) for loss, _, _ in _steps(procedure, "O0")[2]]
    return _REFERENCE[procedure]


def _networks(objective):
    return [objective.net] if hasattr(objective, "net") else [objective.student, objective.teacher]


@pytest.mark.parametrize("level", ["O2", pytest.param("O3", marks=pytest.mark.slow)])  # O3: CI only
@pytest.mark.parametrize("procedure", ["teacher", "plain", "kd", "fd", "rd_paper", "rd_joint"])
def test_every_procedure_compiles_and_trains_under_mixed_precision(procedure, level):
    ms.set_context(mode=ms.GRAPH_MODE)
    objective, params, out = _steps(procedure, level)
    for (loss, _, terms), ref_loss in zip(out, _reference_losses(procedure)):
        assert loss.dtype == ms.float32 and all(t.dtype == ms.float32 for t in terms)
        assert np.isfinite(float(loss.asnumpy()))
        # float16 arithmetic, the same training: within a percent of the float32 run, step by step
        assert float(loss.asnumpy()) == pytest.approx(ref_loss, rel=1e-2)
    assert all(p.dtype == ms.float32 for p in params.values())  # master weights stay float32

    x = ms.Tensor(np.zeros((2, 3, 32, 32), np.float32))
    ms.set_context(mode=ms.PYNATIVE_MODE)
    for net in _networks(objective):  # teacher and student under the same policy
        assert net.stem.conv(x).dtype == ms.float16
        bn_out = net.stem.bn(ms.Tensor(np.zeros((2, 16, 32, 32), np.float32)))
        assert bn_out.dtype == (ms.float32 if level == "O2" else ms.float16)


def test_mixed_precision_keeps_parameter_names():
    """In place, no wrapper Cell: checkpoints of an O2 run load into create_model as they are."""
    plain = dict(_objective("rd_paper").parameters_and_names())
    mixed = dict(apply_precision(_objective("rd_paper"), "O2").parameters_and_names())
    assert plain.keys() == mixed.keys()


def test_dynamic_loss_scale_skips_an_overflowing_step():
    """A scale of 2^24 overflows float16 gradients: the first step changes no weight (and reports the true loss);
    each skipped step halves the scale, so training resumes once it fits."""
    ms.set_context(mode=ms.GRAPH_MODE)
    objective = apply_precision(_objective("plain"), "O2")
    params = {n: p for n, p in objective.parameters_and_names() if p.requires_grad}
    before = {n: p.asnumpy().copy() for n, p in params.items()}
    step = make_train_step(objective, create_optimizer(params, np.full(20, 0.01, np.float32)), 2.0 ** 24,
                           loss_scale_type="dynamic")
    images, labels = _batch()
    first = float(step(images, labels)[0].asnumpy())
    assert all(np.array_equal(before[n], p.asnumpy()) for n, p in params.items())
    assert first == pytest.approx(_reference_losses("plain")[0], rel=1e-2)
    for _ in range(12):
        step(images, labels)
    assert any(not np.array_equal(before[n], p.asnumpy()) for n, p in params.items())


def test_cpu_runs_force_o0_with_a_warning(tmp_path, capsys):
    import train as train_script

    out = tmp_path / "run"
    assert train_script.main(["--arch", "resnet8", "--amp_level", "O2", "--loss_scale_type", "dynamic", "--epochs", "1",
                              "--synthetic_train_size", "64", "--synthetic_val_size", "32", "--batch_size", "32",
                              "--output_dir", str(out)]) == 0
    assert "amp_level=O2 is for Ascend/GPU; using O0 on CPU" in (out / "train.log").read_text()
