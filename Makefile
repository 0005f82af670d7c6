# make demo | make test | make bench — each creates .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test test-all bench venv clean

$(BIN)/i2am: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/i2am

demo: venv
	$(BIN)/i2am demo $(ARGS)

test: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(ARGS)

test-all: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "slow or not slow" $(ARGS)

bench: venv
	$(BIN)/python benchmarks/capture_overhead.py $(ARGS)

clean:
	rm -rf $(VENV) outputs/*/
