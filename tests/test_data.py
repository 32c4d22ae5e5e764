import os
import shutil

import numpy as np
import pytest

from resdist.data import CIFAR10_RECORD, DatasetError, create_dataset, resolve_val_split


def _labels(dataset):
    return np.concatenate([lab.asnumpy() for _, lab in dataset.create_tuple_iterator(num_epochs=1)])


def _raw_labels(folder, fname, n=None):
    with open(os.path.join(folder, fname), "rb") as f:
        raw = np.frombuffer(f.read(), np.uint8).reshape(-1, CIFAR10_RECORD)
    return raw[:n, 0] if n else raw[:, 0]


def test_cifar10_holds_out_data_batch_5_as_validation(cifar10_dir):
    val, info = create_dataset("cifar10", cifar10_dir, "val", 500)
    assert info["split"] == "validation held out of the training set (data_batch_5)"
    assert info["num_samples"] == 10000
    labels = _labels(val)
    np.testing.assert_array_equal(labels, _raw_labels(cifar10_dir, "data_batch_5.bin"))  # same records and order
    images, batch_labels = next(val.create_tuple_iterator(num_epochs=1))
    assert images.shape == (500, 3, 32, 32) and str(images.dtype) == "Float32"
    assert str(batch_labels.dtype) == "Int32"
    # normalised with CIFAR statistics: roughly zero mean, unit spread (uniform random pixels: a bit wider)
    pixels = images.asnumpy()
    assert abs(float(pixels.mean())) < 0.3 and 0.7 < float(pixels.std()) < 1.3


def test_cifar10_train_split_excludes_validation_and_is_sharded(cifar10_dir):
    train, info = create_dataset("cifar10", cifar10_dir, "train", 1000, rank=1, group_size=2)
    assert info["num_samples"] == 20000 and info["split"] == "train minus held-out data_batch_5"
    assert train.get_dataset_size() == 20
    counts = np.bincount(_labels(train), minlength=10)
    expected = np.bincount(np.concatenate([_raw_labels(cifar10_dir, f"data_batch_{i}.bin") for i in range(1, 5)])[1::2],
                           minlength=10)
    np.testing.assert_array_equal(counts, expected)


def test_fraction_holdout_is_fixed_and_disjoint():
    from resdist.data.datasets import _holdout_indices

    train, val = _holdout_indices("0.1", 50000)
    train2, val2 = _holdout_indices("0.1", 50000)
    assert len(val) == 5000 and len(train) == 45000
    assert not set(train) & set(val)
    np.testing.assert_array_equal(val, val2)


def test_image_folder_reads_jpegs_with_shared_class_indexing(jpeg_dir):
    train, info = create_dataset("imagefolder", jpeg_dir, "train", 50, image_size=32)
    assert info["num_classes"] == 10 and info["num_samples"] == 500
    images, _ = next(train.create_tuple_iterator(num_epochs=1))
    assert images.shape == (50, 3, 32, 32)
    val, vinfo = create_dataset("imagefolder", jpeg_dir, "val", 100, image_size=32)
    assert vinfo["split"] == "val/ folder"
    assert np.bincount(_labels(val), minlength=10).tolist() == [10] * 10


def test_an_image_folders_files_are_listed_once_while_it_is_unchanged(made_jpegs, tmp_path, monkeypatch):
    """check_dataset, the training and the validation pipelines all ask for the class listing; the files of a
    class folder are listed once (ImageNet: 1.28M files), and again only after a file was added to it."""
    from resdist.data import check_dataset
    from resdist.data import datasets as data

    folder = tmp_path / "jpegs"
    shutil.copytree(made_jpegs, folder)
    listed, real = [], os.listdir
    monkeypatch.setattr(data.os, "listdir", lambda path: listed.append(os.path.relpath(path, folder)) or real(path))
    check_dataset("imagefolder", str(folder), "test")
    for split in ("train", "val"):
        create_dataset("imagefolder", str(folder), split, 10, image_size=32)
    classes = [p for p in listed if p.count(os.sep) == 1]  # train/class00, val/class03, ...
    assert len(classes) == 20 and len(set(classes)) == 20, sorted(classes)
    shutil.copyfile(folder / "train" / "class00" / "0.jpg", folder / "train" / "class00" / "extra.jpg")
    listed.clear()
    _, info = create_dataset("imagefolder", str(folder), "train", 10, image_size=32)
    assert info["num_samples"] == 501 and [p for p in listed if p.count(os.sep) == 1] == [
        os.path.join("train", f"class{c:02d}") for c in range(10)]


