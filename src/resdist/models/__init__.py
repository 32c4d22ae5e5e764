"""Networks: ``create_model(name, num_classes=..., stem=..., plain_variant=...)``, ``list_models()``, and
``model_info(name)``: what a registered network is (residual or plain, family, its teacher)."""
from .registry import ModelInfo, create_model, is_model, list_models, model_info, plain_twin, register_model, teacher_of
from .resnet import PLAIN_VARIANTS, STEMS, ResNet

__all__ = ["create_model", "is_model", "list_models", "model_info", "plain_twin", "register_model", "teacher_of",
           "ModelInfo", "ResNet", "PLAIN_VARIANTS", "STEMS"]
