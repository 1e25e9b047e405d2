"""Kernel benchmarks (`workbench bench`): each registered case (workbench/bench/cases.py)
timed against eager PyTorch, torch.compile and public kernels, with its roofline.

For every case and shape:
    median_ms          median over `runs` (>= 20) calls after warm-up: CUDA events on a
                       GPU, perf_counter on a CPU
    gbps, tflops       bytes / time and FLOP / time of the case's roofline model
    roofline_ms        max(bytes / peak bandwidth, FLOP / peak bf16 FLOP/s) on this device
    fraction_of_roofline = roofline_ms / median_ms (None where the device's peaks are unknown)
    speedup_vs_eager   eager_ms / median_ms  (eager: plain PyTorch that materializes what
                       it needs, as a user would write it); speedup_vs_compile likewise
                       for torch.compile of the same function; baselines: Liger-Kernel /
                       Cut Cross-Entropy when installed, each timed on the part it shares
    peak_mem_mb        CUDA memory allocated during one call beyond what was allocated
                       before it (the inputs): the kernel's extra memory; eager's likewise
    max_abs_err        the kernel against eager on the case's key outputs

`--quick` runs tiny shapes on the CPU (the references against eager) so that the harness
itself is tested without a GPU. Output: JSON {"device", "results": [...], ...} and a
plotly HTML page next to it (plotly.js inlined: opens offline).
"""
from __future__ import annotations

import json
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import WorkbenchError
from ..kernels.dispatch import triton_implementation

# (substring of the CUDA device name, short name for file names, HBM TB/s, dense bf16 TFLOP/s)
# Checked in order: the first match wins.
DEVICE_PEAKS = (
    ("H200", "h200", 4.8, 989.0),
    ("H100 NVL", "h100-nvl", 3.9, 835.0),
    ("H100 PCIe", "h100-pcie", 2.0, 756.0),
    ("H100", "h100", 3.35, 989.0),
    ("A100-SXM4-80GB", "a100", 2.039, 312.0),
    ("A100", "a100", 1.555, 312.0),
)
MIN_RUNS = 20
RESULTS_DIR = Path("benchmarks/results")  # committed results, relative to the repository root


@dataclass
class Case:
    """One kernel's benchmark. `make(shape, dtype, device)` builds its inputs (a dict);
    `kernel`, `eager` and each baseline take those inputs and return outputs; `cost(shape,
    dtype)` gives (bytes moved, FLOP) of the roofline model; `errors(out, eager_out)` the
    max abs errors of its key outputs. `baselines` maps a name to a factory that takes the
    inputs and returns the timed function, or None when that package is not installed."""

    kernel: str
    shapes: list[dict]
    quick_shapes: list[dict]
    make: Callable[[dict, torch.dtype, torch.device], dict]
    kernel_fn: Callable[[dict], Any]
    eager: Callable[[dict], Any]
    cost: Callable[[dict, torch.dtype], tuple[float, float]]
    errors: Callable[[Any, Any], dict] | None = None
    baselines: dict[str, Callable[[dict], Callable[[dict], Any] | None]] = field(default_factory=dict)
    dtype: torch.dtype = torch.bfloat16  # on GPUs; quick runs on the CPU use fp32


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    """Add a benchmark case (one per kernel name)."""
    CASES[case.kernel] = case
    return case