def test_synthetic_is_deterministic_and_balanced():
    val, info = create_dataset("synthetic", "", "val", 64, synthetic_val_size=128)
    a = [img.asnumpy() for img, _ in val.create_tuple_iterator(num_epochs=1)]
    b = [img.asnumpy() for img, _ in val.create_tuple_iterator(num_epochs=1)]
    np.testing.assert_array_equal(a[0], b[0])
    assert np.bincount(_labels(val)).tolist() == [13] * 8 + [12] * 2


# --- bad input -------------------------------------------------------------------------------------------------

def _cifar_copy(source, tmp_path, truncate=None, drop=None):
    """A CIFAR-10 folder of links to the files in ``source``, one of them truncated or missing."""
    d = tmp_path / "cifar"
    d.mkdir()
    for i in range(1, 6):
        name = f"data_batch_{i}.bin"
        if name == drop:
            continue
        if name == truncate:
            with open(os.path.join(source, name), "rb") as src:
                (d / name).write_bytes(src.read(CIFAR10_RECORD * 100 + 7))
        else:
            os.symlink(os.path.join(source, name), d / name)
    return str(d)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match=f"data_path {tmp_path}/nope is not a directory"):
        create_dataset("cifar10", str(tmp_path / "nope"), "train", 32)


def test_truncated_cifar_file_is_named(made_cifar10, tmp_path):
    path = _cifar_copy(made_cifar10, tmp_path, truncate="data_batch_3.bin")
    with pytest.raises(DatasetError, match=r"data_batch_3.bin has 307307 bytes, expected 30730000.*truncated"):
        create_dataset("cifar10", path, "train", 32)


def test_missing_cifar_file_is_named(made_cifar10, tmp_path):
    path = _cifar_copy(made_cifar10, tmp_path, drop="data_batch_2.bin")
    with pytest.raises(DatasetError, match="missing file .*data_batch_2.bin"):
        create_dataset("cifar10", path, "val", 32)


def test_folder_without_cifar_files(tmp_path):
    with pytest.raises(DatasetError, match="CIFAR-100 .*missing file .*train.bin"):
        create_dataset("cifar100", str(tmp_path), "train", 32)


def test_val_split_test_without_test_file_is_an_error(made_cifar10):
    with pytest.raises(DatasetError, match="no official test split"):
        resolve_val_split("cifar10", made_cifar10, "test")
    with pytest.raises(DatasetError, match="not one of auto, test, none"):
        resolve_val_split("cifar10", made_cifar10, "1.5")
    with pytest.raises(DatasetError, match="only for cifar10"):
        resolve_val_split("cifar100", made_cifar10, "data_batch_5")


def _jpeg_copy(source, tmp_path):
    dst = tmp_path / "folder"
    shutil.copytree(source, dst)
    return dst


def test_image_folder_with_an_empty_class(made_jpegs, tmp_path):
    root = _jpeg_copy(made_jpegs, tmp_path)
    for f in (root / "train" / "class03").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"class folder .*train/class03 has no images"):
        create_dataset("imagefolder", str(root), "train", 10, image_size=32)


def test_image_folder_without_images(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="has no class sub-folders"):
        create_dataset("imagefolder", str(tmp_path / "empty"), "train", 10)


def test_image_folder_classes_differ_between_train_and_val(made_jpegs, tmp_path):
    root = _jpeg_copy(made_jpegs, tmp_path)
    (root / "val" / "class05").rename(root / "val" / "wolf")
    with pytest.raises(DatasetError, match=r"classes differ.*only in train: \['class05'\], only in val: \['wolf'\]"):
        create_dataset("imagefolder", str(root), "val", 10, image_size=32)


def test_too_few_images_for_a_batch():
    with pytest.raises(DatasetError, match="fewer than batch_size=4096"):
        create_dataset("synthetic", "", "train", 4096, synthetic_train_size=100)


def test_official_test_file_is_preferred_for_validation(cifar10_dir, tmp_path):
    """With test_batch.bin present (here: a copy of data_batch_5 under that name), val_split=auto uses it
    and training keeps all five training files."""
    path = _cifar_copy(cifar10_dir, tmp_path)
    os.symlink(os.path.join(cifar10_dir, "data_batch_5.bin"), os.path.join(path, "test_batch.bin"))
    val, info = create_dataset("cifar10", path, "val", 1000)
    assert info["split"] == "official test split (test_batch.bin)" and info["num_samples"] == 10000
    np.testing.assert_array_equal(_labels(val), _raw_labels(cifar10_dir, "data_batch_5.bin"))
    _, train_info = create_dataset("cifar10", path, "train", 1000)
    assert train_info["num_samples"] == 50000 and train_info["split"] == "train"


# --- every epoch its own order and augmentation, reproducible from the seed ------------------------------------

