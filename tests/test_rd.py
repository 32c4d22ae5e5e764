"""Residual Distillation: the frozen teacher, the mixed paths, the loss terms and their gradients."""
import json
import math
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from resdist import checkpoint as ckpt_io
from resdist.distill.feature import bn_margin, partial_l2
from resdist.distill.kd import KnowledgeDistillation
from resdist.distill.objective import CrossEntropyObjective
from resdist.distill.rd import ResidualDistillation, eta_at
from resdist.models import create_model
from resdist.models.dirac import DiracConv2d, apply_dirac, deployable_params
from resdist.train.optim import create_optimizer, lr_per_step
from resdist.train.trainer import make_train_step


def _batch(n=8, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return (ms.Tensor(rng.standard_normal((n, 3, 32, 32)).astype(np.float32)),
            ms.Tensor(rng.integers(0, classes, n).astype(np.int32)))


def _pair(seed=0, depth=20):
    """A plain student and its ResNet teacher; the compiled tests take depth 8, which compiles in half the time."""
    ms.set_seed(seed)
    teacher = create_model(f"resnet{depth}", num_classes=10)
    # a teacher whose BN statistics are not the defaults, so that using batch statistics would show
    for name, p in teacher.parameters_and_names():
        if "moving_mean" in name or "beta" in name:
            p.set_data(ms.Tensor(np.random.default_rng(1).normal(0, 0.1, p.shape).astype(np.float32)))
        if "moving_variance" in name or "gamma" in name:
            p.set_data(ms.Tensor(np.random.default_rng(2).uniform(0.5, 1.5, p.shape).astype(np.float32)))
    return create_model(f"plain{depth}", num_classes=10), teacher


def _student_grads(objective, student, images, labels):
    named = [(n, p) for n, p in student.parameters_and_names() if p.requires_grad]
    grad_fn = ms.grad(lambda x, y: objective(x, y)[0], None, [p for _, p in named])
    return {n: g.asnumpy() for (n, _), g in zip(named, grad_fn(images, labels))}


def test_teacher_is_bit_identical_after_training_steps_and_the_student_changes():
    ms.set_context(mode=ms.GRAPH_MODE)
    student, teacher = _pair(depth=8)
    rd = ResidualDistillation(student, teacher, fd_lambda=0.001)
    teacher_before = {n: p.asnumpy().copy() for n, p in teacher.parameters_and_names()}
    student_before = {n: p.asnumpy().copy() for n, p in student.parameters_and_names()}
    trainable = {n: p for n, p in rd.parameters_and_names() if p.requires_grad}
    assert not any(n.startswith("teacher.") for n in trainable)  # no optimizer state for the teacher
    optimizer = create_optimizer(trainable, lr_per_step(0.1, "step", 1, 3))
    step = make_train_step(rd, optimizer)
    rd.set_train(True)  # recurses into the teacher: its BN must still use running statistics
    for i in range(3):
        loss, _, terms = step(*_batch(seed=i))
        assert np.isfinite(loss.asnumpy())
    for name, p in teacher.parameters_and_names():
        np.testing.assert_array_equal(p.asnumpy(), teacher_before[name], err_msg=name)
    changed = [n for n, p in student.parameters_and_names() if not np.array_equal(p.asnumpy(), student_before[n])]
    assert "stem.conv.weight" in changed and "stages.0.0.bn1.moving_mean" in changed and "fc.weight" in changed


@pytest.mark.parametrize("variant", ["paper", "joint"])
def test_a_compiled_step_follows_eta_set_between_epochs(variant):
    """The training loop sets eta each epoch after the step was compiled; the graph must use the new value
    (a Parameter replaced with set_data kept the compile-time eta, 1.0, for the whole run)."""
    ms.set_context(mode=ms.GRAPH_MODE)
    student, teacher = _pair(depth=8)
    rd = ResidualDistillation(student, teacher, fd_lambda=0.001, variant=variant)
    trainable = {n: p for n, p in rd.parameters_and_names() if p.requires_grad}
    step = make_train_step(rd, create_optimizer(trainable, [0.0] * 4))  # lr 0: the weights stay put
    rd.set_train(True)
    images, labels = _batch()
    losses = []
    for eta in (1.0, 0.5, 0.25):
        rd.set_eta(eta)
        loss, _, (ce, mixed_ce, fd) = step(images, labels)
        losses.append(float(loss))
        if variant == "paper":
            assert losses[-1] == pytest.approx(float(ce) + eta * float(mixed_ce) + 0.001 * float(fd), rel=1e-5)
    # joint weighs the mixed paths' CE and feature terms (both positive) by eta: the loss falls with it
    assert losses[0] > losses[1] > losses[2]


def test_with_eta_and_lambda_zero_gradients_equal_plain_training():
    student, teacher = _pair()
    images, labels = _batch()
    rd = ResidualDistillation(student, teacher, fd_lambda=0.0)
    rd.set_eta(0.0)
    rd.set_train(True)
    rd_grads = _student_grads(rd, student, images, labels)
    plain_grads = _student_grads(CrossEntropyObjective(student), student, images, labels)
    for name in plain_grads:
        np.testing.assert_allclose(rd_grads[name], plain_grads[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_mixed_path_gradient_reaches_the_first_stage_and_matches_a_hand_spliced_reference():
    student, teacher = _pair()
    images, labels = _batch()
    rd = ResidualDistillation(student, teacher, injection_points=[1], fd_lambda=0.0)
    rd.set_eta(0.7)
    rd.set_train(True)
    ce = nn.CrossEntropyLoss()

    def hand_spliced(x, y):  # CE(z_S) + 0.7 * CE(teacher stages 2..3 on student stage 1), built from the stage API
        f1 = student.stage_outputs(x)[0]
        t = teacher.stages[2](teacher.stages[1](f1))
        return ce(student(x), y) + 0.7 * ce(teacher.fc(ops.mean(t, (2, 3))), y)

    named = [(n, p) for n, p in student.parameters_and_names() if p.requires_grad]
    ref = ms.grad(hand_spliced, None, [p for _, p in named])(images, labels)
    got = _student_grads(rd, student, images, labels)
    plain = _student_grads(CrossEntropyObjective(student), student, images, labels)
    first = "stages.0.0.conv1.weight"
    for (name, _), g in zip(named, ref):
        np.testing.assert_allclose(got[name], g.asnumpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    assert np.abs(got[first] - plain[first]).max() > 1e-4 * np.abs(plain[first]).max()
    # the fc of the student gets no gradient from the mixed path: it is not on it
    np.testing.assert_allclose(got["fc.weight"], plain["fc.weight"], rtol=1e-5, atol=1e-7)

    # and a finite-difference check of the directional derivative along a random direction of stage 1
    param = dict(student.parameters_and_names())[first]
    direction = np.random.default_rng(3).standard_normal(param.shape).astype(np.float32)
    w0 = param.asnumpy().copy()
    student.set_train(False)  # deterministic BN for the finite difference
    rd_eval = lambda: float(rd(images, labels)[0].asnumpy())  # noqa: E731
    grad_eval = _student_grads(rd, student, images, labels)[first]
    plain_eval = _student_grads(CrossEntropyObjective(student), student, images, labels)[first]
    eps = 1e-4  # float32 and ReLU kinks limit the agreement to a few percent
    param.set_data(ms.Tensor(w0 + eps * direction))
    up = rd_eval()
    param.set_data(ms.Tensor(w0 - eps * direction))
    down = rd_eval()
    param.set_data(ms.Tensor(w0))
    numeric = (up - down) / (2 * eps)
    assert numeric == pytest.approx(float((grad_eval * direction).sum()), rel=0.15)
    assert numeric != pytest.approx(float((plain_eval * direction).sum()), rel=0.5)  # the mixed path matters


@pytest.mark.parametrize("k", [2, 1])
def test_mixed_path_logits_equal_a_hand_spliced_forward(k):
    student, teacher = _pair()
    rd = ResidualDistillation(student, teacher)
    rd.set_train(False)
    images, _ = _batch()
    f = student.stage_outputs(images)
    logits = rd.teacher_logits(rd.teacher.preact_from_stage(f[k - 1], k))
    x = f[k - 1]
    for i in range(k, 3):
        x = teacher.stages[i](x)
    np.testing.assert_allclose(logits.asnumpy(), teacher.fc(ops.mean(x, (2, 3))).asnumpy(), rtol=1e-5, atol=1e-5)


def test_eta_schedule():
    assert [eta_at(e, 0.5, 60) for e in (0, 30, 60, 100)] == pytest.approx([1.0, 0.75, 0.5, 0.5])


def test_margin_matches_the_gaussian_negative_tail_mean():
    gamma, beta = np.array([1.0, 0.5, 2.0, 0.1]), np.array([0.0, 0.3, -1.0, 1.0])
    got = bn_margin(gamma, beta)
    for g, b, m in zip(gamma, beta, got):
        # E[x | x < 0] for x ~ N(b, g^2), by numerical integration
        x = np.linspace(b - 12 * g, 0, 200001)
        pdf = np.exp(-((x - b) / g) ** 2 / 2)
        if pdf.sum() * (x[1] - x[0]) / (g * math.sqrt(2 * math.pi)) > 0.001:
            assert m == pytest.approx((x * pdf).sum() / pdf.sum(), rel=1e-3)
        else:
            assert m == pytest.approx(-3 * g)
    assert got[0] == pytest.approx(-math.sqrt(2 / math.pi), rel=1e-6)  # half-normal mean


def test_partial_l2_skips_positions_below_a_negative_target():
    source = ms.Tensor(np.array([[[[-2.0]], [[0.5]], [[1.0]]]], np.float32))  # 1 x 3 x 1 x 1
    target = ms.Tensor(np.array([[[[-1.0]], [[-1.0]], [[2.0]]]], np.float32))
    margin = ms.Tensor(np.array([-0.5, -0.5, -0.5], np.float32).reshape(1, 3, 1, 1))
    # channel 0: target -> -0.5, source -2 below it and target <= 0: skipped; channel 1: 0.5 > -0.5: (1.0)^2;
    # channel 2: target 2 > 0: (1 - 2)^2
    assert float(partial_l2(source, target, margin).asnumpy()) == pytest.approx(2.0)


def test_kd_loss_value():
    student, teacher = _pair()
    kd = KnowledgeDistillation(student, teacher, alpha=0.9, temperature=4.0)
    kd.set_train(False)
    images, labels = _batch()
    loss, logits, (ce, kd_term) = kd(images, labels)
    s, t = logits.asnumpy() / 4.0, teacher(images).asnumpy() / 4.0
    log_ps = s - np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True)) - s.max(1, keepdims=True)
    log_pt = t - np.log(np.exp(t - t.max(1, keepdims=True)).sum(1, keepdims=True)) - t.max(1, keepdims=True)
    expected_kd = (np.exp(log_pt) * (log_pt - log_ps)).sum(1).mean() * 16.0
    assert float(kd_term.asnumpy()) == pytest.approx(expected_kd, rel=1e-4)
    assert float(loss.asnumpy()) == pytest.approx(0.1 * float(ce.asnumpy()) + 0.9 * expected_kd, rel=1e-4)


def test_dirac_convolutions_fold_into_the_plain_student(tmp_path):
    student, teacher = _pair()
    apply_dirac(student)
    assert isinstance(student.stages[0][0].conv1, DiracConv2d)
    # train-like perturbation of alpha and beta so folding is not trivially alpha=1, beta=0.1
    for name, p in student.parameters_and_names():
        if name.endswith(("dirac_alpha", "dirac_beta")):
            p.set_data(ms.Tensor(np.random.default_rng(4).uniform(0.3, 1.2, p.shape).astype(np.float32)))
    rd = ResidualDistillation(student, teacher)
    rd.set_train(False)
    images, _ = _batch()
    inside = rd.student(images).asnumpy()
    path = str(tmp_path / "student.ckpt")
    ckpt_io.save(path, deployable_params(student), {"arch": "plain20"})
    state = ckpt_io.read(path)
    assert not any(k.startswith("student.") or "dirac" in k or "connector" in k for k in state)
    deployed = create_model("plain20", num_classes=10)
    ckpt_io.load_network(deployed, state, path=path, arch="plain20")
    deployed.set_train(False)
    np.testing.assert_allclose(deployed(images).asnumpy(), inside, rtol=1e-4, atol=1e-4)
    # the training state (Dirac scales stored, as in last.ckpt) loads into the plain network too, folded on load
    ckpt_io.save(path, ckpt_io.network_params(student), {"arch": "plain20"})
    assert "stages.0.0.conv1.dirac_alpha" in ckpt_io.read(path)
    deployed = create_model("plain20", num_classes=10)
    ckpt_io.load_network(deployed, ckpt_io.read(path), path=path, arch="plain20")
    deployed.set_train(False)
    np.testing.assert_allclose(deployed(images).asnumpy(), inside, rtol=1e-4, atol=1e-4)


def test_bad_rd_settings_are_clear():
    student, teacher = _pair()
    with pytest.raises(ValueError, match=r"injection points \[3\] must lie in 1..2"):
        ResidualDistillation(student, teacher, injection_points=[3])
    with pytest.raises(ValueError, match="unknown RD variant"):
        ResidualDistillation(student, teacher, variant="tb")
    with pytest.raises(ValueError, match="differ in width"):
        ResidualDistillation(create_model("plain18", num_classes=10, stem="cifar"), teacher)


def test_no_teacher_weight_gradient_and_no_forward_computed_twice(tmp_path):
    """Count the convolutions in the compiled RD step: weight gradients for the student and the connector only,
    input gradients still through the teacher's later stages (mixed paths), and every forward convolution
    exactly once (the student's stage outputs are reused by the mixed paths, not recomputed)."""
    import glob
    import re

    from resdist.models.resnet import BasicBlock, ResNet

    def tiny(residual):
        return ResNet(BasicBlock, (1, 1, 1), (4, 8, 16), num_classes=10, stem="cifar", residual=residual)

    student, teacher = tiny(False), tiny(True)
    rd = ResidualDistillation(student, teacher, fd_lambda=0.001)
    trainable = {n: p for n, p in rd.parameters_and_names() if p.requires_grad}
    step = make_train_step(rd, create_optimizer(trainable, lr_per_step(0.1, "step", 1, 1)))
    rd.set_train(True)
    ms.set_context(mode=ms.GRAPH_MODE, save_graphs=True, save_graphs_path=str(tmp_path))
    try:
        step(*_batch(n=4))
    finally:
        ms.set_context(save_graphs=False)
    graph = open(sorted(glob.glob(str(tmp_path / "**" / "graph_build_*.ir"), recursive=True))[-1]).read()
    filter_grads = len(re.findall(r"= \w*Conv2DBackpropFilter\(", graph))
    input_grads = len(re.findall(r"= \w*Conv2DBackpropInput\(", graph))
    forwards = len(re.findall(r"= \w*Conv2D\(", graph))
    student_convs = sum(1 for n, _ in student.parameters_and_names() if n.endswith("conv1.weight")
                        or n.endswith("conv2.weight") or n.endswith("conv.weight"))
    assert student_convs == 7  # stem + 3 blocks x 2
    assert filter_grads == student_convs + 1  # + the connector; none of the teacher's 9 convs
    # student: 6 convs after the stem + connector; teacher: stages 2-3 for k=1 (2 blocks x 2 + 2 projections),
    # stage 3 for k=2 (2 + 1 projection)
    assert input_grads == 6 + 1 + 6 + 3
    # student 7 + connector 1 + the teacher once on the images (7 + 2 projections) + mixed paths 6 + 3
    assert forwards == 7 + 1 + 9 + 6 + 3


def test_released_code_variants():
    student, teacher = _pair()
    images, labels = _batch()
    paper = ResidualDistillation(student, teacher, fd_lambda=0.001)
    paper.set_eta(0.8)
    paper.set_train(False)
    student.set_train(False)
    loss, _, (ce, mixed_ce, fd) = paper(images, labels)
    ce, mixed_ce, fd = (float(t.asnumpy()) for t in (ce, mixed_ce, fd))
    assert mixed_ce > 0 and fd > 0
    assert float(loss.asnumpy()) == pytest.approx(ce + 0.8 * mixed_ce + 0.001 * fd, rel=1e-5)

    # "ta": the mixed paths are computed (and logged) but carry no gradient
    ta = ResidualDistillation(student, teacher, fd_lambda=0.001, variant="ta")
    ta.connector.conv.weight.set_data(paper.connector.conv.weight.value())
    ta.set_train(False)
    student.set_train(False)
    ta_loss, _, (_, ta_mixed, _) = ta(images, labels)
    assert float(ta_loss.asnumpy()) == pytest.approx(ce + 0.001 * fd, rel=1e-5)
    assert float(ta_mixed.asnumpy()) == pytest.approx(mixed_ce, rel=1e-5)
    fd_only = ResidualDistillation(student, teacher, injection_points=(), fd_lambda=0.001)
    fd_only.connector.conv.weight.set_data(paper.connector.conv.weight.value())
    fd_only.set_train(False)
    student.set_train(False)
    expected = _student_grads(fd_only, student, images, labels)
    for name, g in _student_grads(ta, student, images, labels).items():
        np.testing.assert_allclose(g, expected[name], rtol=1e-5, atol=1e-7, err_msg=name)

    # "joint" with lambda = 0: 1/4 * (eta * sum CE(z_k) + CE(z_S))
    joint = ResidualDistillation(student, teacher, fd_lambda=0.0, variant="joint")
    joint.set_eta(0.8)
    joint.set_train(False)
    student.set_train(False)
    assert float(joint(images, labels)[0].asnumpy()) == pytest.approx(0.25 * (0.8 * mixed_ce + ce), rel=1e-5)

    # "joint" with lambda > 0: each mixed path's feature passes a connector of its own before its D_k
    joint_fd = ResidualDistillation(student, teacher, fd_lambda=0.001, variant="joint")
    assert len(joint_fd.path_connectors) == len(joint_fd.injection_points) == 2
    assert {n.split(".")[0] for n in joint_fd.extra_state()} == {"connector", "path_connectors"}
    joint_fd.set_eta(0.8)
    joint_fd.set_train(False)
    student.set_train(False)
    loss, _, (ce_j, mixed_j, fd_j) = joint_fd(images, labels)
    stage_outputs, _ = student.stage_outputs_and_preact(images)
    _, teacher_preact = teacher.stage_outputs_and_preact(images)
    mixed_fd = sum(float(partial_l2(joint_fd.path_connectors[i](teacher.preact_from_stage(stage_outputs[k - 1], k)),
                                    teacher_preact, joint_fd.margin).asnumpy())
                   for i, k in enumerate(joint_fd.injection_points))
    ce_j, mixed_j, fd_j = (float(t.asnumpy()) for t in (ce_j, mixed_j, fd_j))
    expected = 0.25 * (0.8 * mixed_j + ce_j) + 0.25 * 0.001 * (0.8 * mixed_fd + fd_j)
    assert float(loss.asnumpy()) == pytest.approx(expected, rel=1e-5)


def test_make_objective_builds_each_procedure_and_only_rd_has_an_eta_schedule():
    from resdist.distill.builder import make_objective
    from resdist.distill.objective import Objective

    student, teacher = create_model("plain20", num_classes=10), create_model("resnet20", num_classes=10)
    built = {p: make_objective(p, student, teacher, eta_min=0.5, eta_epochs=4)
             for p in ("plain", "kd", "fd", "rd")}
    assert all(isinstance(o, Objective) and o.deployable is student for o in built.values())
    assert [built[p].term_names for p in ("plain", "kd", "rd")] == [("ce",), ("ce", "kd"), ("ce", "mixed_ce", "fd")]
    assert built["fd"].injection_points == () and built["rd"].injection_points == (1, 2)
    assert built["fd"].start_epoch(0) == {} and built["kd"].start_epoch(0) == {}  # no mixed paths: no eta
    assert built["rd"].start_epoch(2) == {"eta": pytest.approx(0.75)}
    assert float(built["rd"].eta.asnumpy()) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="procedure kd needs a teacher"):
        make_objective("kd", student)
    with pytest.raises(ValueError, match="unknown procedure 'distil'"):
        make_objective("distil", student, teacher)


@pytest.mark.slow
def test_a_dirac_rd_student_trains_exports_plain_and_scores_the_same_everywhere(made_cifar10, tmp_path):
    """The Dirac RD smoke run the converged rows rely on: one short epoch on CIFAR-10 files, then export. The
    exported graph has no feature-map addition and no BatchNorm; its logits are the training network's (Dirac
    convolutions, eval mode); eval.py gives one top-1 from the checkpoint, the MindIR and the ONNX file; the
    run's optimizer spares alpha and beta from weight decay and decays every convolution weight."""
    import eval as eval_script
    import export as export_script
    import train as train_script
    from resdist.config import parse_args
    from resdist.deploy.exported import graph_ops, load_exported
    from resdist.train.trainer import check_inputs, setup_run

    teacher = str(tmp_path / "teacher.ckpt")
    ckpt_io.save(teacher, ckpt_io.network_params(_pair(depth=8)[1]), ckpt_io.network_identity("resnet8"))
    data = ["--dataset", "cifar10", "--data_path", made_cifar10, "--val_split", "0.01", "--batch_size", "50"]
    out = str(tmp_path / "dirac_rd")
    argv = data + ["--arch", "plain8", "--procedure", "rd", "--teacher_ckpt", teacher, "--dirac", "true",
                   "--train_subset", "400", "--epochs", "1", "--lr", "0.05", "--log_interval", "4",
                   "--output_dir", out]
    assert train_script.main(argv) == 0

    cfg, _ = parse_args(argv[:-2] + ["--output_dir", str(tmp_path / "inspect")], "train", "")
    check_inputs(cfg)
    run = setup_run(cfg, 0, 1)
    decay = {p.name: float(wd) for p, wd in zip(run.optimizer.parameters, run.optimizer.weight_decay)}
    scales = [n for n in decay if n.endswith(("dirac_alpha", "dirac_beta"))]
    assert len(scales) == 2 * 6 and all(decay[n] == 0.0 for n in scales)
    assert all(decay[n] == pytest.approx(5e-4) for n in decay if n.endswith("conv1.weight"))

    student = apply_dirac(create_model("plain8", num_classes=10))
    ckpt_io.load_network(student, ckpt_io.read(os.path.join(out, "last.ckpt")), arch="plain8",
                         expected={"arch": "plain8", "plain_variant": "full", "procedure": "rd"})
    student.set_train(False)
    images = np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32)
    ckpt = os.path.join(out, "final.ckpt")
    common = data[:-2] + ["--arch", "plain8", "--batch_size", "100"]
    scores = {}
    for fmt, suffix, flag, (conv, bn, add) in (("ONNX", ".onnx", "--onnx", ("Conv", "BatchNormalization", "Add")),
                                               ("MINDIR", ".mindir", "--mindir", ("Conv2D", "BatchNorm", "Add"))):
        base = str(tmp_path / f"student_{fmt}")
        assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", base,
                                   "--file_format", fmt, "--dataset", "cifar10"]) == 0
        graph = graph_ops(base + suffix)
        assert graph.count(conv) == 1 + 6 and graph.count(bn) == 0 and graph.count(add) == 0
        np.testing.assert_allclose(load_exported(base + suffix).predict(images),
                                   student(ms.Tensor(images)).asnumpy(), rtol=1e-4, atol=1e-4)
        result = str(tmp_path / f"{fmt}.json")
        assert eval_script.main(common + [flag, base + suffix, "--output_json", result]) == 0
        scores[fmt] = json.load(open(result))["top1"]
    result = str(tmp_path / "ckpt.json")
    assert eval_script.main(common + ["--ckpt_file", ckpt, "--output_json", result]) == 0
    scores["ckpt"] = json.load(open(result))["top1"]
    assert scores["ONNX"] == scores["MINDIR"] == scores["ckpt"]
