"""Data pipelines on MindSpore's dataset engine: CIFAR-10/100 (official binary layout), ImageNet-style image
folders, and a generated synthetic set for demos and tests.

``create_dataset(name, data_path, split, batch_size, ...)`` returns ``(dataset, info)``; the dataset yields
``(image float32 NCHW, label int32)`` batches and ``info`` says how many classes and samples it has and which
split was used.

Splits: ``train`` (augmented, shuffled, sharded by rank) and ``val`` (plain eval transforms). Where does
``val`` come from? ``val_split``:
  auto          the official test split if present (CIFAR test file, image folder ``val/``), else a hold-out
  test          the official test split; an error if it is missing
  data_batch_N  CIFAR-10 only: hold out the N-th training file (10,000 images)
  0 < f < 1     hold out a fixed fraction f of the training set (same images whatever the seed)
  none          no validation; training uses everything
A held-out split is removed from the training set, so training never sees validation images.

Epochs: MindSpore's dataset engine reads its seed when an iterator is created, and a new iterator restarts the
pipeline, so iterating a dataset once per epoch with the same seed replays the same order and the same random
crops every epoch. ``epoch_iterator(dataset, seed, epoch)`` gives every epoch a seed of its own derived from
(seed, epoch): a new order and new augmentation each epoch, and the same data for the same epoch of any run
with that seed (what makes ``--resume`` reproduce the uninterrupted run).
"""
import os
import re

import numpy as np

from ..errors import UserError

CIFAR10_RECORD = 1 + 32 * 32 * 3
CIFAR100_RECORD = 2 + 32 * 32 * 3
CIFAR10_TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
DATASETS = ("cifar10", "cifar100", "imagefolder", "synthetic")

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HOLDOUT_SEED = 12345
SYNTHETIC_VAL_OFFSET = 10_000_000  # fixed: the validation images must not change with the training seed


class DatasetError(UserError, ValueError):
    """A data set is missing, malformed or inconsistent; the message names the path and the fix."""


def native_image_size(name):
    """Input resolution a data set comes in (None: chosen by ``image_size``)."""
    return 32 if name in ("cifar10", "cifar100", "synthetic") else None


def _check_file(path, record, records_expected, what, label_limits):
    """Size of an official binary file, and its label bytes: ``label_limits`` = number of classes of each label
    byte at the start of a record (CIFAR-100 has a coarse and a fine label)."""
    if not os.path.isfile(path):
        raise DatasetError(f"{what}: missing file {path}")
    size = os.path.getsize(path)
    if size != record * records_expected:
        raise DatasetError(
            f"{what}: {path} has {size} bytes, expected {record * records_expected} "
            f"({records_expected} records of {record} bytes); the file is truncated or not in the official "
            f"binary layout. Download the data set again.")
    records = np.fromfile(path, np.uint8).reshape(records_expected, record)
    for column, limit in enumerate(label_limits):
        bad = np.flatnonzero(records[:, column] >= limit)
        if bad.size:
            raise DatasetError(f"{what}: {path} record {bad[0]} has label {records[bad[0], column]}, but labels "
                               f"go from 0 to {limit - 1} ({bad.size} such records); the file is corrupt or of "
                               f"another data set. Download the data set again.")


def _check_dir(path, what):
    if not path:
        raise DatasetError(f"{what}: no data_path given; pass --data_path DIR")
    if not os.path.isdir(path):
        raise DatasetError(f"{what}: data_path {path} is not a directory")


# --------------------------------------------------------------------------------------------------------------
# Sources: each returns (make(sampler) -> Dataset, number of images, whether an official test split exists)

