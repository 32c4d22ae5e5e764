"""Model registry: ``register_model`` records a factory with the facts about the network it builds (residual or
plain, family, its teacher); ``create_model(name, ...)`` builds it by name and ``model_info(name)`` tells what it
is. Code elsewhere asks the registry, never the name's spelling."""
from dataclasses import dataclass

_MODELS = {}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    residual: bool            # has shortcuts (a teacher) or none (a plain student)
    family: str               # "cifar": He et al.'s 3-stage CIFAR networks, one stem; "imagenet": a stem choice
    teacher: str = None       # plain networks: the residual network RD trains them from
    default_num_classes: int = 1000

    @property
    def stems(self):
        return ("cifar",) if self.family == "cifar" else ("imagenet", "cifar")

    def stem_options(self, stem):
        """``create_model``'s stem argument: ``{"stem": stem}`` where this network has a choice of stems
        (ResNet-18/34/50 and their plain twins), else ``{}`` (a CIFAR-family network has one)."""
        return {"stem": stem} if len(self.stems) > 1 else {}


def register_model(fn=None, *, residual=True, family="imagenet", teacher=None, default_num_classes=1000):
    """Register ``fn`` (a factory ``fn(num_classes=..., **kwargs) -> nn.Cell``) under its ``__name__``; usable
    as ``@register_model`` or ``register_model(fn, residual=False, teacher="resnet20", ...)``."""
    def add(fn):
        if fn.__name__ in _MODELS:
            raise ValueError(f"model '{fn.__name__}' is registered twice")
        if teacher is not None and residual:
            raise ValueError(f"model '{fn.__name__}': only a plain network has a teacher")
        _MODELS[fn.__name__] = (fn, ModelInfo(fn.__name__, residual, family, teacher, default_num_classes))
        return fn
    return add if fn is None else add(fn)


def list_models():
    return sorted(_MODELS)


def is_model(name):
    return name in _MODELS


def model_info(name):
    """What the registered network ``name`` is (``ModelInfo``)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return _MODELS[name][1]


def teacher_of(name):
    """The residual network the plain network ``name`` is trained from (None for a residual network)."""
    return model_info(name).teacher


def plain_twin(name):
    """For a residual network, the plain network it teaches (None if none is registered); for a plain one, its
    teacher."""
    info = model_info(name)
    if not info.residual:
        return info.teacher
    return next((n for n, (_, i) in sorted(_MODELS.items()) if i.teacher == name), None)


def create_model(name, num_classes=None, **kwargs):
    """Build a registered network, e.g. ``create_model("plain20", num_classes=10)`` (default: the family's
    usual number of classes, 10 for the CIFAR family, 1000 for the ImageNet one)."""
    info = model_info(name)
    return _MODELS[name][0](num_classes=info.default_num_classes if num_classes is None else num_classes, **kwargs)
