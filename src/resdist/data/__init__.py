"""Data: CIFAR-10/100 binaries, image folders (ImageNet layout) and a synthetic set, as MindSpore dataset
pipelines with the training split, held-out validation split and augmentation the recipes name
(``datasets``); ``prepare`` turns downstream data sets (Caltech-101, MIT-67) into image folders."""
from .calibration import calibration_images, held_out_images
from .datasets import (
                       CIFAR10_RECORD,
                       DatasetError,
                       check_dataset,
                       checked,
                       create_dataset,
                       dataset_num_classes,
                       epoch_iterator,
                       epoch_seed,
                       guess_dataset,
                       native_image_size,
                       normalisation,
                       resolve_val_split,
)

__all__ = ["CIFAR10_RECORD", "DatasetError", "check_dataset", "checked", "create_dataset", "dataset_num_classes",
           "epoch_iterator", "epoch_seed", "guess_dataset", "native_image_size", "normalisation",
           "resolve_val_split", "calibration_images", "held_out_images"]