def _cifar10(path, test):
    import mindspore.dataset as ds

    what = "CIFAR-10 (binary version: data_batch_1..5.bin, optional test_batch.bin)"
    _check_dir(path, what)
    if test:
        _check_file(os.path.join(path, "test_batch.bin"), CIFAR10_RECORD, 10000, what, (10,))
        return (lambda sampler: ds.Cifar10Dataset(path, usage="test", sampler=sampler)), 10000
    for f in CIFAR10_TRAIN_FILES:
        _check_file(os.path.join(path, f), CIFAR10_RECORD, 10000, what, (10,))
    return (lambda sampler: ds.Cifar10Dataset(path, usage="train", sampler=sampler)), 50000


def _cifar100(path, test):
    import mindspore.dataset as ds

    what = "CIFAR-100 (binary version: train.bin, optional test.bin)"
    _check_dir(path, what)
    fname, n, usage = ("test.bin", 10000, "test") if test else ("train.bin", 50000, "train")
    _check_file(os.path.join(path, fname), CIFAR100_RECORD, n, what, (20, 100))

    def make(sampler):
        data = ds.Cifar100Dataset(path, usage=usage, sampler=sampler)
        return data.project(["image", "fine_label"]).rename(["fine_label"], ["label"])
    return make, n


_SCANS = {}  # absolute root -> (the class folders' modification times, class counts): see _scan_image_folder


def _scan_image_folder(root):
    """Class name -> number of images, checking that every class folder has images. A run asks for it several
    times (checks, training and validation pipelines, the class list); listing every file again each time costs
    minutes on ImageNet's 1.28M files, so a listing is kept while no class folder's modification time (which
    adding, removing or renaming a file changes) has changed: the later asks list only the class folders."""
    if not os.path.isdir(root):
        raise DatasetError(f"image folder: {root} is not a directory (expected <class>/<image> folders)")
    with os.scandir(root) as entries:
        stamps = tuple(sorted((e.name, e.stat().st_mtime_ns) for e in entries if e.is_dir()))
    if not stamps:
        raise DatasetError(f"image folder: {root} has no class sub-folders (expected {root}/<class>/<image>.jpg)")
    key = os.path.abspath(root)
    if key in _SCANS and _SCANS[key][0] == stamps:
        return dict(_SCANS[key][1])
    counts = {}
    for c, _ in stamps:
        counts[c] = sum(1 for f in os.listdir(os.path.join(root, c)) if f.lower().endswith(IMAGE_EXTENSIONS))
        if counts[c] == 0:
            raise DatasetError(f"image folder: class folder {os.path.join(root, c)} has no images "
                               f"({', '.join(IMAGE_EXTENSIONS)})")
    _SCANS[key] = (stamps, counts)
    return dict(counts)


def image_folder_classes(path):
    return sorted(_scan_image_folder(os.path.join(path, "train")))


def _imagefolder(path, test):
    import mindspore.dataset as ds

    _check_dir(path, "image folder (train/<class>/*.jpg and optional val/<class>/*.jpg)")
    train_counts = _scan_image_folder(os.path.join(path, "train"))
    class_indexing = {c: i for i, c in enumerate(train_counts)}
    root, counts = os.path.join(path, "train"), train_counts
    if test:
        root = os.path.join(path, "val")
        counts = _scan_image_folder(root)
        if set(counts) != set(train_counts):
            only_train = sorted(set(train_counts) - set(counts))
            only_val = sorted(set(counts) - set(train_counts))
            raise DatasetError(f"image folder: classes differ between {path}/train and {root}: "
                               f"only in train: {only_train[:5]}, only in val: {only_val[:5]}")
    extensions = [e for ext in IMAGE_EXTENSIONS for e in (ext, ext.upper())]

    def make(sampler):
        return ds.ImageFolderDataset(root, sampler=sampler, extensions=extensions, class_indexing=class_indexing)
    return make, sum(counts.values())


