# The two commands a newcomer needs: `make demo` and `make test`. Each does its
# own setup (venv, Python deps, Rust build, Debian servers) and is quick to rerun.

SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD_STAMP := $(VENV)/.built
RUST_SOURCES := $(shell find rust -name '*.rs') Cargo.toml Cargo.lock
DEBIAN_PACKAGES := influxdb victoria-metrics
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup build demo test test-rust test-python bench bench-build bench-save bench-check lint fuzz soak clean

help:
	@echo "make demo   - run the recorder end to end on local services"
	@echo "make test   - lint, cargo test, pytest against real servers"
	@echo "make bench  - benchmarks with same-run baselines -> benches/results.md"
	@echo "make bench-save  - save a run to compare with later (BENCH_SAVE, default 'before')"
	@echo "make bench-check - fail if a same-run ratio fell below benches/reference.json;"
	@echo "                   BENCH_COMPARE=0001 also compares medians with saved run 0001"
	@echo "make lint   - cargo fmt/clippy, ruff, mypy, stub check"
	@echo "make fuzz   - atheris on the frame parser and line encoder (FUZZ_SECONDS each)"
	@echo "make soak   - 4 x 2,000 book updates/s + ledger traffic (SOAK_MINUTES, default 60)"

# Debian's servers for the tests and the demo, and a venv holding maturin.
$(STAMP):
	@command -v influxd >/dev/null && command -v victoria-metrics >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES); }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'maturin>=1.9,<2'
	touch $@

Cargo.lock:
	cargo generate-lockfile

# The extension, the package (editable) and its dev dependencies, in one step.
$(BUILD_STAMP): $(STAMP) $(RUST_SOURCES) pyproject.toml
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
	  $(VENV)/bin/maturin develop --release --locked --extras dev -q
	touch $@

setup: $(BUILD_STAMP)
build: $(BUILD_STAMP)

demo: setup
	$(VENV)/bin/galfriday-recorder demo

test: setup lint test-rust test-python

test-rust:
	cargo test --locked --quiet

test-python: setup
	$(PY) -m pytest -q

# The extension with its benchmark helpers (the `bench` feature).
bench-build: setup
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
	  $(VENV)/bin/maturin develop --release --locked --features python,bench -q

bench: bench-build
	mkdir -p .benchmarks
	$(PY) -m pytest benches -q --benchmark-only --benchmark-json=.benchmarks/latest.json
	$(PY) benches/report.py .benchmarks/latest.json benches/results.md

# Before a change: `make bench-save`; after it: `make bench-check BENCH_COMPARE=0001`
# (the number pytest-benchmark printed when saving). BENCHES narrows the run.
BENCHES ?= benches
BENCH_SAVE ?= before
BENCH_COMPARE ?=
BENCH_COMPARE_FAIL ?= median:25%

bench-save: bench-build
	$(PY) -m pytest $(BENCHES) -q --benchmark-only --benchmark-save=$(BENCH_SAVE)

bench-check: bench-build
	mkdir -p .benchmarks
	$(PY) -m pytest $(BENCHES) -q --benchmark-only --benchmark-json=.benchmarks/check.json \
	  $(if $(BENCH_COMPARE),--benchmark-compare=$(BENCH_COMPARE) --benchmark-compare-fail=$(BENCH_COMPARE_FAIL))
	$(PY) benches/check.py .benchmarks/check.json benches/reference.json

lint: setup
	cargo fmt --check
	cargo clippy --locked --quiet --all-targets -- -D warnings
	cargo clippy --locked --quiet --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check python tests benches scripts
	$(VENV)/bin/ruff format --check python tests benches scripts
	$(VENV)/bin/mypy
# Tests, benches, scripts: one run per directory, as their modules import each other as
# top-level modules and two conftest.py would clash in one run. MYPYPATH: what the
# benches and tests/test_bench_check.py put on sys.path.
	set -e; export MYPYPATH=benches:tests/bot:tests/ledger:tests/market; \
	$(VENV)/bin/mypy tests/*.py; \
	for dir in tests/bot tests/faults tests/ledger tests/market tests/series benches scripts; do \
	  $(VENV)/bin/mypy $$dir; \
	done
	$(PY) -m mypy.stubtest galfriday_recorder._core --allowlist .stubtest-allowlist --ignore-unused-allowlist

FUZZ_SECONDS ?= 600
SOAK_MINUTES ?= 60

fuzz: setup
	scripts/fuzz.sh $(FUZZ_SECONDS)

soak: setup
	$(PY) scripts/soak.py --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) target .galfriday
