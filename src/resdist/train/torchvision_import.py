"""Teachers from torchvision: a ResNet-18/34/50 state dict (``resnet50-0676ba61.pth``, ...) as a checkpoint of this
project's ``resnetN`` (ImageNet stem, 1000 classes), so RD can start from the pretrained ResNets everybody has.

The architectures are the same (ResNet v1.5: stride on the bottleneck's 3x3 conv; max-pool padded by one pixel on
every side), so the conversion is a renaming:

  conv1 / bn1                    -> stem.conv / stem.bn
  layer{i}.{j}.conv{k} / bn{k}   -> stages.{i-1}.{j}.conv{k} / bn{k}
  layer{i}.{j}.downsample.0 / .1 -> stages.{i-1}.{j}.downsample.conv / .bn
  fc                             -> fc
  BatchNorm weight, bias, running_mean, running_var -> gamma, beta, moving_mean, moving_variance

``.pth`` files are read with ``torch.load(..., weights_only=True)``: tensors only, no code from a downloaded file
runs. torch is needed for ``.pth`` files alone; ``.npz`` files (the same names) need only numpy.
"""
import os
import re
import zipfile

import numpy as np

from ..checkpoint import CheckpointError

BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
ARCHS = ("resnet18", "resnet34", "resnet50")


def rename(name):
    """This project's parameter name for a torchvision ResNet state-dict key (None: not a parameter here)."""
    if name.endswith("num_batches_tracked"):
        return None
    parts = name.split(".")
    if parts[0] == "conv1" and len(parts) == 2:
        return f"stem.conv.{parts[1]}"
    if parts[0] == "bn1" and len(parts) == 2:
        return f"stem.bn.{BN_NAMES[parts[1]]}"
    if parts[0] == "fc":
        return name
    found = re.fullmatch(r"layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.[01])\.(\w+)", name)
    if not found:
        raise CheckpointError(f"'{name}' is not a torchvision ResNet parameter name")
    stage, block, layer, field = found.groups()
    if layer.startswith("downsample"):
        layer = "downsample.conv" if layer.endswith("0") else "downsample.bn"
    is_bn = layer.startswith("bn") or layer.endswith(".bn")
    return f"stages.{int(stage) - 1}.{block}.{layer}.{BN_NAMES.get(field, field) if is_bn else field}"


def read_state_dict(path):
    """{name: numpy array} from a torchvision ``.pth`` (tensors only) or an ``.npz`` of the same names."""
    if not os.path.isfile(path):
        raise CheckpointError(f"torchvision weights {path} do not exist")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:  # never unpickle a downloaded file
                return _numeric(path, {k: data[k] for k in data.files})
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:  # object (pickled) arrays, not a zip
            raise CheckpointError(f"{path} cannot be read as an .npz of numeric arrays ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200] if str(exc) else 'corrupt'})") from None
    try:
        import torch
    except ImportError:
        raise CheckpointError("reading a .pth file needs PyTorch (pip install torch); or save the state dict as "
                              ".npz with numpy and convert that") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for corrupt or code-carrying files
        raise CheckpointError(f"{path} cannot be read as tensors only ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: {', '.join(map(str, not_tensors[:3]))} are not tensors; a state dict holds "
                              f"tensors only")
    return _numeric(path, {k.replace("module.", "", 1) if k.startswith("module.") else k: v.detach().cpu().numpy()
                           for k, v in state.items()})


def _numeric(path, state):
    """``state``, refused if an entry is not a numeric array (text, objects)."""
    bad = [f"{k} ({v.dtype})" for k, v in state.items() if v.dtype.kind not in "fiub"]
    if bad:
        raise CheckpointError(f"{path}: {', '.join(bad[:3])} are not numeric arrays; a state dict holds numbers only")
    return state


def convert(state, arch):
    """A network ``arch`` (ImageNet stem, classes from the state dict) loaded with a torchvision state dict.
    Every parameter of the network must be matched, with its shape."""
    from ..models import create_model

    if arch not in ARCHS:
        raise CheckpointError(f"torchvision conversion covers {', '.join(ARCHS)}, not {arch}")
    if "fc.weight" not in state or np.ndim(state["fc.weight"]) != 2:
        raise CheckpointError("not a torchvision ResNet state dict: no fc.weight of shape (classes, features)")
    renamed = {}
    for key, value in state.items():
        new = rename(key)
        if new is not None:
            renamed[new] = np.asarray(value, np.float32)
    net = create_model(arch, num_classes=int(state["fc.weight"].shape[0]), stem="imagenet")
    params = dict(net.parameters_and_names())
    missing = sorted(set(params) - set(renamed))
    extra = sorted(set(renamed) - set(params))
    wrong = [f"{n} {renamed[n].shape} vs {tuple(params[n].shape)}" for n in params
             if n in renamed and renamed[n].shape != tuple(params[n].shape)]
    if missing or extra or wrong:
        raise CheckpointError(f"the state dict does not fit {arch}: missing {missing[:3]}, unexpected {extra[:3]}, "
                              f"shapes {wrong[:3]} (is it a torchvision {arch}?)")
    import mindspore as ms

    for name, param in params.items():
        param.set_data(ms.Tensor(renamed[name]))
    return net
