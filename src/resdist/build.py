"""Glue between a Config and the library: networks and data sets built the same way by train and eval."""
from .checkpoint import CheckpointError, classifier_classes, load_network, meta_value, network_identity
from .data import create_dataset, native_image_size
from .models import create_model, model_info


def resolve_stem(cfg):
    if cfg.stem != "auto":
        return cfg.stem
    return "cifar" if native_image_size(cfg.dataset) == 32 else "imagenet"


def network_options(cfg, arch):
    """The config's stem and plain variant, where ``arch`` has them (the registry says: CIFAR-family networks
    have one stem; only plain networks have a plain variant)."""
    info = model_info(arch)
    options = info.stem_options(resolve_stem(cfg))
    if not info.residual:
        options["plain_variant"] = cfg.plain_variant
    return options


def build_network(cfg, arch, num_classes):
    """``create_model`` with the config's stem and plain variant."""
    return create_model(arch, num_classes=num_classes, **network_options(cfg, arch))


def identity(cfg, arch):
    """The network record a checkpoint of ``arch`` built from ``cfg`` carries (arch, plain variant, stem)."""
    return network_identity(arch, **network_options(cfg, arch))


def network_from_record(state, path, what="checkpoint"):
    """(arch, network in evaluation mode) of a checkpoint train.py saved, built from the checkpoint's own record
    (arch, plain variant, stem; classes from its classifier) and loaded: a Dirac run's training state folds into
    the plain network it deploys as. For tools that take a checkpoint and nothing else."""
    arch = meta_value(state, "arch")
    if not isinstance(arch, str):
        raise CheckpointError(f"{what} {path} records no network (arch): pass a checkpoint train.py saved")
    options = {key: meta_value(state, key) for key in ("plain_variant", "stem")
               if isinstance(meta_value(state, key), str)}
    net = create_model(arch, num_classes=classifier_classes(state, path, what), **options)
    load_network(net, state, what, path, arch)
    net.set_train(False)
    return arch, net


def build_dataset(cfg, split, rank=0, group_size=1, batch_size=None):
    return create_dataset(
        cfg.dataset, cfg.data_path, split, batch_size or cfg.batch_size, val_split=cfg.val_split,
        image_size=cfg.image_size, num_parallel_workers=cfg.num_parallel_workers, rank=rank,
        group_size=group_size, synthetic_train_size=cfg.synthetic_train_size,
        synthetic_val_size=cfg.synthetic_val_size, num_classes=cfg.num_classes or 10,
        train_subset=cfg.train_subset,
        # training-only keys (an eval config has none): create_dataset's defaults are the options' defaults
        **{key: cfg[key] for key in ("hflip", "crop_scale_min") if key in cfg})
