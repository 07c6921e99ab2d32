# The commands people expect. Every target runs the set-up it needs, so any of them
# works as the first command on a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CDK := npx --no-install cdk

# Where torch and torchvision come from (same pinned versions either way, see docs/getting-started.md):
#   TORCH=default  the regular index: works everywhere; on Linux it is the CUDA build
#   TORCH=cpu      the PyTorch CPU index: no CUDA libraries, a fraction of the download
TORCH ?= default
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
ifeq ($(filter $(TORCH),default cpu),)
$(error TORCH must be default or cpu, not '$(TORCH)')
endif

# Local demo: where `make demo` keeps its model store and example images.
DEMO_STORE ?= .model-store
DEMO_MODEL ?= demo-shapes
PORT ?= 8080
# `make docs`: where the documentation site is served.
DOCS_PORT ?= 8000
# mkdocs 1.x prints a banner about mkdocs 2 on every build; the pinned 1.6 is what this site uses.
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup test lint docs format synth deploy diff destroy demo serve batch bench bench-engines smoke clean

setup: $(STAMP) node_modules/.package-lock.json

$(STAMP): requirements.txt requirements-dev.txt lambda_src/requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
# TORCH=cpu: torch and torchvision first, at the versions requirements-dev.txt pins; the
# second install then finds them satisfied (2.14.1+cpu is 2.14.1) and keeps them.
ifeq ($(TORCH),cpu)
	$(PYTHON) -m pip install --quiet --index-url $(TORCH_CPU_INDEX) \
		$$(grep -E '^(torch|torchvision)==' requirements-dev.txt)
endif
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

test: setup
	$(PYTHON) -m pytest

lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
# the documentation site: a broken link or anchor, or a page left out of the nav, fails here
	$(VENV)/bin/mkdocs build --strict --quiet

# serve the documentation site with live reload (needs the Python packages only)
docs: $(STAMP)
	$(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

format: setup
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

synth: setup
	$(CDK) synth --quiet

diff: setup
	$(CDK) diff

# SnapStart (the default) snapshots one model per function version, so the deploy pins the version
# LATEST names now: the function version names the model it snapshots, and a model published later
# reaches users only through the next `make deploy`. With nothing published yet (the first deploy)
# the function is deployed without SnapStart and follows LATEST; publish, then `make deploy` again.
# DEPLOY_MODEL and DEPLOY_STACK: the model_name and inference stack of a non-default deployment.
DEPLOY_MODEL ?= demo-shapes
DEPLOY_STACK ?= ImageClassifierInference
deploy: setup
	@if version=$$($(PYTHON) -m model_training versions --latest --model-name $(DEPLOY_MODEL) \
			--store stack:$(DEPLOY_STACK)); then \
		echo "deploying $(DEPLOY_MODEL) $$version (LATEST now), snapshotted with SnapStart"; \
		$(CDK) deploy --all -c model_name=$(DEPLOY_MODEL) -c model_version=$$version; \
	else \
		echo "no published $(DEPLOY_MODEL) to snapshot: deploying without SnapStart, following LATEST"; \
		$(CDK) deploy --all -c model_name=$(DEPLOY_MODEL) -c snap_start=false; \
	fi

destroy: setup
	$(CDK) destroy --all

demo: setup
	$(PYTHON) -m local_endpoint.demo --store $(DEMO_STORE) --model-name $(DEMO_MODEL) --port $(PORT)

serve: setup
	$(PYTHON) -m local_endpoint --store $(DEMO_STORE) --model-name $(DEMO_MODEL) --port $(PORT)

# Classify a folder (or s3:// prefix) with the demo store's model: make batch INPUT=DIR OUTPUT=FILE.jsonl
# (re-running with the same OUTPUT resumes).
batch: setup
	$(PYTHON) -m local_endpoint batch --store $(DEMO_STORE) --model-name $(DEMO_MODEL) \
		--input $(INPUT) --output $(OUTPUT)

bench: setup
	$(PYTHON) -m bench

# The torch and onnxruntime engines side by side (bench/results/engines.json): make bench-engines
bench-engines: setup
	$(PYTHON) -m bench.engines

smoke: setup
	$(PYTHON) -m endpoint_client smoke-test $(if $(STACK),--stack $(STACK),)

clean:
	rm -rf cdk.out site .pytest_cache .mypy_cache .ruff_cache
