# make demo | make test | make bench — each creates .venv on first use.
# make cluster-up | make cluster-down: a one-node SLURM cluster on localhost (.ci/cluster.sh) for the slow SLURM test.
# make venv LOCK=0: the latest versions pyproject.toml allows instead of requirements.lock; make lock: refresh it.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
LOCK    ?= 1
# torch is installed first and is not in the lock (GPU machines keep their CUDA build); the lock is resolved against
# the CPU build so it holds no CUDA runtime packages.
LOCK_TORCH ?= torch==2.13.0+cpu
CONSTRAINTS := $(if $(filter 1,$(LOCK)),-c requirements.lock)
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test test-slow test-all test-lowest docs bench bench-peers bench-gpu-dry venv lock clean cluster-up cluster-down

$(BIN)/i2am: pyproject.toml requirements.lock setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]' $(CONSTRAINTS)
	touch $@

venv: $(BIN)/i2am

demo: venv
	$(BIN)/i2am demo $(ARGS)

test: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 $(ARGS)

test-slow: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m slow $(ARGS)

test-all: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "slow or not slow" $(ARGS)

cluster-up:
	bash .ci/cluster.sh up

cluster-down:
	bash .ci/cluster.sh down

docs: venv
	$(BIN)/mkdocs build --strict --site-dir site

lock: venv
	echo "$(LOCK_TORCH)" > $(VENV)/torch-constraint.txt
	$(BIN)/pip-compile --quiet --upgrade --strip-extras --extra dev --unsafe-package torch --unsafe-package pip \
		-c $(VENV)/torch-constraint.txt --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

# make test-lowest: a separate venv with every direct dependency at its pyproject lower bound (uv's
# --resolution lowest-direct; transitive ones at their newest compatible release), torch kept at the installed build,
# then the core tests. Proves the lower bounds in pyproject.toml (docs/install.md).
LOWEST_VENV  ?= .venv-lowest
LOWEST_TESTS ?= tests/unit/adapters/test_models_tiny.py tests/unit/tracing/test_trace_transformers.py tests/unit/tracing/test_trace_pipelines.py \
	tests/unit/engine/test_attribution_*.py tests/unit/app/test_config_schema.py tests/unit/app/test_configs.py tests/integration/test_tasks_attribute.py \
	tests/unit/evaluation/test_metrics_imacs.py tests/unit/evaluation/test_metrics_correlation.py tests/unit/measures/test_metrics_localization.py \
	tests/unit/data/test_data_coco.py tests/unit/data/test_data_toy.py tests/unit/app/test_dashboards.py

test-lowest:
	rm -rf $(LOWEST_VENV)
	$(PY) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install -q "$(TORCH)" uv
	$(LOWEST_VENV)/bin/python -c "from importlib.metadata import version; print('torch==' + version('torch'))" > $(LOWEST_VENV)/torch-override.txt
	$(LOWEST_VENV)/bin/uv pip install -q --python $(LOWEST_VENV)/bin/python --resolution lowest-direct \
		--override $(LOWEST_VENV)/torch-override.txt -e . "pytest>=8" "tensorboard>=2.15"
	$(LOWEST_VENV)/bin/python -m pip freeze
	$(LOWEST_VENV)/bin/python -m pytest -x -q $(LOWEST_TESTS) $(ARGS)

bench: venv
	$(BIN)/python benchmarks/capture_overhead.py $(ARGS)

# make bench-peers: i2am next to attention-map-diffusers 1.0 and DAAM 0.2.0 on equal work, each tool in its own
# process (benchmarks/peers.py), and the table in docs/results.md rewritten. The peers live in their own venv,
# never the project's: the torch wheel the project uses, diffusers/transformers at the lock's versions, and the two
# peers with --no-deps (attention-map-diffusers declares torchvision, which pulls a torch build that breaks
# diffusers' FLUX import; DAAM pins diffusers 0.21 and transformers 4.30). DAAM imports spacy and matplotlib.
PEERS_VENV ?= .venv-peers
PEERS_DEPS := diffusers transformers safetensors matplotlib scipy numpy pillow tqdm

$(PEERS_VENV)/peers-installed:
	test -x $(PEERS_VENV)/bin/python || $(PY) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(PEERS_VENV)/bin/python -m pip install -q $(PEERS_DEPS) -c requirements.lock
	$(PEERS_VENV)/bin/python -m pip install -q spacy
	$(PEERS_VENV)/bin/python -m pip install -q --no-deps attention-map-diffusers==1.0.0 daam==0.2.0
	touch $@

bench-peers: venv $(PEERS_VENV)/peers-installed
	$(BIN)/python benchmarks/peers.py --peers-python $(PEERS_VENV)/bin/python --docs $(ARGS)

# make bench-gpu-dry: the GPU benchmark script, every section (UNet, FLUX, Wan video, precision), at tiny sizes on
# the CPU (on a GPU: python benchmarks/gpu.py [--sections ...])
bench-gpu-dry: venv
	$(BIN)/python benchmarks/gpu.py --device cpu --dry-run $(ARGS)

clean:
	rm -rf $(VENV) $(PEERS_VENV) outputs/*/ site/
