"""The benchmark harness: `workbench bench --quick` on the CPU writes the JSON schema and
the plot; the roofline models reproduce DESIGN.md's kernel table on an H100."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.bench import cases, timing  # noqa: F401 - registers the cases
from workbench.cli.main import main

ROW_KEYS = {"kernel", "shape", "dtype", "implementation", "median_ms", "gbps", "tflops", "roofline_ms",
            "fraction_of_roofline", "eager_ms", "speedup_vs_eager", "compile_ms", "speedup_vs_compile", "baselines",
            "peak_mem_mb", "eager_peak_mem_mb", "input_mb", "max_abs_err", "runs"}


def test_quick_run_writes_json_and_plot(tmp_path, capsys):
    out = tmp_path / "tmp.json"
    assert main(["bench", "--quick", "--out", str(out), "--kernels", "vocab_stats,linear_vocab_stats,divergence"]) == 0
    report = json.loads(out.read_text())
    assert report["device"] and report["device_info"]["slug"] == "cpu" and report["quick"] is True
    assert [row["kernel"] for row in report["results"]] == ["vocab_stats", "linear_vocab_stats", "divergence"]
    for row in report["results"]:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["median_ms"] > 0 and row["eager_ms"] > 0 and row["runs"] >= 20
        assert row["speedup_vs_eager"] == pytest.approx(row["eager_ms"] / row["median_ms"])
        assert row["gbps"] == pytest.approx(row["bytes"] / (row["median_ms"] * 1e6))
        assert row["fraction_of_roofline"] is None and row["peak_mem_mb"] is None  # no peaks or CUDA memory on a CPU
        assert row["dtype"] == "float32" and row["implementation"] == "torch"
        assert max(row["max_abs_err"].values()) < 1e-4  # the references agree with eager PyTorch
    html = out.with_suffix(".html").read_text()
    assert 'src="http' not in html and len(html) > 1_000_000  # plotly.js inlined, nothing fetched: opens offline
    assert "wrote" in capsys.readouterr().out


def test_per_kernel_files(tmp_path):
    assert main(["bench", "--quick", "--results-dir", str(tmp_path), "--kernels", "vocab_stats"]) == 0
    report = json.loads((tmp_path / "vocab_stats-cpu.json").read_text())
    assert [row["kernel"] for row in report["results"]] == ["vocab_stats"]
    assert (tmp_path / "kernels-cpu.html").exists()


def test_errors_exit_2(capsys):
    assert main(["bench", "--quick", "--kernels", "nope"]) == 2
    assert "unknown kernel(s) nope; registered: vocab_stats" in capsys.readouterr().err
    assert main(["bench", "--quick", "--runs", "5"]) == 2
    if not torch.cuda.is_available():
        assert main(["bench"]) == 2
        assert "--quick" in capsys.readouterr().err


def test_rooflines_match_the_design_table():
    # DESIGN.md, H100 (3.35 TB/s, 989 bf16 TFLOP/s): 0.74 ms, 10.3 ms, 1.49 ms (KL), 2.97 ms (JS)
    h100 = dict(name="NVIDIA H100 80GB HBM3", slug="h100", peak_tbps=3.35, peak_tflops=989.0)
    cases, bf16 = timing.CASES, torch.bfloat16
    big = dict(T=8192, V=151936)
    assert timing.roofline_ms(cases["vocab_stats"].cost(dict(big, top_k=5), bf16), h100) == pytest.approx(0.74, abs=0.005)
    linear = cases["linear_vocab_stats"].cost(dict(big, d=4096, top_k=5), bf16)
    assert timing.roofline_ms(linear, h100) == pytest.approx(10.3, abs=0.05)
    assert timing.roofline_ms(cases["divergence"].cost(dict(big, js=False), bf16), h100) == pytest.approx(1.49, abs=0.005)
    assert timing.roofline_ms(cases["divergence"].cost(dict(big, js=True), bf16), h100) == pytest.approx(2.97, abs=0.01)


def test_device_names_map_to_peaks():
    for name, slug in (("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"), ("NVIDIA H100 PCIe", "h100-pcie")):
        match = next(entry for entry in timing.DEVICE_PEAKS if entry[0] in name)
        assert match[1] == slug


def test_gpu_session_script_rehearses_a_step_on_the_cpu(tmp_path):
    """benchmarks/gpu_session.sh: the steps a GPU lease runs, rehearsed at tiny shapes."""
    script = Path(__file__).parents[2] / "benchmarks" / "gpu_session.sh"
    env = dict(os.environ, QUICK="1", OUT=str(tmp_path), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(script), "attention"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "attention_stats-cpu.json").read_text())
    assert report["results"]
    environment = (tmp_path / "gpu-environment.txt").read_text()
    assert "no CUDA device" in environment and f"torch {torch.__version__}" in environment
    wrong = subprocess.run(["bash", str(script), "everything"], env=env, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "usage" in wrong.stderr


def test_quick_run_without_out_stays_out_of_the_committed_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick", "--kernels", "vocab_stats", "--no-compile"]) == 0
    report = json.loads((tmp_path / "bench-quick-cpu.json").read_text())
    assert [row["kernel"] for row in report["results"]] == ["vocab_stats"]
    assert not (tmp_path / "benchmarks").exists()
