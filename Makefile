# The commands people expect. Every target runs the set-up it needs, so any of them
# works as the first command on a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CDK := npx --no-install cdk

# Local demo: where `make demo` keeps its model store and example images.
DEMO_STORE ?= .model-store
DEMO_MODEL ?= demo-shapes
PORT ?= 8080

.PHONY: setup test lint format synth deploy diff destroy demo serve bench smoke clean

setup: $(STAMP) node_modules/.package-lock.json

$(STAMP): requirements.txt requirements-dev.txt lambda_src/requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
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

format: setup
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

synth: setup
	$(CDK) synth --quiet

diff: setup
	$(CDK) diff

deploy: setup
	$(CDK) deploy --all

destroy: setup
	$(CDK) destroy --all

demo: setup
	$(PYTHON) -m local_endpoint.demo --store $(DEMO_STORE) --model-name $(DEMO_MODEL) --port $(PORT)

serve: setup
	$(PYTHON) -m local_endpoint --store $(DEMO_STORE) --model-name $(DEMO_MODEL) --port $(PORT)

bench: setup
	$(PYTHON) -m bench

smoke: setup
	$(PYTHON) -m endpoint_client smoke-test $(if $(STACK),--stack $(STACK),)

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
