# Every target creates the virtual environment on first use, so a fresh machine needs only
# python3 (>= 3.11), make and, for the CDK targets, node/npm.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# jsii (under aws-cdk-lib) prints a banner on every run for a Node release it calls deprecated or
# end-of-life; it concerns jsii, not this project. cdk.json's app command sets the same.
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 18,20,22

.PHONY: demo test test-load lint unit synth cfn-lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev,infra,bench]'
	touch $(STAMP)

demo: $(STAMP)  ## ingest sample frames end to end on the embedded local stack
	$(BIN)/lambda-ingest demo

# Two workers (pytest-xdist, one per core here), a test file per worker so module and session fixtures are
# built once per file; plain `pytest` runs the same suite in one process.
test: $(STAMP) lint  ## the whole suite (what CI runs); lists the 15 slowest tests at the end
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=15

test-load: $(STAMP)  ## the full 1,000-frame burst (make test runs 100); prints the figures of docs/reliability.md
	RELIABILITY_LOAD_FRAMES=1000 $(BIN)/python -m pytest tests/reliability/test_load.py -s

lint: $(STAMP)
	$(BIN)/ruff check lambda_ingest infra tests bench
	$(BIN)/ruff format --check lambda_ingest infra tests bench

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

synth: $(STAMP)  ## synthesise the CDK stack (no AWS account needed)
	npx --yes aws-cdk@2 synth --quiet

# `make test` lints the same templates (tests/infra/test_infra_checks.py); this lints what `synth` wrote.
# W3005: CDK writes explicit DependsOn beside GetAtt references (functions on their roles' policies).
cfn-lint: synth  ## cfn-lint the synthesised template (zero errors and warnings is the gate)
	$(BIN)/cfn-lint --ignore-checks W3005 -- cdk.out/*.template.json

bench: $(STAMP)  ## benchmark lambda_ingest against ocs_ingester 3.2.0 (writes docs/benchmarks.md), then test-load
	$(BIN)/python -m bench.run
	$(MAKE) test-load

clean:
	rm -rf $(VENV) cdk.out .pytest_cache .ruff_cache .bundle
