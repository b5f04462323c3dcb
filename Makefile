# pdoflow: the two commands of the README's quick start, and helpers.
#   make demo       install what is missing, build, start a demo cluster, run a workload,
#                   start the dashboard (pdoflow-run serve) on 127.0.0.1:8080
#   make demo-stop  stop the demo cluster and its server (pdoflow-run serve)
#   make test       install what is missing, then run every test suite
#                   (PostgreSQL 15; `make test PG=17` or `PG=18` for another)
#   make bench      the benchmark suite (pdoflow-bench) on a tuned throwaway cluster
#   make package    Debian packages in target/packages: postgresql-15|17|18-pdoflow, pdoflow-run

SHELL := /bin/bash
DEMO_PORT ?= 54329
# The PostgreSQL major version to build for and test against: 15, 17 or 18.
PG ?= 15
export PG_MAJOR := $(PG)
# PGRX_TESTS=no: `make test` skips the #[pg_test] suites (CI runs them on 15).
export PGRX_TESTS ?= yes
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: demo demo-stop test bench bootstrap install package fmt lint

demo: bootstrap install
	@scripts/demo.sh $(DEMO_PORT)

demo-stop:
	@scripts/demo.sh stop
	@scripts/cluster.sh stop demo
	@echo "demo server and cluster stopped (the data stays in .pg/demo; rm -rf it to start over)"

test:
	@scripts/test.sh

bench: bootstrap install
	@scripts/bench.sh

bootstrap:
	@scripts/bootstrap.sh

install: bootstrap
	@scripts/install.sh

package:
	@scripts/package.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --features pdoflow/pg_test -- -D warnings
