import numpy as np

from resdist.models import create_model
from resdist.train.optim import create_optimizer, lr_per_step


def test_step_schedule_with_warmup():
    lrs = lr_per_step(0.1, "step", epochs=6, steps_per_epoch=2, milestones=[3, 5], gamma=0.1, warmup_epochs=1)
    np.testing.assert_allclose(lrs, [0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001],
                               rtol=1e-6)


def test_cosine_schedule_goes_to_zero():
    lrs = lr_per_step(0.2, "cosine", epochs=4, steps_per_epoch=1)
    expected = [0.2, 0.2 * (1 + np.cos(np.pi / 4)) / 2, 0.1, 0.2 * (1 + np.cos(3 * np.pi / 4)) / 2]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)


def test_weight_decay_can_spare_bn_and_bias():
    params = dict(create_model("resnet8", num_classes=10).parameters_and_names())
    params = {n: p for n, p in params.items() if p.requires_grad}
    opt = create_optimizer(params, lr_per_step(0.1, "step", 1, 1), weight_decay=5e-4, exclude_bn_bias=True)
    decay = {p.name for p, wd in zip(opt.parameters, opt.weight_decay) if float(wd) > 0}
    assert decay == {p.name for n, p in params.items() if n.endswith(".weight")}


def test_dirac_scales_never_decay():
    from resdist.models.dirac import apply_dirac

    net = apply_dirac(create_model("plain8", num_classes=10))
    params = {n: p for n, p in net.parameters_and_names() if p.requires_grad}
    opt = create_optimizer(params, lr_per_step(0.1, "step", 1, 1), weight_decay=5e-4)
    no_decay = {p.name for p, wd in zip(opt.parameters, opt.weight_decay) if float(wd) == 0}
    assert no_decay == {p.name for n, p in params.items() if "dirac_" in n}
    assert len(no_decay) == 2 * 6  # alpha and beta of each of plain-8's six stage convolutions
