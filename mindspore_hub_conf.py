"""MindSpore Hub entry point of this repository (the Hub loader imports this file and calls ``create_network``).

    create_network("plain20", num_classes=10)                          # an untrained plain-20
    create_network("plain20_rd_cifar10", ckpt_file="plain20_rd_cifar10.ckpt")   # the published student, loaded
    create_network("resnet50", num_classes=1000, stem="imagenet")

Names: every network of ``resdist.models.list_models()`` (teachers resnetN, students plainN), and the names of
the published models (``PUBLISHED``). Keyword arguments: ``num_classes`` (default 10 for the CIFAR family and the
published CIFAR-10 models, else 1000), ``stem``, ``plain_variant``, and ``ckpt_file`` to load weights (the
checkpoint's recorded network must match).
"""
import os
import sys

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:  # a Hub download is a plain folder, not an installed package
    sys.path.insert(0, _SRC)

# published model name -> (network, its create_model arguments)
PUBLISHED = {
    "plain20_rd_cifar10": ("plain20", {"num_classes": 10, "plain_variant": "full"}),
}


def create_network(name, *args, **kwargs):
    """An ``nn.Cell`` for ``name`` (see the module docstring); raises ValueError for an unknown name."""
    from resdist import runtime

    runtime.prefer_fast_cpu_kernels()  # no effect if MindSpore was imported first; harmless then
    from resdist import checkpoint as ckpt_io
    from resdist.models import create_model, is_model, list_models, model_info

    if args:
        raise TypeError("create_network takes keyword arguments only (num_classes, stem, plain_variant, ckpt_file)")
    ckpt_file = kwargs.pop("ckpt_file", None)
    arch, defaults = PUBLISHED.get(name, (name, {}))
    if not is_model(arch):
        raise ValueError(f"unknown network '{name}'; known: {', '.join(list(PUBLISHED) + list_models())}")
    options = {**defaults, **kwargs}
    residual = model_info(arch).residual
    if residual:
        options.pop("plain_variant", None)
    net = create_model(arch, **options)
    if ckpt_file:  # the checkpoint's record must name this network, its stem included where it has a choice
        stem = model_info(arch).stem_options(options.get("stem", "imagenet")).get("stem")  # create_model's default
        expected = ckpt_io.network_identity(arch, None if residual else options.get("plain_variant", "full"), stem)
        ckpt_io.load_network(net, ckpt_io.read(ckpt_file), "checkpoint", ckpt_file, arch, expected)
    net.set_train(False)
    return net
