"""torchvision ResNet weights -> this project's teacher checkpoints."""
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from conftest import ROOT

from resdist import checkpoint as ckpt_io
from resdist.models import create_model
from resdist.train.torchvision_import import convert, rename

LAYOUT = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet50": ("bottleneck", (3, 4, 6, 3))}


def torchvision_state(arch, num_classes=1000, seed=0):
    """A torchvision-layout state dict (names and shapes as torchvision.models.resnetN) of random numpy arrays,
    written out here from torchvision's architecture, not derived from this project's names."""
    rng = np.random.default_rng(seed)
    kind, depths = LAYOUT[arch]
    state = {}

    def conv(name, out_ch, in_ch, k):
        state[f"{name}.weight"] = rng.normal(0, np.sqrt(2 / (k * k * out_ch)), (out_ch, in_ch, k, k))

    def bn(name, ch):
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, ch)
        state[f"{name}.bias"] = rng.normal(0, 0.1, ch)
        state[f"{name}.running_mean"] = rng.normal(0, 0.1, ch)
        state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, ch)
        state[f"{name}.num_batches_tracked"] = np.array(7)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    in_ch, expansion = 64, 4 if kind == "bottleneck" else 1
    for i, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512)), 1):
        for j in range(depth):
            p = f"layer{i}.{j}"
            if kind == "basic":
                conv(f"{p}.conv1", width, in_ch, 3), bn(f"{p}.bn1", width)
                conv(f"{p}.conv2", width, width, 3), bn(f"{p}.bn2", width)
            else:
                conv(f"{p}.conv1", width, in_ch, 1), bn(f"{p}.bn1", width)
                conv(f"{p}.conv2", width, width, 3), bn(f"{p}.bn2", width)
                conv(f"{p}.conv3", width * 4, width, 1), bn(f"{p}.bn3", width * 4)
            if j == 0 and (i > 1 or in_ch != width * expansion):
                conv(f"{p}.downsample.0", width * expansion, in_ch, 1), bn(f"{p}.downsample.1", width * expansion)
            in_ch = width * expansion
    state["fc.weight"] = rng.normal(0, 0.01, (num_classes, in_ch))
    state["fc.bias"] = rng.normal(0, 0.01, num_classes)
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in state.items()}


def test_names_map_onto_this_projects_resnet():
    assert rename("conv1.weight") == "stem.conv.weight"
    assert rename("bn1.running_var") == "stem.bn.moving_variance"
    assert rename("layer2.0.downsample.0.weight") == "stages.1.0.downsample.conv.weight"
    assert rename("layer4.1.bn2.weight") == "stages.3.1.bn2.gamma"
    assert rename("layer1.0.bn1.num_batches_tracked") is None


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_a_torchvision_layout_converts_with_every_value_in_place(arch):
    state = torchvision_state(arch, num_classes=10)
    net = convert(state, arch)
    params = dict(net.parameters_and_names())
    np.testing.assert_array_equal(params["stages.2.1.conv2.weight"].asnumpy(), state["layer3.1.conv2.weight"])
    np.testing.assert_array_equal(params["stem.bn.moving_mean"].asnumpy(), state["bn1.running_mean"])
    np.testing.assert_array_equal(params["fc.weight"].asnumpy(), state["fc.weight"])
    assert net.stem.pool is not None  # ImageNet stem


def test_a_wrong_state_dict_is_refused():
    state = torchvision_state("resnet18", num_classes=10)
    with pytest.raises(ckpt_io.CheckpointError, match="does not fit resnet50"):
        convert(state, "resnet50")
    del state["layer1.0.conv1.weight"]
    with pytest.raises(ckpt_io.CheckpointError, match="missing .*stages.0.0.conv1.weight"):
        convert(state, "resnet18")