def _epoch_batches(seed, epoch, **kwargs):
    """All batches of one epoch of a small synthetic training set (same crop/flip transforms as CIFAR)."""
    from resdist.data import epoch_iterator

    train, _ = create_dataset("synthetic", "", "train", 10, synthetic_train_size=40, **kwargs)
    return [(img, lab) for img, lab in epoch_iterator(train, seed, epoch, output_numpy=True)]


def test_epochs_differ_in_order_and_augmentation():
    first, second = _epoch_batches(1, 0), _epoch_batches(1, 1)
    order1 = np.concatenate([lab for _, lab in first])
    order2 = np.concatenate([lab for _, lab in second])
    assert sorted(order1) == sorted(order2)            # the same images ...
    assert not np.array_equal(order1, order2)          # ... in another order
    assert not np.array_equal(first[0][0], second[0][0])


def test_augmentation_differs_between_epochs_for_the_same_image():
    """One image repeated: only the random crop and flip can make epochs differ."""
    from resdist.data import epoch_iterator

    train, _ = create_dataset("synthetic", "", "train", 1, synthetic_train_size=1)
    draws = [next(epoch_iterator(train, 1, e, output_numpy=True))[0] for e in range(6)]
    assert len({d.tobytes() for d in draws}) > 1
    again = [next(epoch_iterator(train, 1, e, output_numpy=True))[0] for e in range(6)]
    for a, b in zip(draws, again):
        np.testing.assert_array_equal(a, b)


def test_flips_and_crop_area_follow_the_settings(tmp_path):
    """A PNG whose left half is white and whose top quarter has no blue: without flips the white half stays left
    in every draw; with them some draws are mirrored. A crop of the whole area (crop_scale_min 1) keeps the top
    rows in every draw; ImageNet's 0.08 often crops them away."""
    from PIL import Image

    from resdist.data import epoch_iterator

    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :16] = 255
    img[:8, :, 2] = 0
    for c in "ab":
        (tmp_path / "train" / c).mkdir(parents=True)
        Image.fromarray(img).save(tmp_path / "train" / c / "x.png")

    def draws(**augment):
        train, _ = create_dataset("imagefolder", str(tmp_path), "train", 1, val_split="none", image_size=32,
                                  **augment)
        return [b[0][0] for e in range(8) for b in epoch_iterator(train, 1, e, output_numpy=True)]

    def white_left(d):
        return d[0, :, :16].mean() > d[0, :, 16:].mean()

    def blueless_top(d):  # blue: 0 in the top row, half the bottom row white (about 2.2 after normalisation)
        return d[2, 0].mean() < d[2, -1].mean() - 1.0

    kept = draws(hflip=False, crop_scale_min=1.0)
    assert all(white_left(d) for d in kept) and all(blueless_top(d) for d in kept)
    flipped = draws(hflip=True, crop_scale_min=1.0)
    assert 0 < sum(white_left(d) for d in flipped) < len(flipped)
    assert sum(blueless_top(d) for d in draws(hflip=False)) < len(kept)


def test_the_same_seed_reproduces_every_epoch():
    for epoch in (0, 1):
        a, b = _epoch_batches(7, epoch), _epoch_batches(7, epoch)
        for (ia, la), (ib, lb) in zip(a, b):
            np.testing.assert_array_equal(la, lb)
            np.testing.assert_array_equal(ia, ib)
    other = _epoch_batches(8, 0)
    assert not np.array_equal(np.concatenate([lab for _, lab in _epoch_batches(7, 0)]),
                              np.concatenate([lab for _, lab in other]))


def test_distributed_shards_stay_disjoint_and_reshuffle_every_epoch():
    """Rank r of 2 reads the synthetic indices r, r+2, ...; synthetic image i has label i % 10, so a rank's labels
    all have the parity of its rank."""
    def labels(rank, epoch):
        return np.concatenate([lab for _, lab in _epoch_batches(3, epoch, rank=rank, group_size=2)])

    for epoch in (0, 1):
        assert set(labels(0, epoch) % 2) == {0} and set(labels(1, epoch) % 2) == {1}
    assert not np.array_equal(labels(0, 0), labels(0, 1))


def test_train_subset_is_a_fixed_part_of_the_training_set():
    import mindspore.dataset as ds

    def subset_labels(seed):
        ds.config.set_seed(seed)
        data, info = create_dataset("synthetic", "", "train", 10, synthetic_train_size=100, train_subset=30)
        assert info["num_samples"] == 30 and "fixed subset of 30" in info["split"]
        return sorted(_labels(data).tolist())

    assert subset_labels(1) == subset_labels(2)  # the same images whatever the seed
    with pytest.raises(DatasetError, match="train_subset=200 but synthetic has only 100"):
        create_dataset("synthetic", "", "train", 10, synthetic_train_size=100, train_subset=200)
