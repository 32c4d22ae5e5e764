"""The benchmark scripts' own logic (parsing settings, summing oneDNN's log); no timing is asserted here."""
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))

import onednn_profile  # noqa: E402
import runtime_settings  # noqa: E402


def test_settings_are_environment_variables_or_benchmark_arguments():
    assert runtime_settings.parse_setting("A=1, B=x=y") == ({"A": "1", "B": "x=y"}, [])
    assert runtime_settings.parse_setting("default") == ({}, [])
    assert runtime_settings.parse_setting("A=1,--graph_kernel") == ({"A": "1"}, ["--graph_kernel"])
    with pytest.raises(ValueError, match="not NAME=VALUE"):
        runtime_settings.parse_setting("A")


def test_a_single_setting_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        runtime_settings.main(["--settings", "A=1"])
    assert exc.value.code == 2 and "at least two settings" in capsys.readouterr().err


def test_onednn_log_is_summed_after_the_marker_with_convolution_gflops():
    conv = ("onednn_verbose,v1,primitive,exec,cpu,convolution,x64:gemm:jit,backward_weights,src:f32 dst:f32,,"
            "alg:convolution_direct,mb2_ic4oc8_ih8oh8kh3sh1dh0ph1_iw8ow8kw3sw1dw0pw1,{ms}")
    bnorm = "onednn_verbose,v1,primitive,exec,cpu,batch_normalization,ncsp_bnorm:any,backward,data:f32,,flags:CH,mb2ic8ih8iw8,0.5"
    lines = [conv.format(ms=100.0), onednn_profile.MARK, conv.format(ms=1.0), bnorm, conv.format(ms=3.0), bnorm]
    rows = {r["primitive"]: r for r in onednn_profile.summarise(lines, steps=2)}
    assert rows["convolution"]["calls_per_step"] == 1 and rows["convolution"]["ms_per_step"] == 2.0
    flop = 2 * 2 * 4 * 8 * 8 * 8 * 3 * 3  # 2 * N * Cin * Cout * Hout * Wout * Kh * Kw
    assert rows["convolution"]["gflop_per_s"] == pytest.approx(flop / 1e9 / 3.0e-3, rel=1e-3)  # median call: 3 ms
    assert rows["batch_normalization"]["ms_per_step"] == 0.5 and "gflop_per_s" not in rows["batch_normalization"]
