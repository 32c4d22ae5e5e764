"""Repository-level promises: recipes parse, README's test command is the one CI runs."""
import glob
import os

import pytest

from conftest import ROOT
from resdist.config import load_yaml, parse_args
from resdist.models import is_model

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_recipe_parses_and_names_a_known_network(path):
    cfg, _ = parse_args(["--config", path], "train", "t")
    assert is_model(cfg.arch)
    assert set(load_yaml(path)) <= set(cfg)


def test_readme_test_command_is_what_ci_runs():
    ci = open(os.path.join(ROOT, ".ci", "run")).read().strip().splitlines()[-1]
    assert ci == "python -m pytest -q tests"
    assert f"\n{ci}\n" in open(os.path.join(ROOT, "README.md")).read()
