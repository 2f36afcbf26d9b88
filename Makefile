# The two commands a newcomer needs: `make run` (the demo) and `make test`. Each creates .venv
# on first use and reinstalls when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run serve test lint format clean bench bench-gateway bench-meter bench-idle bench-storm bench-ocpi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The demo: the server plus simulated stations charging at a demo site (Ctrl+C stops it).
run: $(STAMP)
	$(BIN)/cpms demo

# The server alone, for real stations.
serve: $(STAMP)
	$(BIN)/cpms serve

test: $(STAMP)
	$(BIN)/python -m pytest

# Benchmarks (bench/, docs/PERFORMANCE.md): every scenario beside its baselines, about ten
# minutes in all; each bench-<scenario> runs one at its full size. They report, never fail.
bench: $(STAMP)
	$(BIN)/python -m bench

bench-gateway: $(STAMP)
	$(BIN)/python -m bench.gateway_throughput

bench-meter: $(STAMP)
	$(BIN)/python -m bench.meter_values

bench-idle: $(STAMP)
	$(BIN)/python -m bench.idle_capacity

bench-storm: $(STAMP)
	$(BIN)/python -m bench.reconnect_storm

bench-ocpi: $(STAMP)
	$(BIN)/python -m bench.ocpi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .venv-extrawest .pytest_cache .ruff_cache cpms.egg-info
