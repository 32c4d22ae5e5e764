"""Images for INT8 quantization: calibration images from the training split and held-out check images from the
validation split, both with the evaluation transform (preprocessed exactly as at inference). Used by export.py's
post-training quantization and by quantization-aware training, which must measure the same ranges."""
import numpy as np

from ..errors import ConfigError
from .datasets import DatasetError, checked, create_dataset, dataset_num_classes, native_image_size


def calibration_images(dataset, data_path, shape, num_classes, calib_size, val_split="auto",
                       num_parallel_workers=2):
    """``calib_size`` images of the data set's training split (the evaluation transform, so preprocessed exactly
    as at inference), as one float32 NCHW array, checked against the model's input ``shape`` and classes."""
    what = f"calibration data ({dataset} {data_path or '(generated)'})"
    height, width = shape[2], shape[3]
    native = native_image_size(dataset)
    if native and (height, width) != (native, native):
        raise ConfigError(f"{what}: the model takes {height}x{width} images but {dataset} images are "
                          f"{native}x{native}; calibrate with images of the model's own data set")
    if height != width:
        raise ConfigError(f"the model takes {height}x{width} images; calibration resizes to square images only")
    try:
        classes = dataset_num_classes(dataset, data_path, num_classes)
        if classes != num_classes:
            raise ConfigError(f"{what} has {classes} classes but the model has {num_classes}; "
                              f"calibrate with the data set the model was trained on")
        data, info = create_dataset(dataset, data_path, "calib", 64, val_split=val_split, image_size=height,
                                    num_parallel_workers=num_parallel_workers, num_classes=num_classes,
                                    calib_size=calib_size)
        images = np.concatenate([b[0] for b in checked(data.create_tuple_iterator(num_epochs=1, output_numpy=True),
                                                       what)])
    except DatasetError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    return images.astype(np.float32), info["split"]


def held_out_images(dataset, data_path, shape, count, val_split="auto", num_parallel_workers=2):
    """The first ``count`` images of the data set's validation split (never calibration images: those come from
    the training split), with their labels and the split's description: where an INT8 model is checked, so that
    its check is not flattered by the very images its ranges were fitted to."""
    what = f"held-out check images ({dataset} {data_path or '(generated)'})"
    try:
        data, info = create_dataset(dataset, data_path, "val", 64, val_split=val_split, image_size=shape[2],
                                    num_parallel_workers=num_parallel_workers)
        images, labels = [], []
        for batch_images, batch_labels in checked(data.create_tuple_iterator(num_epochs=1, output_numpy=True),
                                                  what):
            images.append(batch_images)
            labels.append(batch_labels)
            if sum(len(b) for b in images) >= count:
                break
    except DatasetError as exc:
        raise ConfigError(f"{what}: {exc}; the INT8 model is checked on held-out images: pass a --val_split that "
                          f"has some") from None
    images, labels = np.concatenate(images)[:count], np.concatenate(labels)[:count]
    return images.astype(np.float32), labels, f"{len(images)} images of the {info['split']}"