class SyntheticImages:
    """Generated 32x32 images whose class is learnable: each class has a fixed blurry colour pattern, each
    image is that pattern under strong per-image noise. Deterministic per index; nothing is stored."""

    def __init__(self, num_samples, num_classes=10, offset=0):
        self.num_samples, self.num_classes, self.offset = num_samples, num_classes, offset
        rng = np.random.default_rng(2020)
        coarse = rng.uniform(0, 255, size=(num_classes, 4, 4, 3))
        self.templates = np.kron(coarse, np.ones((1, 8, 8, 1)))  # 32x32x3 low-frequency pattern per class

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        index = int(index) + self.offset
        label = index % self.num_classes
        noise = np.random.default_rng(index).uniform(0, 255, size=(32, 32, 3))
        image = 0.35 * self.templates[label] + 0.65 * noise
        return image.astype(np.uint8), np.array(label, np.int32)  # a 0-d array: numpy 2 refuses a scalar here


def _synthetic(num_train, num_val, num_classes, test):
    import mindspore.dataset as ds

    n = num_val if test else num_train
    # validation images come from a far index range: the same images whatever the training-set size
    source = SyntheticImages(n, num_classes, offset=SYNTHETIC_VAL_OFFSET if test else 0)

    def make(sampler):
        return ds.GeneratorDataset(source, column_names=["image", "label"], sampler=sampler,
                                   python_multiprocessing=False)
    return make, n


def _source(name, path, test, synthetic_train_size=2560, synthetic_val_size=512, num_classes=10):
    """(make(sampler) -> Dataset, number of images, number of classes), after checking the files."""
    if name == "cifar10":
        make, n = _cifar10(path, test)
    elif name == "cifar100":
        make, n = _cifar100(path, test)
    elif name == "imagefolder":
        make, n = _imagefolder(path, test)
    else:
        make, n = _synthetic(synthetic_train_size, synthetic_val_size, num_classes, test)
    return make, n, dataset_num_classes(name, path, num_classes)


def dataset_num_classes(name, data_path, synthetic_classes=10):
    if name == "imagefolder":
        return len(image_folder_classes(data_path))
    return {"cifar10": 10, "cifar100": 100}.get(name, synthetic_classes)


def check_dataset(name, data_path, val_split="auto"):
    """Check the files of a data set (and of its validation split) without building a pipeline."""
    val_split = resolve_val_split(name, data_path, val_split)
    _source(name, data_path, False)
    if val_split == "test":
        _source(name, data_path, True)
    return val_split


def _has_test_split(name, path):
    if name == "cifar10":
        return os.path.isfile(os.path.join(path, "test_batch.bin"))
    if name == "cifar100":
        return os.path.isfile(os.path.join(path, "test.bin"))
    if name == "imagefolder":
        return os.path.isdir(os.path.join(path, "val"))
    return name == "synthetic"


def guess_dataset(path):
    """The data set a folder looks like (for error messages), or None."""
    if os.path.isfile(os.path.join(path, "data_batch_1.bin")):
        return "cifar10"
    if os.path.isfile(os.path.join(path, "train.bin")):
        return "cifar100"
    if os.path.isdir(os.path.join(path, "train")):
        return "imagefolder"
    return None


def resolve_val_split(name, data_path, val_split):
    """Turn ``auto`` into a concrete choice; check the choice fits the data set."""
    val_split = str(val_split).strip()
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset '{name}'; choose one of {', '.join(DATASETS)}")
    if name == "synthetic":  # its validation images are generated apart from the training images
        if data_path:
            guess = guess_dataset(data_path)
            raise DatasetError(f"data_path {data_path} is given but dataset=synthetic generates its images and "
                               f"would ignore it; pass --dataset {guess or 'cifar10|cifar100|imagefolder'}"
                               + (f" (the folder looks like {guess})" if guess else ""))
        if val_split not in ("auto", "test", "none"):
            raise DatasetError(f"val_split={val_split!r}: the synthetic data set has its own generated validation "
                               f"set; use auto (or test) or none")
        return "none" if val_split == "none" else "test"
    if val_split == "auto":
        if _has_test_split(name, data_path):
            return "test"
        return "data_batch_5" if name == "cifar10" else "0.1"
    if val_split in ("test", "none"):
        if val_split == "test" and not _has_test_split(name, data_path):
            raise DatasetError(f"val_split=test but {data_path} has no official test split for {name}; "
                               f"use val_split=auto to hold out part of the training set")
        return val_split
    if val_split.startswith("data_batch_"):
        if name != "cifar10" or val_split + ".bin" not in CIFAR10_TRAIN_FILES:
            raise DatasetError(f"val_split={val_split}: data_batch_1..data_batch_5 exist only for cifar10")
        return val_split
    try:
        fraction = float(val_split)
    except ValueError:
        fraction = -1.0
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"val_split={val_split!r} is not one of auto, test, none, data_batch_N, "
                           f"or a fraction between 0 and 1")
    return val_split


