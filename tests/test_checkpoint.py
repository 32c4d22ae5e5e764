import os

import numpy as np
import pytest

from resdist import checkpoint as ckpt_io
from resdist.models import create_model


def test_round_trip_under_relative_names_whatever_the_parent(tmp_path):
    from mindspore import nn

    class Parent(nn.Cell):
        def __init__(self, net):
            super().__init__()
            self.student = net

    net = create_model("plain20", num_classes=10)
    Parent(net)  # prefixes the parameter names with "student."
    path = str(tmp_path / "a.ckpt")
    ckpt_io.save(path, ckpt_io.network_params(net), {"arch": "plain20", "epoch": 3})
    state = ckpt_io.read(path)
    assert "stem.conv.weight" in state and ckpt_io.meta_value(state, "epoch") == 3
    fresh = create_model("plain20", num_classes=10)
    ckpt_io.load_network(fresh, state, path=path, arch="plain20")
    for (name, a), (_, b) in zip(net.parameters_and_names(), fresh.parameters_and_names()):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=name)
    assert os.listdir(tmp_path) == ["a.ckpt"]  # no temporary file left behind


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ckpt_io.CheckpointError, match="does not exist"):
        ckpt_io.read(str(tmp_path / "none.ckpt"))
    path = tmp_path / "bad.ckpt"
    ckpt_io.save(str(path), ckpt_io.network_params(create_model("resnet20", num_classes=10)))
    data = path.read_bytes()
    os.chmod(path, 0o600)
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ckpt_io.CheckpointError, match="cannot be read: it is corrupt, truncated"):
        ckpt_io.read(str(path))


def test_mismatched_architecture_names_the_parameters(tmp_path):
    params = ckpt_io.network_params(create_model("resnet20", num_classes=10))
    path, bare = str(tmp_path / "r20.ckpt"), str(tmp_path / "r20_bare.ckpt")
    ckpt_io.save(path, params, {"arch": "resnet20"})
    ckpt_io.save(bare, params)  # no record of its network: names and shapes decide
    with pytest.raises(ckpt_io.CheckpointError, match=r"saved from arch 'resnet20', not 'plain20'"):
        ckpt_io.load_network(create_model("plain20", num_classes=10), ckpt_io.read(path), path=path, arch="plain20")
    state = ckpt_io.read(bare)
    with pytest.raises(ckpt_io.CheckpointError, match=r"not in the network: stages.1.0.downsample"):
        ckpt_io.load_network(create_model("plain20", num_classes=10), state, path=bare, arch="plain20")
    with pytest.raises(ckpt_io.CheckpointError, match=r"shape mismatch .*fc.bias \(10,\) vs \(100,\)"):
        ckpt_io.load_network(create_model("resnet20", num_classes=100), state, path=bare, arch="resnet20")
    with pytest.raises(ckpt_io.CheckpointError,
                       match=r"missing from the checkpoint: stages.0.3.bn1.beta.* and 55 more"):
        ckpt_io.load_network(create_model("resnet32", num_classes=10), state, path=bare, arch="resnet32")


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    import mindspore as ms

    path = str(tmp_path / "last.ckpt")
    net = create_model("resnet20", num_classes=10)
    ckpt_io.save(path, ckpt_io.network_params(net), {"epoch": 1})
    before = open(path, "rb").read()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ms, "save_checkpoint", crash)
    with pytest.raises(ckpt_io.CheckpointError,
                       match=r"could not write checkpoint .*disk full.*previous version is kept"):
        ckpt_io.save(path, ckpt_io.network_params(net), {"epoch": 2})
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_manager_keeps_last_n_epoch_files(tmp_path):
    params = ckpt_io.network_params(create_model("resnet20", num_classes=10))
    manager = ckpt_io.CheckpointManager(str(tmp_path), keep_max=2)
    for epoch, best in [(1, True), (2, False), (3, True)]:
        manager.save_epoch(epoch, params, params, {"epoch": epoch}, best)
    manager.save_epoch(4, params, params, {"epoch": 4}, False, is_final=True)
    assert sorted(os.listdir(tmp_path)) == ["best.ckpt", "epoch_0003.ckpt", "epoch_0004.ckpt", "final.ckpt",
                                            "last.ckpt"]
    assert ckpt_io.meta_value(ckpt_io.read(manager.final), "epoch") == 4
    assert ckpt_io.meta_value(ckpt_io.read(manager.best), "epoch") == 3
    assert ckpt_io.meta_value(ckpt_io.read(manager.last), "epoch") == 4


