"""Model registry: `register_model` decorates a factory, `create_model(name, ...)` builds it by name."""

_MODELS = {}


def register_model(fn):
    if fn.__name__ in _MODELS:
        raise ValueError(f"model '{fn.__name__}' is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models():
    return sorted(_MODELS)


def is_model(name):
    return name in _MODELS


def create_model(name, num_classes=1000, **kwargs):
    """Build a registered network, e.g. ``create_model("plain20", num_classes=10)``."""
    if name not in _MODELS:
        raise ValueError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return _MODELS[name](num_classes=num_classes, **kwargs)