def _holdout_indices(val_split, n_total):
    """(train indices, val indices) for a hold-out split of one training set."""
    if val_split.startswith("data_batch_"):
        # Cifar10Dataset reads data_batch_1..5 in order, 10,000 records each.
        k = int(val_split[len("data_batch_"):]) - 1
        val = np.arange(k * 10000, (k + 1) * 10000)
    else:
        perm = np.random.default_rng(HOLDOUT_SEED).permutation(n_total)
        val = np.sort(perm[:max(1, int(round(float(val_split) * n_total)))])
    train = np.setdiff1d(np.arange(n_total), val)
    return train, val


def describe_split(name, split, val_split):
    if split == "train":
        return "train" if val_split in ("test", "none") else f"train minus held-out {val_split}"
    if val_split == "test":
        return {"cifar10": "official test split (test_batch.bin)", "cifar100": "official test split (test.bin)",
                "imagefolder": "val/ folder", "synthetic": "generated validation set"}[name]
    return f"validation held out of the training set ({val_split})"


# --------------------------------------------------------------------------------------------------------------

def normalisation(name):
    """(mean, std) per RGB channel, on the 0-1 scale, that the data set's images are normalised with."""
    return (CIFAR_MEAN, CIFAR_STD) if native_image_size(name) else (IMAGENET_MEAN, IMAGENET_STD)


def _transforms(name, train, image_size, hflip=True, crop_scale_min=0.08):
    import mindspore.dataset.vision as vision

    flip = [vision.RandomHorizontalFlip()] if hflip else []
    mean, std = normalisation(name)
    if native_image_size(name):  # 32x32 arrays already decoded
        ops = [vision.RandomCrop(32, padding=4)] + flip if train else []
    else:
        if train:
            ops = [vision.RandomCropDecodeResize(image_size, scale=(crop_scale_min, 1.0))] + flip
        else:  # resize 256 / centre crop 224 for ImageNet, the same ratio at other sizes
            ops = [vision.Decode(), vision.Resize(int(round(image_size / 0.875))), vision.CenterCrop(image_size)]
    return ops + [vision.Normalize([255 * m for m in mean], [255 * s for s in std]), vision.HWC2CHW()]