def test_sgd_stat_is_rebuilt_from_the_step_counter_and_read_where_an_older_checkpoint_stored_it(tmp_path):
    """MindSpore's SGD holds a per-parameter ``stat`` of 1 before its first step and 0 after: not stored, rebuilt."""
    import mindspore as ms
    from mindspore import nn

    def sgd_after(steps):
        net = nn.Dense(4, 3)
        opt = nn.SGD(net.trainable_params(), learning_rate=0.1, momentum=0.9, nesterov=True)
        grad_fn = ms.value_and_grad(lambda x: ms.ops.square(net(x)).sum(), None, opt.parameters)
        for _ in range(steps):
            opt(grad_fn(ms.Tensor(np.ones((2, 4), np.float32)))[1])
        return net, opt

    def stats(opt):
        return {p.name: p.asnumpy() for p in opt.get_parameters() if p.name.startswith("stat.")}

    for steps in (0, 1, 3):
        net, opt = sgd_after(steps)
        assert len(stats(opt)) == 2 and all((v == (1.0 if steps == 0 else 0.0)).all() for v in stats(opt).values())
        state = ckpt_io.optimizer_params(opt, net)
        assert "global_step" in state and not [n for n in state if n.startswith("stat.")]
        path = str(tmp_path / f"sgd{steps}.ckpt")
        ckpt_io.save(path, state)
        fresh_net, fresh = sgd_after(0)
        for p in fresh.get_parameters():
            if p.name.startswith("stat."):
                p.set_data(ms.Tensor(np.full(p.shape, 7.0, np.float32)))  # neither 0 nor 1: must be rebuilt
        ckpt_io.load_optimizer(fresh, fresh_net, ckpt_io.read(path), path)
        assert all(np.array_equal(v, stats(opt)[n]) for n, v in stats(fresh).items())
    older = str(tmp_path / "older.ckpt")  # a checkpoint from before: its stored stat is read
    net, opt = sgd_after(1)
    ckpt_io.save(older, {**ckpt_io.optimizer_params(opt, net), **{p.name: p for p in opt.get_parameters()
                                                                  if p.name.startswith("stat.")}})
    fresh_net, fresh = sgd_after(0)
    ckpt_io.load_optimizer(fresh, fresh_net, ckpt_io.read(older), older)
    assert all((v == 0.0).all() for v in stats(fresh).values())


def test_network_from_record_builds_the_recorded_network_with_its_classes_and_folds_a_dirac_state(tmp_path):
    import mindspore as ms

    from resdist.build import network_from_record
    from resdist.models.dirac import apply_dirac

    dirac = apply_dirac(create_model("plain8", num_classes=7))
    dirac.set_train(False)
    path = str(tmp_path / "dirac.ckpt")
    ckpt_io.save(path, ckpt_io.network_params(dirac), ckpt_io.network_identity("plain8", "full"))
    arch, net = network_from_record(ckpt_io.read(path), path)
    assert arch == "plain8" and not net.training
    images = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    out = net(images).asnumpy()
    assert out.shape == (2, 7)  # classes from the classifier, not a default
    np.testing.assert_allclose(out, dirac(images).asnumpy(), rtol=1e-4, atol=1e-5)

    anonymous, headless = str(tmp_path / "anonymous.ckpt"), str(tmp_path / "headless.ckpt")
    params = ckpt_io.network_params(create_model("plain8", num_classes=10))
    ckpt_io.save(anonymous, params)
    ckpt_io.save(headless, {k: v for k, v in params.items() if not k.startswith("fc.")},
                 ckpt_io.network_identity("plain8", "full"))
    with pytest.raises(ckpt_io.CheckpointError, match="records no network"):
        network_from_record(ckpt_io.read(anonymous), anonymous)
    with pytest.raises(ckpt_io.CheckpointError, match=r"has no classifier \(fc.bias\)"):
        network_from_record(ckpt_io.read(headless), headless)