# ----- device ------------------------------------------------------------------------------------
def device_info(device: torch.device) -> dict:
    """Name, short name, peak bandwidth and bf16 FLOP/s (None when not in DEVICE_PEAKS)."""
    if device.type != "cuda":
        return dict(name=platform.processor() or platform.machine() or "cpu", slug="cpu", peak_tbps=None,
                    peak_tflops=None)
    name = torch.cuda.get_device_name(device)
    for key, slug, tbps, tflops in DEVICE_PEAKS:
        if key in name:
            return dict(name=name, slug=slug, peak_tbps=tbps, peak_tflops=tflops)
    return dict(name=name, slug=re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"), peak_tbps=None, peak_tflops=None)


def environment(device: torch.device, packages: tuple[str, ...] = ("triton",)) -> dict:
    """Where a benchmark ran, for its JSON report: {"device": name, "device_info":
    device_info(device), "python", "torch" and each of `packages` (module names): its version,
    None where it does not import}. Call it once the benchmark has run: on a CPU, triton
    imported before TRITON_INTERPRET is set would not interpret the kernels."""
    info = device_info(device)
    versions = {package: _version(package) for package in packages}
    return dict(device=info["name"], device_info=info, python=platform.python_version(), torch=torch.__version__,
                **versions)


def _version(package: str) -> str | None:
    try:
        return __import__(package).__version__
    except Exception:  # noqa: BLE001 - absent, or built against another CUDA or torch
        return None


def roofline_ms(cost: tuple[float, float], info: dict) -> float | None:
    moved, flop = cost
    if info["peak_tbps"] is None:
        return None
    return max(moved / (info["peak_tbps"] * 1e12), flop / (info["peak_tflops"] * 1e12)) * 1e3


# ----- measurement -------------------------------------------------------------------------------
def median_ms(fn: Callable, inputs: dict, device: torch.device, runs: int) -> float:
    """Median wall time of fn(inputs) in ms over `runs` calls (warm-up is the caller's)."""
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(inputs)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(runs):
            begin = time.perf_counter()
            fn(inputs)
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def peak_memory_mb(fn: Callable, inputs: dict, device: torch.device):
    """(outputs of one call, MiB allocated at its peak beyond what was allocated before; None off CUDA)."""
    if device.type != "cuda":
        return fn(inputs), None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    out = fn(inputs)
    torch.cuda.synchronize(device)
    return out, (torch.cuda.max_memory_allocated(device) - before) / 2**20


def timed(fn: Callable, inputs: dict, device: torch.device, runs: int, warmup: int) -> dict:
    """{"ms", "peak_mem_mb", "out"} of one implementation, or {"error"} when it fails
    (out of memory, a missing compiler, a baseline's own limits)."""
    try:
        for _ in range(warmup):  # compilation and autotuning first: their allocations are not the kernel's
            fn(inputs)
        out, memory = peak_memory_mb(fn, inputs, device)
        return dict(ms=median_ms(fn, inputs, device, runs), peak_mem_mb=memory, out=out)
    except Exception as error:  # noqa: BLE001 - recorded in the results, the other cases go on
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return dict(error=f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}")


def tensor_mb(inputs: dict) -> float:
    return sum(t.numel() * t.element_size() for t in inputs.values() if isinstance(t, torch.Tensor)) / 2**20


# ----- one case ----------------------------------------------------------------------------------
def bench_case(case: Case, shape: dict, device: torch.device, info: dict, *, runs: int, compile: bool) -> dict:
    """One result row (see the module docstring)."""
    implementation = "triton" if device.type == "cuda" and triton_implementation(case.kernel) else "torch"
    dtype = case.dtype if device.type == "cuda" else torch.float32  # CPUs have no fast bf16 path
    inputs = case.make(shape, dtype, device)
    warmup = 3
    row = dict(kernel=case.kernel, shape=shape, dtype=str(dtype).removeprefix("torch."),
               implementation=implementation, runs=runs, input_mb=round(tensor_mb(inputs), 3))
    mine = timed(case.kernel_fn, inputs, device, runs, warmup)
    eager = timed(case.eager, inputs, device, runs, warmup)
    moved, flop = case.cost(shape, dtype)
    row.update(bytes=moved, flop=flop, median_ms=mine.get("ms"), peak_mem_mb=mine.get("peak_mem_mb"),
               eager_ms=eager.get("ms"), eager_peak_mem_mb=eager.get("peak_mem_mb"),
               roofline_ms=roofline_ms((moved, flop), info))
    if "error" in mine:
        row["error"] = mine["error"]
    ms = row["median_ms"]
    row["gbps"] = moved / (ms * 1e6) if ms else None
    row["tflops"] = flop / (ms * 1e9) if ms and flop else None
    row["fraction_of_roofline"] = row["roofline_ms"] / ms if ms and row["roofline_ms"] else None
    row["speedup_vs_eager"] = eager["ms"] / ms if ms and "ms" in eager else None
    if "error" in eager:
        row["eager_error"] = eager["error"]
    if case.errors and "out" in mine and "out" in eager:
        row["max_abs_err"] = {name: float(value) for name, value in case.errors(mine["out"], eager["out"]).items()}
    eager.pop("out", None)
    if compile:
        compiled = timed(torch.compile(case.eager), inputs, device, runs, warmup)
        compiled.pop("out", None)
        row["compile_ms"] = compiled.get("ms")
        row["speedup_vs_compile"] = compiled["ms"] / ms if ms and "ms" in compiled else None
        if "error" in compiled:
            row["compile_error"] = compiled["error"]
    else:
        row["compile_ms"] = row["speedup_vs_compile"] = None
    row["baselines"] = {}
    for name, factory in case.baselines.items():
        try:
            fn = factory(inputs) if device.type == "cuda" else None  # the public kernels need CUDA
        except Exception as error:  # noqa: BLE001 - an installed package with another API: recorded
            row["baselines"][name] = dict(error=f"{type(error).__name__}: {error}"[:300])
            continue
        if fn is None:
            continue
        result = timed(fn, inputs, device, runs, warmup)
        result.pop("out", None)
        if ms and "ms" in result:
            result["speedup"] = result["ms"] / ms
        row["baselines"][name] = result
    del inputs, mine
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


# ----- the command -------------------------------------------------------------------------------
def run(kernels: list[str] | None = None, *, quick: bool = False, runs: int = MIN_RUNS, compile: bool | None = None,
        progress: Callable[[str], None] = print) -> dict:
    """Benchmark the registered cases; returns {"device", "device_info", "results", ...}."""
    from . import cases  # noqa: F401 - registers the cases

    if runs < MIN_RUNS:
        raise WorkbenchError(f"--runs must be at least {MIN_RUNS} (the median needs them), got {runs}")
    names = list(CASES) if not kernels else kernels
    unknown = [name for name in names if name not in CASES]
    if unknown:
        raise WorkbenchError(f"unknown kernel(s) {', '.join(unknown)}; registered: {', '.join(CASES)}")
    if quick:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        raise WorkbenchError("the full benchmark shapes (e.g. 8192 x 151936 logits) need a CUDA GPU; "
                             "use --quick for tiny shapes on the CPU")
    compile = (device.type == "cuda") if compile is None else compile
    info = device_info(device)
    results = []
    for name in names:
        case = CASES[name]
        if device.type == "cuda" and triton_implementation(name) is None:
            progress(f"{name}: no Triton implementation yet, skipped")
            continue
        for shape in case.quick_shapes if quick else case.shapes:
            progress(f"{name} {shape} ...")
            results.append(bench_case(case, shape, device, info, runs=runs, compile=compile))
            progress("  " + summary(results[-1]))
    return dict(environment(device), quick=quick, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                results=results)


def summary(row: dict) -> str:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    return (f"{fmt(row['median_ms'], '.3f')} ms, {fmt(row['gbps'], '.0f')} GB/s, "
            f"{fmt(row['fraction_of_roofline'], '.0%')} of roofline, {fmt(row['speedup_vs_eager'], '.1f')}x eager, "
            f"{fmt(row['speedup_vs_compile'], '.1f')}x compile" + (f"  [{row['error']}]" if "error" in row else ""))


def write(report: dict, out: Path | None, results_dir: Path) -> list[Path]:
    """--out FILE: one JSON (+ FILE.html). Otherwise results_dir/<kernel>-<device>.json per
    kernel and results_dir/kernels-<device>.html. Returns the paths written."""
    slug = report["device_info"]["slug"]
    written = []
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        written.append(out)
        plot_path = out.with_suffix(".html")
    else:
        results_dir.mkdir(parents=True, exist_ok=True)
        for kernel in dict.fromkeys(row["kernel"] for row in report["results"]):
            path = results_dir / f"{kernel}-{slug}.json"
            rows = [row for row in report["results"] if row["kernel"] == kernel]
            path.write_text(json.dumps(dict(report, results=rows), indent=1) + "\n", encoding="utf-8")
            written.append(path)
        plot_path = results_dir / f"kernels-{slug}.html"
    try:
        fig = figure(report)
    except ImportError:  # plotly is a dependency of the package, but GPU images may lack it
        print(f"plotly is not installed: no plot next to {written[0]}")
        return written
    fig.write_html(plot_path, include_plotlyjs=True)
    written.append(plot_path)
    return written


def figure(report: dict):
    """Two panels: fraction of roofline, and speedups (log scale), per kernel and shape."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = report["results"]
    labels = [f"{row['kernel']}<br>{_shape_label(row['shape'])}" for row in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("fraction of roofline", "speedup (x, log scale)"))
    fig.add_bar(x=labels, y=[row["fraction_of_roofline"] for row in rows], name="roofline", row=1, col=1)
    series = {"vs eager": "speedup_vs_eager", "vs torch.compile": "speedup_vs_compile"}
    for name, key in series.items():
        fig.add_bar(x=labels, y=[row[key] for row in rows], name=name, row=1, col=2)
    for baseline in dict.fromkeys(name for row in rows for name in row["baselines"]):
        fig.add_bar(x=labels, y=[row["baselines"].get(baseline, {}).get("speedup") for row in rows],
                    name=f"vs {baseline}", row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", row=1, col=1)
    fig.update_layout(title=f"workbench kernels on {report['device']}", barmode="group", height=520)
    return fig


def _shape_label(shape: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in shape.items())


def main(args) -> int:
    """`workbench bench` (see cli/main.py for the options)."""
    kernels = [name.strip() for name in args.kernels.split(",") if name.strip()] if args.kernels else None
    report = run(kernels, quick=args.quick, runs=args.runs, compile=False if args.no_compile else None)
    out, results_dir = args.out, args.results_dir or RESULTS_DIR
    if args.quick and out is None and args.results_dir is None:  # a check of the harness: kept out of the results
        out = Path(f"bench-quick-{report['device_info']['slug']}.json")
    for path in write(report, out, results_dir):
        print(f"wrote {path}")
    return 0
