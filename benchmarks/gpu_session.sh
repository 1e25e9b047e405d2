#!/usr/bin/env bash
# One GPU lease, step by step: each step fits in one 10-minute device command and leaves its
# logs and result JSONs in $OUT (default benchmarks/results), ready to be committed.
#
#   bash benchmarks/gpu_session.sh tests       # GPU tests: analyze/generate on CUDA against the CPU, and the
#                                              # Triton kernels compiled for the device, not interpreted
#   bash benchmarks/gpu_session.sh vocab       # workbench bench: vocab_stats, divergence (issue 3)
#   bash benchmarks/gpu_session.sh linear      # workbench bench: linear_vocab_stats, linear_divergence (issue 3)
#   bash benchmarks/gpu_session.sh attention   # attention_stats against flash attention, eager OOM (issue 5)
#   bash benchmarks/gpu_session.sh sample      # sampler against sort-based PyTorch and FlashInfer (issue 4)
#   QUICK=1 bash benchmarks/gpu_session.sh all # every step at tiny shapes: a rehearsal on a CPU
#   bash benchmarks/gpu_session.sh wheels      # here, with a registry: the baselines' wheels to carry
#
# GPU images may hold torch and Triton but not the package's views (panel, plotly): the
# package is installed without dependencies, which the kernels and benchmarks do not need.
# Machines that cannot reach a registry get the public baselines (Liger-Kernel, Cut
# Cross-Entropy: pure Python over Triton) as wheels in benchmarks/wheels/, carried along.
# FlashInfer is left out: its wheel alone is 62 MB and it compiles its kernels at first use.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
QUICK_FLAG=${QUICK:+--quick}
WHEELS=benchmarks/wheels
case "${1:-}" in
    tests|vocab|linear|attention|sample|all|wheels) ;;
    *) echo "usage: $0 tests|vocab|linear|attention|sample|all|wheels  (QUICK=1 for tiny shapes, OUT=DIR for results)" >&2
       exit 2 ;;
esac

if [ "${1:-}" = wheels ]; then
    "$PY" -m pip download -q --no-deps -d "$WHEELS" liger-kernel cut-cross-entropy
    ls -l "$WHEELS"
    exit 0
fi

if ! "$PY" -c "import workbench.kernels" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 ||
        export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the package is one folder: importable from here
fi
if compgen -G "$WHEELS/*.whl" >/dev/null && "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    # the baselines run on CUDA only: a CPU rehearsal leaves its environment as it is
    "$PY" -m pip install -q --no-deps "$WHEELS"/*.whl
fi
"$PY" - <<'EOF' | tee "$OUT/gpu-environment.txt"
import importlib.metadata, platform, torch, triton
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print(f"{gpu}; torch {torch.__version__}; triton {triton.__version__}; python {platform.python_version()}")
for name in ("liger-kernel", "cut-cross-entropy", "flashinfer-python", "flash-attn"):
    try:
        print(f"baseline {name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        print(f"baseline {name}: not installed")
EOF

step_tests() {
    "$PY" -m pytest -q -p no:cacheprovider --durations=10 tests/test_gpu_end_to_end.py tests/kernel_tests/test_gpu.py \
        tests/kernel_tests/test_attention_stats_triton.py tests/kernel_tests/test_sample_triton.py \
        tests/kernel_tests/test_triton_vocab_stats.py 2>&1 | tee "$OUT/gpu-tests.log"
}
step_vocab() {
    "$PY" -m workbench bench $QUICK_FLAG --kernels vocab_stats,divergence --results-dir "$OUT" 2>&1 | tee "$OUT/bench-vocab.log"
}
step_linear() {
    "$PY" -m workbench bench $QUICK_FLAG --kernels linear_vocab_stats,linear_divergence --results-dir "$OUT" 2>&1 \
        | tee "$OUT/bench-linear.log"
}
step_attention() {
    "$PY" benchmarks/attention_bench.py $QUICK_FLAG --results-dir "$OUT" 2>&1 | tee "$OUT/attention.log"
}
step_sample() {
    "$PY" benchmarks/sample_bench.py $QUICK_FLAG --results-dir "$OUT" 2>&1 | tee "$OUT/sample.log"
}

case "${1:-}" in
    tests|vocab|linear|attention|sample) "step_$1" ;;
    all) for step in tests vocab linear attention sample; do "step_$step"; done ;;
esac