def test_script_writes_a_teacher_checkpoint_from_npz(tmp_path):
    npz = tmp_path / "r18.npz"
    np.savez(npz, **torchvision_state("resnet18", num_classes=10))
    out = tmp_path / "r18.ckpt"
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "convert_torchvision.py"), "--weights", str(npz), "--arch",
           "resnet18", "--output", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resnet18, ImageNet stem, 10 classes" in result.stdout
    state = ckpt_io.read(str(out))
    teacher = create_model("resnet18", num_classes=10, stem="imagenet")
    ckpt_io.load_network(teacher, state, arch="resnet18", expected={"arch": "resnet18", "stem": "imagenet"})
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr


def _torch_resnet18_forward(torch, state, x):
    """torchvision's ResNet-18 forward, written with torch.nn.functional on the state dict (torchvision itself is
    not needed): 7x7/2 conv, BN, ReLU, 3x3/2 max-pool padded by 1 on every side, basic blocks, mean, fc."""
    F = torch.nn.functional
    t = {k: torch.tensor(v) for k, v in state.items()}

    def bn(x, name):
        return F.batch_norm(x, t[f"{name}.running_mean"], t[f"{name}.running_var"], t[f"{name}.weight"],
                            t[f"{name}.bias"], False, 0.0, 1e-5)

    x = F.max_pool2d(F.relu(bn(F.conv2d(x, t["conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1)
    for i in range(1, 5):
        for j in range(2):
            p, stride = f"layer{i}.{j}", 2 if (i > 1 and j == 0) else 1
            out = F.relu(bn(F.conv2d(x, t[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            out = bn(F.conv2d(out, t[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in t:
                x = bn(F.conv2d(x, t[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.relu(out + x)
    return F.linear(x.mean((2, 3)), t["fc.weight"], t["fc.bias"])


def test_converted_network_gives_pytorchs_logits(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the logits comparison needs it")
    state = torchvision_state("resnet18", num_classes=10)
    pth = tmp_path / "r18.pth"
    torch.save({k: torch.tensor(v) for k, v in state.items()}, pth)
    from resdist.train.torchvision_import import read_state_dict

    net = convert(read_state_dict(str(pth)), "resnet18")
    net.set_train(False)
    x = np.random.default_rng(2).standard_normal((2, 3, 65, 65)).astype(np.float32)  # odd size: pool padding shows
    expected = _torch_resnet18_forward(torch, state, torch.tensor(x)).numpy()
    np.testing.assert_allclose(net(ms.Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-4)


def test_a_pth_carrying_code_is_refused(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from resdist.train.torchvision_import import read_state_dict

    pth = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "hook": subprocess.Popen}, pth)  # a pickled callable
    with pytest.raises(ckpt_io.CheckpointError, match="cannot be read as tensors only"):
        read_state_dict(str(pth))


@pytest.mark.parametrize("case,message", [
    ("pickled", "cannot be read as an .npz of numeric arrays (ValueError: Object arrays cannot be loaded"),
    ("text", "fc.bias (<U5) are not numeric arrays"),
    ("scalar_fc", "no fc.weight of shape (classes, features)"),
    ("scalar_conv", "does not fit resnet18"),
    ("not_zip", "cannot be read as an .npz of numeric arrays"),
])
def test_a_bad_npz_is_one_line_and_writes_nothing(tmp_path, case, message):
    state = torchvision_state("resnet18", num_classes=10)
    npz = tmp_path / "weights.npz"
    if case == "pickled":
        state["fc.bias"] = np.array([{"code": "x"}], dtype=object)
    elif case == "text":
        state["fc.bias"] = np.array(["hello"] * 10)
    elif case == "scalar_fc":
        state["fc.weight"] = np.array(1.0, np.float32)
    elif case == "scalar_conv":
        state["conv1.weight"] = np.array(1.0, np.float32)
    if case == "not_zip":
        npz.write_bytes(b"not a zip file")
    else:
        np.savez(npz, **state)
    out = tmp_path / "out.ckpt"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert_torchvision.py"), "--weights",
                             str(npz), "--arch", "resnet18", "--output", str(out)], capture_output=True, text=True,
                            timeout=300)
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and err[-1].startswith("error: ") and message in err[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not out.exists()
