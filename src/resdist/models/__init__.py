"""Networks: ``create_model(name, num_classes=..., stem=..., plain_variant=...)`` and ``list_models()``."""
from .registry import create_model, is_model, list_models, register_model
from .resnet import PLAIN_VARIANTS, STEMS, ResNet, is_cifar_family, teacher_of

__all__ = ["create_model", "is_model", "list_models", "register_model", "ResNet", "PLAIN_VARIANTS", "STEMS",
           "is_cifar_family", "teacher_of"]
