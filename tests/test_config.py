import subprocess
import sys

import pytest
from conftest import ROOT

from resdist.config import parse_args
from resdist.errors import ConfigError


def _yaml(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_sets_defaults_and_command_line_wins(tmp_path):
    path = _yaml(tmp_path, "arch: plain56\nlr: 0.05\nepoch_size: 7\nlr_milestones: [100, 150]\nnesterov: false\n")
    cfg, _ = parse_args(["--config", path, "--lr", "0.2", "--lr_milestones", "30,60"], "train", "t")
    assert cfg.arch == "plain56" and cfg.epochs == 7 and cfg.nesterov is False
    assert cfg.lr == 0.2 and cfg.lr_milestones == [30, 60]
    assert cfg.batch_size == 128  # built-in default


def test_unknown_yaml_key_suggests_the_right_one(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'bach_size' \\(did you mean 'batch_size'\\?\\)"):
        parse_args(["--config", _yaml(tmp_path, "bach_size: 64\n")], "train", "t")


@pytest.mark.parametrize("argv,message", [
    (["--lr", "-1"], r"lr=-1.0 \(from command line\) must be > 0"),
    (["--batch_size", "ten"], "batch_size: 'ten' is not an integer"),
    (["--device_target", "TPU"], "device_target='TPU' .* is not one of CPU, GPU, Ascend"),
    (["--nesterov", "maybe"], "not a boolean"),
    (["--epochs", "2.5"], "epochs: '2.5' is not an integer"),
    (["--crop_scale_min", "0"], r"crop_scale_min=0.0 \(from command line\) must be > 0 and <= 1"),
    (["--crop_scale_min", "1.5"], "must be > 0 and <= 1"),
])
def test_bad_values_name_the_key(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_args(argv, "train", "t")


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_args(["--config", str(tmp_path / "none.yaml")], "train", "t")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_args(["--config", _yaml(tmp_path, "lr: [0.1\n")], "train", "t")
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_args(["--config", _yaml(tmp_path, "- 1\n- 2\n")], "train", "t")
    with pytest.raises(ConfigError, match=r"lr: 'fast' is not a number \(from .*recipe.yaml\)"):
        parse_args(["--config", _yaml(tmp_path, "lr: fast\n")], "train", "t")


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_args(["--config", _yaml(tmp_path, "arch: !!python/object/apply:os.system ['true']\n")], "train", "t")


@pytest.mark.parametrize("script,keys", [("train.py", ["--procedure", "--lr_milestones", "--resume", "--data_path"]),
                                         ("eval.py", ["--ckpt_file", "--output_json", "--data_path"])])
def test_help_lists_every_key_with_its_meaning(script, keys):
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
    for key in keys:
        assert key in out.stdout
    assert "teacher: train a ResNet alone" in out.stdout or script == "eval.py"
    assert "--lr " not in out.stdout if script == "eval.py" else True
