# The README's two commands: `make run` (the default job) and `make test` (the whole suite).
# Each installs what it needs (system packages, assets, and for tests the Python oracle venv).
SHELL := /bin/bash
MODEL ?= .assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
CNL := .build/release/cnl

.PHONY: run test setup setup-oracle setup-slurm assets fixtures build build-tests bench bench-evaluate

## The default job: localize GSM8K's capability neurons in SmolLM2 (64 samples, final answers)
## with a real `mpirun` of NP ranks, one BLAS thread each, then print the report. --force: a
## second `make run` replaces the previous default run instead of refusing it.
NP ?= 2
CONFIG ?= configs/gsm8k-final.yaml
run: setup assets build
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 \
	  mpirun --oversubscribe -np $(NP) $(CNL) locate --config $(CONFIG) --force

## Every test: Swift unit and parity tests against HF transformers oracles. stdbuf: the tests'
## lines reach a CI log as they happen, not in 4 KB blocks (a hang then shows where it is).
## OPENBLAS_CORETYPE: the kernels `cnl` restarts itself with where OpenBLAS fell back to generic
## ones (`cnl blas`); the test process loads OpenBLAS itself, so it gets them from here.
test: setup-oracle setup-slurm assets fixtures build-tests
	core=$$($(CNL) blas --coretype); \
	  if [ -n "$$core" ]; then export OPENBLAS_CORETYPE=$$core; echo "test: OPENBLAS_CORETYPE=$$core (cnl blas)"; fi; \
	  stdbuf -oL -eL swift test -c release --skip-build

setup:
	scripts/setup.sh

setup-oracle:
	scripts/setup.sh --oracle

## Slurm + munge + the pmix plugin (SlurmTests start the one-node cluster: scripts/slurm-cluster.sh).
setup-slurm:
	scripts/setup.sh --slurm

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

## Evaluation speed of cnl evaluate vs HF transformers on the same samples, in one run.
bench-evaluate: setup-oracle assets fixtures build
	scripts/bench-evaluate.sh 1
