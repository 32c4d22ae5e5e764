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


def _run_copied_tests(tmp_path, require):
    """The data tests run from a copy of tests/ with no ../shared beside it (a user's clone)."""
    import shutil
    import subprocess
    import sys

    clone = tmp_path / "clone"
    shutil.copytree(os.path.join(ROOT, "tests"), clone / "tests")
    env = {k: v for k, v in os.environ.items() if k != "RESDIST_REQUIRE_SHARED_DATA"}
    if require:
        env["RESDIST_REQUIRE_SHARED_DATA"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/test_data.py", "-k", "holds_out_data_batch_5"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=300)


def test_a_clone_without_shared_data_skips_with_the_folder_named(tmp_path):
    result = _run_copied_tests(tmp_path, require=False)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 passed, 1 skipped" in result.stdout
    assert "needs the real data in" in result.stdout and "cifar-10-batches-bin" in result.stdout


def test_ci_fails_instead_of_skipping_when_shared_data_is_missing(tmp_path):
    result = _run_copied_tests(tmp_path, require=True)
    assert result.returncode == 1 and "1 passed" in result.stdout and "1 error" in result.stdout  # fixture failed
    assert "RESDIST_REQUIRE_SHARED_DATA=1" in result.stdout


def test_ci_requires_the_shared_data():
    assert "export RESDIST_REQUIRE_SHARED_DATA=1" in open(os.path.join(ROOT, ".ci", "run")).read()
