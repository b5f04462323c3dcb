# pdoflow: the two commands of the README's quick start, and helpers.
#   make demo       install what is missing, build, start a demo cluster, run a workload
#   make demo-stop  stop the demo cluster
#   make test       install what is missing, then run every test suite
#   make bench      the benchmark suite (pdoflow-bench) on a tuned throwaway cluster

SHELL := /bin/bash
DEMO_PORT ?= 54329
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: demo demo-stop test bench bootstrap install fmt lint

demo: bootstrap install
	@scripts/demo.sh $(DEMO_PORT)

demo-stop:
	@scripts/cluster.sh stop demo
	@echo "demo cluster stopped (its data stays in .pg/demo; rm -rf it to start over)"

test:
	@scripts/test.sh

bench: bootstrap install
	@scripts/bench.sh

bootstrap:
	@scripts/bootstrap.sh

install: bootstrap
	@scripts/install.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --features pdoflow/pg_test -- -D warnings
