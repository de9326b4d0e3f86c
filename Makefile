# The README's two commands: `make run` (the default job) and `make test` (the whole suite).
# Each installs what it needs (system packages, assets, and for tests the Python oracle venv).
SHELL := /bin/bash
MODEL ?= .assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
CNL := .build/release/cnl

.PHONY: run test setup setup-oracle assets fixtures build build-tests bench

## The default job on the embedded default model and data.
run: setup assets build
	$(CNL) inspect $(MODEL)
	@echo
	$(CNL) generate $(MODEL) --gsm8k .assets/data/gsm8k/test.jsonl --index 0 --max-tokens 48

## Every test: Swift unit and parity tests against HF transformers oracles.
test: setup-oracle assets fixtures build-tests
	swift test -c release --skip-build

setup:
	scripts/setup.sh

setup-oracle:
	scripts/setup.sh --oracle

assets:
	scripts/fetch-assets.sh

fixtures: setup-oracle assets
	scripts/make-fixtures.sh

build: setup
	swift build -c release

build-tests: setup
	swift build -c release --build-tests

## Forward speed of cnl vs PyTorch in one run.
bench: setup-oracle assets build
	scripts/bench-forward.sh 1 2
