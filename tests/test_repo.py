"""Repository-level promises: recipes parse, README's test command is the one CI runs."""
import glob
import os
import re

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
    assert ci == "python -m ruff check . && python -m pytest -q --durations=20 tests"
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


@pytest.mark.slow
def test_a_clone_without_shared_data_skips_with_the_folder_named(tmp_path):
    result = _run_copied_tests(tmp_path, require=False)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 passed, 1 skipped" in result.stdout
    assert "needs the real data in" in result.stdout and "cifar-10-batches-bin" in result.stdout


@pytest.mark.slow
def test_ci_fails_instead_of_skipping_when_shared_data_is_missing(tmp_path):
    result = _run_copied_tests(tmp_path, require=True)
    assert result.returncode == 1 and "1 passed" in result.stdout and "1 error" in result.stdout  # fixture failed
    assert "RESDIST_REQUIRE_SHARED_DATA=1" in result.stdout


def test_ci_requires_the_shared_data():
    assert "export RESDIST_REQUIRE_SHARED_DATA=1" in open(os.path.join(ROOT, ".ci", "run")).read()


def package_imports():
    """{module: the resdist modules it imports}, read from the source (nothing is imported)."""
    import ast

    package = os.path.join(ROOT, "src", "resdist")
    graph = {}
    for path in glob.glob(os.path.join(package, "**", "*.py"), recursive=True):
        parts = os.path.relpath(path, os.path.dirname(package))[:-3].split(os.sep)
        is_init = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_init else parts)
        here = name.split(".") if is_init else name.split(".")[:-1]  # the package a relative import starts from
        deps = set()
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = here[:len(here) - node.level + 1] + ([node.module] if node.module else [])
                deps.update([".".join(base)] if node.module else [".".join(base + [a.name]) for a in node.names])
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                found = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                deps.update(d for d in found if d and d.split(".")[0] == "resdist")
        graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


# The package's layers, bottom first. A module may import its own group and groups of lower layers; groups of one
# layer are siblings and never import each other (training and deployment share what sits below both).
LAYERS = [
    {"base": ("resdist", "resdist.errors", "resdist.fsutil", "resdist.precision", "resdist.runtime")},
    {"models": ("resdist.models",), "data": ("resdist.data",)},
    {"shared": ("resdist.checkpoint", "resdist.build", "resdist.evaluate")},
    {"distill": ("resdist.distill",)},
    {"config": ("resdist.config",)},
    {"train": ("resdist.train",), "deploy": ("resdist.deploy",)},
    {"entry": ("resdist.cli", "resdist.demo")},
]


def layer_of(module):
    """(layer index, group name) of a module: the longest listed prefix that is it or a package holding it."""
    found = [(len(prefix), rank, group) for rank, groups in enumerate(LAYERS) for group, prefixes in groups.items()
             for prefix in prefixes if module == prefix or module.startswith(prefix + ".") and prefix != "resdist"]
    assert found, f"{module} is in no layer: add it to LAYERS in tests/test_repo.py"
    return max(found)[1:]


def test_package_imports_have_no_cycle_and_follow_the_layers():
    graph = package_imports()
    assert {"resdist.train.trainer", "resdist.distill.rd", "resdist.models.resnet",
            "resdist.deploy.export"} <= set(graph)  # the reader found the package
    state = {}

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(path + [dep])}"
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    upward = []
    for module, deps in graph.items():
        rank, group = layer_of(module)
        for dep in deps:
            dep_rank, dep_group = layer_of(dep)
            if dep_group != group and dep_rank >= rank:
                upward.append(f"{module} ({group}) imports {dep} ({dep_group})")
    assert not upward, upward
    # the networks stand alone: usable with no training, export or config code
    assert not [(m, d) for m, deps in graph.items() if m.startswith("resdist.models") for d in deps
                if not d.startswith("resdist.models")]


def test_the_layer_rule_catches_an_upward_import():
    assert layer_of("resdist.train.trainer") == (5, "train") and layer_of("resdist.errors") == (0, "base")
    assert layer_of("resdist.deploy") == (5, "deploy") and layer_of("resdist.distill.rd") == (3, "distill")
    assert layer_of("resdist.evaluate")[0] < layer_of("resdist.train.trainer")[0]


def test_the_modules_entry_points_import_first_import_no_mindspore():
    """The CPU kernel choice (runtime.prefer_fast_cpu_kernels) must run before MindSpore is imported, so what the
    entry points import before it, and what the study runner imports, must not import MindSpore."""
    import subprocess
    import sys

    code = ("import sys; import resdist, resdist.cli, resdist.config, resdist.distill, resdist.errors, "
            "resdist.fsutil, resdist.checkpoint, resdist.runtime; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'mindspore')[:3])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def _expand_braces(pattern):
    """`a{b,c}d` -> [abd, acd], nested left to right (the README's way of naming families of recipes)."""
    found = re.search(r"\{([^{}]*)\}", pattern)
    if not found:
        return [pattern]
    head, tail = pattern[:found.start()], pattern[found.end():]
    return [name for option in found.group(1).split(",") for name in _expand_braces(head + option + tail)]


def readme_recipes():
    """The recipe names README's `Recipes` table lists in its first column, braces expanded."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## Recipes", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
                names.update(_expand_braces(token))
    return names


def test_readme_recipe_table_names_every_recipe_and_only_those():
    assert _expand_braces("x{1,2}_{a,b}") == ["x1_a", "x1_b", "x2_a", "x2_b"]
    on_disk = {os.path.basename(p)[:-5] for p in CONFIGS}
    listed = readme_recipes()
    assert not on_disk - listed, f"recipes missing from README's Recipes table: {sorted(on_disk - listed)}"
    assert not listed - on_disk, f"README's Recipes table names recipes that do not exist: {sorted(listed - on_disk)}"


def _heading_anchors(path):
    """GitHub's anchors of a Markdown file's headings (lower case, punctuation dropped, spaces to hyphens)."""
    anchors = set()
    in_code = False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_relative_links_in_readme_and_docs_point_at_files_and_headings_that_exist():
    pages = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    broken, checked = [], 0
    for page in pages:
        text = open(page, encoding="utf-8").read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked here
                continue
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            checked += 1
            if not os.path.exists(resolved):
                broken.append(f"{os.path.relpath(page, ROOT)}: {target} (no such file)")
            elif anchor and resolved.endswith(".md") and anchor not in _heading_anchors(resolved):
                broken.append(f"{os.path.relpath(page, ROOT)}: {target} (no such heading)")
    assert checked > 20  # the reader found the links
    assert not broken, broken
