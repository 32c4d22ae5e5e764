"""The shell scripts users run: usage and refusals, and the deployment commands they would run (ATC and
MindSpore Lite's converter_lite do not install here: their scripts are checked with --dry_run and for the
missing-tool error)."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT

NO_TOOLS = f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"  # python, but no atc / converter_lite


def _bash(script, *args, path=None):
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("script,args", [
    ("run_convert_om.sh", []), ("run_convert_om.sh", ["only_model.onnx"]), ("run_convert_lite.sh", []),
    ("run_export.sh", ["ckpt_only"]), ("run_standalone_train.sh", ["cfg"]), ("run_eval.sh", ["a", "b"]),
    ("run_convert_om.sh", ["m.onnx", "Ascend310", "out", "extra"]), ("run_convert_lite.sh", ["--bogus"]),
])
def test_scripts_print_usage_on_wrong_arguments(script, args):
    result = _bash(script, *args)
    assert result.returncode == 2 and "usage: bash scripts/" in result.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A plain-20 exported as ONNX (batch 1) and MindIR."""
    import export as export_script
    from resdist import checkpoint as ckpt_io
    from resdist.models import create_model

    folder = tmp_path_factory.mktemp("deploy")
    ckpt = str(folder / "best.ckpt")
    ckpt_io.save(ckpt, ckpt_io.network_params(create_model("plain8", num_classes=10)),
                 ckpt_io.network_identity("plain8", "full"))
    for fmt in ("ONNX", "MINDIR"):
        assert export_script.main(["--ckpt_file", ckpt, "--arch", "plain8", "--file_name", str(folder / "p8"),
                                   "--file_format", fmt]) == 0
    return folder


def test_om_conversion_command_from_onnx(exported):
    model = exported / "p8.onnx"
    result = _bash("run_convert_om.sh", model, "Ascend310P3", "--dry_run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"atc --model={model} --framework=5 --output={exported}/p8 "
                                     f"--soc_version=Ascend310P3 --input_shape=x:1,3,32,32")


def test_om_conversion_without_atc_says_so(exported):
    result = _bash("run_convert_om.sh", exported / "p8.onnx", "Ascend310", path=NO_TOOLS)
    assert result.returncode == 127 and "ATC not found on PATH" in result.stderr
    assert not (exported / "p8.om").exists()


def test_om_conversion_refuses_missing_or_wrong_files(exported, tmp_path):
    assert "does not exist" in _bash("run_convert_om.sh", tmp_path / "none.onnx", "Ascend310").stderr
    assert "neither .onnx" in _bash("run_convert_om.sh", exported / "p8.mindir", "Ascend310").stderr
    air = tmp_path / "m.air"
    air.write_bytes(b"x")
    assert "give --input_shape" in _bash("run_convert_om.sh", air, "Ascend310").stderr
    result = _bash("run_convert_om.sh", air, "Ascend910B1", tmp_path / "out.om", "--input_shape", "x:8,3,224,224",
                   "--dry_run")
    assert result.stdout.strip() == (f"atc --model={air} --framework=1 --output={tmp_path}/out "
                                     f"--soc_version=Ascend910B1 --input_shape=x:8,3,224,224")


def test_lite_conversion_command_and_missing_tool(exported):
    model = exported / "p8.mindir"
    result = _bash("run_convert_lite.sh", model, "--optimize", "ascend_oriented", "--dry_run")
    assert result.stdout.strip() == (f"converter_lite --fmk=MINDIR --modelFile={model} --outputFile={exported}/p8 "
                                     f"--optimize=ascend_oriented")
    missing = _bash("run_convert_lite.sh", model, path=NO_TOOLS)
    assert missing.returncode == 127 and "converter_lite not found on PATH" in missing.stderr
    assert "is not a .mindir file" in _bash("run_convert_lite.sh", exported / "p8.onnx").stderr


def test_export_script_passes_through_to_export_py(exported):
    result = _bash("run_export.sh", exported / "best.ckpt", "plain8", "ONNX", "--file_name", exported / "again")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (exported / "again.onnx").is_file() and "(OK)" in result.stdout
    assert "is not MINDIR, ONNX or AIR" in _bash("run_export.sh", exported / "best.ckpt", "plain8", "TFLITE").stderr


@pytest.mark.parametrize("script,args,message", [
    ("run_standalone_train.sh", ["/nonexistent.yaml", "/tmp"], "config /nonexistent.yaml does not exist"),
    ("run_standalone_train.sh", ["CONFIG", "/nonexistent/data"], "data path /nonexistent/data is not a directory"),
    ("run_eval.sh", ["CONFIG", "/nonexistent/data", "x.ckpt"], "data path /nonexistent/data is not a directory"),
    ("run_eval.sh", ["CONFIG", "/tmp", "/nonexistent.ckpt"], "checkpoint /nonexistent.ckpt does not exist"),
])
def test_standalone_and_eval_scripts_check_their_paths(script, args, message):
    config = os.path.join(ROOT, "configs", "cifar10_study.yaml")
    result = _bash(script, *[config if a == "CONFIG" else a for a in args])
    assert result.returncode == 2 and message in result.stderr


def _tool(folder, name, writes):
    """A stand-in for ATC / converter_lite on PATH: exits 0 and writes its output file only if ``writes``."""
    folder.mkdir(exist_ok=True)
    tool = folder / name
    body = {"atc": 'for a; do case "$a" in --output=*) out="${a#--output=}.om";; esac; done',
            "converter_lite": 'for a; do case "$a" in --outputFile=*) out="${a#--outputFile=}.ms";; esac; done'}[name]
    tool.write_text(f"#!/bin/bash\n{body}\n" + ('echo converted > "$out"\n' if writes else "") + "exit 0\n")
    tool.chmod(0o755)
    return f"{folder}:{NO_TOOLS}"


@pytest.mark.parametrize("script,tool,model,extra,suffix", [
    ("run_convert_om.sh", "atc", "p8.onnx", ["Ascend310"], ".om"),
    ("run_convert_lite.sh", "converter_lite", "p8.mindir", [], ".ms"),
])
def test_conversion_that_writes_nothing_over_an_old_output_is_an_error(exported, tmp_path, script, tool, model,
                                                                      extra, suffix):
    out = tmp_path / "converted"
    old = tmp_path / f"converted{suffix}"
    old.write_text("an older conversion")
    silent = _bash(script, exported / model, *extra, out, path=_tool(tmp_path / "silent", tool, writes=False))
    assert silent.returncode == 1 and "did not write" in silent.stderr and "wrote" not in silent.stdout
    assert old.read_text() == "an older conversion"
    done = _bash(script, exported / model, *extra, out, path=_tool(tmp_path / "real", tool, writes=True))
    assert done.returncode == 0 and f"wrote {out}{suffix}" in done.stdout, done.stderr
    assert old.read_text() == "converted\n"


def test_om_conversion_of_a_corrupt_onnx_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not really onnx")
    result = _bash("run_convert_om.sh", bad, "Ascend310", "--dry_run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {bad} cannot be read as ONNX (")
