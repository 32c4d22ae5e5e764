"""MindSpore Hub: the entry file as the Hub loader uses it, and the model card against the Hub validator's rules."""
import importlib.util
import os

import numpy as np
import pytest

from conftest import ROOT
from resdist import checkpoint as ckpt_io
from resdist.models import list_models


def _hub_conf():
    spec = importlib.util.spec_from_file_location("mindspore_hub_conf", os.path.join(ROOT, "mindspore_hub_conf.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", list_models() + ["plain20_rd_cifar10"])
def test_every_network_is_created_by_name(name):
    import mindspore as ms

    net = _hub_conf().create_network(name)
    assert isinstance(net, ms.nn.Cell) and not net.training
    classes = 10 if name.endswith(("20", "32", "44", "56", "110", "cifar10")) else 1000
    assert net.fc.bias.shape == (classes,)


def test_unknown_name_and_checkpoint_loading(tmp_path):
    hub = _hub_conf()
    with pytest.raises(ValueError, match="unknown network 'plain21'; known: plain20_rd_cifar10"):
        hub.create_network("plain21")
    source = hub.create_network("plain20")
    for _, p in source.parameters_and_names():
        p.set_data(p.value() + 0.5)
    path = str(tmp_path / "p20.ckpt")
    ckpt_io.save(path, ckpt_io.network_params(source), ckpt_io.network_identity("plain20", "full"))
    loaded = hub.create_network("plain20_rd_cifar10", ckpt_file=path)
    np.testing.assert_array_equal(loaded.fc.bias.asnumpy(), source.fc.bias.asnumpy())
    with pytest.raises(ckpt_io.CheckpointError, match="was saved from arch 'plain20', not 'resnet20'"):
        hub.create_network("resnet20", ckpt_file=path)
