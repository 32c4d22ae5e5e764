"""Downstream data sets in the ``imagefolder`` layout (``train/<class>/``, ``val/<class>/``) without copying an
image: each split is a folder of symbolic links to the downloaded files.

MIT67 (Quattoni & Torralba 2009): ``Images/<class>/<file>`` and the official ``TrainImages.txt`` /
``TestImages.txt`` lists (``<class>/<file>`` per line; 80 train and 20 test images a class).
Caltech101 (Fei-Fei et al. 2004): ``101_ObjectCategories/<class>/<file>``; the usual protocol takes a fixed number
of training images per class (30), drawn with a seed, the rest for testing, ``BACKGROUND_Google`` excluded.
"""
import os

import numpy as np

from ..errors import UserError
from ..fsutil import published, remove_abandoned_staging

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class PrepareError(UserError):
    """A downloaded data set that does not have the layout or lists expected; the message names the file."""


def read_list(path, images_root):
    """(class, absolute path) of each ``<class>/<file>`` line of an MIT67 list; every file must exist."""
    if not os.path.isfile(path):
        raise PrepareError(f"list file {path} does not exist (MIT67 ships TrainImages.txt and TestImages.txt "
                           f"beside Images/)")
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.replace("\\", "/").split("/")
            if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
                raise PrepareError(f"{path} line {number}: {line!r} is not <class>/<file>")
            image = os.path.join(images_root, *parts)
            if not os.path.isfile(image):
                raise PrepareError(f"{path} line {number}: {image} does not exist")
            real_root = os.path.realpath(images_root)
            if os.path.commonpath([real_root, os.path.realpath(image)]) != real_root:  # a link out of the archive
                raise PrepareError(f"{path} line {number}: {image} leads out of {images_root}; the lists name "
                                   f"images of the archive only")
            entries.append((parts[0], os.path.abspath(image)))
    if not entries:
        raise PrepareError(f"list file {path} lists no image")
    return entries


def mit67_splits(root):
    images = os.path.join(root, "Images")
    if not os.path.isdir(images):
        raise PrepareError(f"{root} has no Images/ folder (the MIT67 archive unpacks to Images/<class>/)")
    return {"train": read_list(os.path.join(root, "TrainImages.txt"), images),
            "val": read_list(os.path.join(root, "TestImages.txt"), images)}


def caltech101_splits(root, train_per_class=30, seed=0):
    categories = os.path.join(root, "101_ObjectCategories")
    folder = categories if os.path.isdir(categories) else root
    classes = sorted(c for c in os.listdir(folder) if os.path.isdir(os.path.join(folder, c))
                     and c != "BACKGROUND_Google")
    if not classes:
        raise PrepareError(f"{folder} has no class folders (the Caltech101 archive unpacks to "
                           f"101_ObjectCategories/<class>/)")
    rng = np.random.default_rng(seed)
    splits = {"train": [], "val": []}
    for c in classes:
        files = sorted(f for f in os.listdir(os.path.join(folder, c)) if f.lower().endswith(IMAGE_SUFFIXES))
        if len(files) <= train_per_class:
            raise PrepareError(f"class {c} has {len(files)} images: {train_per_class} for training would leave "
                               f"none for testing; pass a smaller --train_per_class")
        chosen = set(rng.permutation(len(files))[:train_per_class].tolist())
        for i, f in enumerate(files):
            splits["train" if i in chosen else "val"].append((c, os.path.abspath(os.path.join(folder, c, f))))
    return splits


def write_image_folder(splits, output):
    """``output/{train,val}/<class>/<file>`` as symbolic links; every class must have images in both splits.
    Made under a temporary name and renamed, so a refused or interrupted run leaves no half-made folder (one a
    killed run left is removed by the next)."""
    remove_abandoned_staging(output)  # of a run killed midway
    if os.path.exists(output):
        raise PrepareError(f"{output} exists; remove it or choose another --output")
    classes = {split: {c for c, _ in entries} for split, entries in splits.items()}
    for split in ("train", "val"):
        missing = sorted((classes["train"] | classes["val"]) - classes[split])
        if missing:
            raise PrepareError(f"classes {', '.join(missing[:5])} have no {split} image: the split would leave "
                               f"them empty")
    with published(output) as staging:
        for split, entries in splits.items():
            for c, image in entries:
                folder = os.path.join(staging, split, c)
                os.makedirs(folder, exist_ok=True)
                os.symlink(image, os.path.join(folder, os.path.basename(image)))
    return {split: len(entries) for split, entries in splits.items()}, len(classes["train"])