def create_dataset(name, data_path, split, batch_size, *, val_split="auto", image_size=224,
                   num_parallel_workers=2, rank=0, group_size=1, synthetic_train_size=2560,
                   synthetic_val_size=512, num_classes=10, drop_remainder=None, train_subset=0, calib_size=0,
                   hflip=True, crop_scale_min=0.08):
    """Build a batched pipeline. Returns (dataset, info) with info keys num_classes, num_samples, split.

    ``split`` is train (augmented, reshuffled each epoch; ``hflip`` and ``crop_scale_min`` shape the augmentation),
    val, or calib: ``calib_size`` images of the training split, the same ones whatever the seed, with the
    evaluation transform (for INT8 calibration)."""
    import mindspore as ms
    import mindspore.dataset as ds
    import mindspore.dataset.transforms as T

    if split not in ("train", "val", "calib"):
        raise ValueError(f"split must be 'train', 'val' or 'calib', not {split!r}")
    val_split = resolve_val_split(name, data_path, val_split)
    if split == "val" and val_split == "none":
        raise DatasetError("no validation split: val_split=none")
    use_test = split == "val" and val_split == "test"
    make, n_total, n_classes = _source(name, data_path, use_test, synthetic_train_size, synthetic_val_size,
                                       num_classes)

    train = split == "train"
    if val_split in ("test", "none"):
        indices = np.arange(n_total)
    else:
        train_idx, val_idx = _holdout_indices(val_split, n_total)
        indices = val_idx if split == "val" else train_idx
    if split == "calib":
        if calib_size > len(indices):
            raise DatasetError(f"{name}: calib_size={calib_size} but the training split has only {len(indices)} "
                               f"images; pass a smaller --calib_size or a larger data set")
        indices = np.sort(np.random.default_rng(HOLDOUT_SEED + 2).permutation(indices)[:calib_size])
    if train and train_subset:
        if train_subset > len(indices):
            raise DatasetError(f"train_subset={train_subset} but {name} has only {len(indices)} training images")
        # a fixed subset whatever the run's seed, so runs with different seeds train on the same images
        indices = np.sort(np.random.default_rng(HOLDOUT_SEED + 1).permutation(indices)[:train_subset])
    if train:
        # Each rank takes an equal, disjoint share, shuffled anew each epoch by epoch_iterator's seed.
        per_rank = len(indices) // group_size
        shard = indices[rank::group_size][:per_rank]
        sampler = ds.SubsetRandomSampler(shard.tolist())
        num_samples = per_rank
    else:
        sampler = ds.SubsetSampler(indices.tolist())
        num_samples = len(indices)
    if train and num_samples < batch_size:
        raise DatasetError(f"{name}: {num_samples} training images per rank is fewer than batch_size={batch_size}")

    data = make(sampler)
    data = data.map(_transforms(name, train, image_size, hflip, crop_scale_min), input_columns="image",
                    num_parallel_workers=num_parallel_workers)
    data = data.map(T.TypeCast(ms.int32), input_columns="label", num_parallel_workers=num_parallel_workers)
    data = data.batch(batch_size, drop_remainder=train if drop_remainder is None else drop_remainder)
    info = {"num_classes": n_classes, "num_samples": num_samples, "split": describe_split(name, split, val_split),
            # validating on the official test split (CIFAR's test file, an image folder's val/): picking the best
            # epoch on it makes that epoch's accuracy an optimistic estimate
            "official_test_split": use_test and name != "synthetic"}
    if train and train_subset:
        info["split"] += f", fixed subset of {train_subset}"
    if split == "calib":
        info["split"] = f"{num_samples} images of the {describe_split(name, 'train', val_split)} split"
    return data, info


def epoch_seed(seed, epoch):
    """The data-pipeline seed of one epoch (0-based) of a run seeded with ``seed``: well mixed, in uint32."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def epoch_iterator(dataset, seed, epoch, output_numpy=False):
    """A one-epoch iterator whose shuffling and augmentation are those of ``epoch`` of a run with ``seed``.

    The engine takes its seed when the iterator is built (measured on MindSpore 2.10: two iterators built
    under the same seed give identical batches, random crops included), hence the seed is set right here."""
    import mindspore.dataset as ds

    ds.config.set_seed(epoch_seed(seed, epoch))
    return dataset.create_tuple_iterator(num_epochs=1, output_numpy=output_numpy)


def checked(batches, what):
    """Yield from ``batches``, turning the dataset engine's failure on one file (a corrupt or empty image) into a
    DatasetError that names the file; other errors pass unchanged."""
    try:
        yield from batches
    except RuntimeError as exc:
        found = re.search(r"map operation: \[(\w+)\] failed\. The corresponding data file is: (.+?)\. (.+?)\n",
                          str(exc) + "\n")
        if not found:
            raise
        op, path, reason = found.groups()
        raise DatasetError(f"{what}: cannot read {path} ({op}: {reason.strip()}); the file is corrupt or empty: "
                           f"replace or remove it") from None
