"""MIT67 / Caltech101 preparation into the imagefolder layout (links, no copies), on made archive layouts."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from PIL import Image


def _image(path, colour=(200, 30, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (40, 36), colour).save(path)


def _prepare(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "prepare_downstream.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def mit67(tmp_path):
    root = tmp_path / "mit67"
    for c in ("kitchen", "bar"):
        for i in range(3):
            _image(str(root / "Images" / c / f"{c}{i}.jpg"))
    (root / "TrainImages.txt").write_text("kitchen/kitchen0.jpg\nkitchen/kitchen1.jpg\nbar/bar0.jpg\nbar/bar1.jpg\n")
    (root / "TestImages.txt").write_text("kitchen/kitchen2.jpg\nbar/bar2.jpg\n")
    return root


def test_mit67_follows_the_official_lists_with_links(mit67, tmp_path):
    out = tmp_path / "out"
    done = _prepare("mit67", "--root", mit67, "--output", out)
    assert done.returncode == 0, done.stderr
    assert "2 classes, 4 train / 2 val images (links)" in done.stdout
    assert sorted(os.listdir(out / "train" / "kitchen")) == ["kitchen0.jpg", "kitchen1.jpg"]
    assert os.listdir(out / "val" / "bar") == ["bar2.jpg"]
    link = out / "val" / "bar" / "bar2.jpg"
    assert link.is_symlink() and os.path.realpath(link) == str(mit67 / "Images" / "bar" / "bar2.jpg")


def test_a_prepared_folder_trains(mit67, tmp_path):
    import train as train_script

    out = tmp_path / "out"
    assert _prepare("mit67", "--root", mit67, "--output", out).returncode == 0
    run = tmp_path / "run"
    assert train_script.main(["--arch", "plain8", "--procedure", "plain", "--dataset", "imagefolder", "--data_path",
                              str(out), "--image_size", "32", "--batch_size", "2", "--epochs", "1",
                              "--output_dir", str(run)]) == 0
    assert "4 images (train)" in (run / "train.log").read_text()


@pytest.mark.parametrize("case,message", [
    ("no_test_list", "TestImages.txt does not exist"),
    ("missing_image", "Images/bar/bar9.jpg does not exist"),
    ("bad_line", "line 1: 'kitchen' is not <class>/<file>"),
    ("class_without_test", "classes bar have no val image"),
    ("dot_dot_class", "line 2: '../secret.jpg' is not <class>/<file>"),
    ("link_out_of_archive", "Images/bar/outside.jpg leads out of"),
])
def test_mit67_refusals_write_nothing(mit67, tmp_path, case, message):
    if case == "no_test_list":
        (mit67 / "TestImages.txt").unlink()
    elif case == "missing_image":
        (mit67 / "TestImages.txt").write_text("kitchen/kitchen2.jpg\nbar/bar9.jpg\n")
    elif case == "bad_line":
        (mit67 / "TestImages.txt").write_text("kitchen\n")
    elif case == "class_without_test":
        (mit67 / "TestImages.txt").write_text("kitchen/kitchen2.jpg\n")
    elif case == "dot_dot_class":  # Images/../secret.jpg: a file beside the archive's image folder
        _image(str(mit67 / "secret.jpg"))
        (mit67 / "TestImages.txt").write_text("kitchen/kitchen2.jpg\n../secret.jpg\n")
    elif case == "link_out_of_archive":
        _image(str(tmp_path / "elsewhere.jpg"))
        os.symlink(tmp_path / "elsewhere.jpg", mit67 / "Images" / "bar" / "outside.jpg")
        (mit67 / "TestImages.txt").write_text("kitchen/kitchen2.jpg\nbar/outside.jpg\n")
    out = tmp_path / "out"
    done = _prepare("mit67", "--root", mit67, "--output", out)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and message in done.stderr, done.stderr
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith("out")]


def test_a_killed_runs_staging_folder_is_removed_by_the_next(mit67, tmp_path):
    out = tmp_path / "out"
    dead, alive = tmp_path / "out.999999999.partial", tmp_path / f"out.{os.getpid()}.partial"
    for folder in (dead, alive):
        (folder / "train" / "kitchen").mkdir(parents=True)
    done = _prepare("mit67", "--root", mit67, "--output", out)
    assert done.returncode == 0, done.stderr
    assert not dead.exists() and alive.exists() and (out / "train" / "kitchen").is_dir()


def test_caltech101_takes_a_seeded_number_per_class_and_skips_the_background(tmp_path):
    root = tmp_path / "caltech" / "101_ObjectCategories"
    for c, n in (("accordion", 5), ("airplanes", 4), ("BACKGROUND_Google", 6)):
        for i in range(n):
            _image(str(root / c / f"image_{i:04d}.jpg"))
    outs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / name
        done = _prepare("caltech101", "--root", root.parent, "--output", out, "--train_per_class", 3,
                        "--seed", seed)
        assert done.returncode == 0, done.stderr
        assert "2 classes, 6 train / 3 val images" in done.stdout
        outs.append({c: sorted(os.listdir(out / "train" / c)) for c in ("accordion", "airplanes")})
    assert not (tmp_path / "a" / "train" / "BACKGROUND_Google").exists()
    assert outs[0] == outs[1] and outs[0] != outs[2]  # the seed decides, and only the seed
    refused = _prepare("caltech101", "--root", root.parent, "--output", tmp_path / "d", "--train_per_class", 4)
    assert refused.returncode == 2 and "class airplanes has 4 images" in refused.stderr
    assert not (tmp_path / "d").exists()
