# Orderflow developer commands. `make run` and `make test` each set up everything first.
.PHONY: setup run test lint bench stack-up stack-down clean

setup:
	@scripts/bootstrap.sh

run: setup
	@.venv/bin/python -m localdev run

test: setup
	@scripts/test.sh

lint: setup
	@scripts/test.sh --lint-only

bench: setup
	@.venv/bin/python benchmarks/cold_start.py
	@.venv/bin/python benchmarks/imports.py
	@.venv/bin/python benchmarks/fulfillment.py

stack-up: setup
	@.venv/bin/python -m localdev.stack up

stack-down:
	@.venv/bin/python -m localdev.stack down

clean:
	rm -rf .localdev .mypy_cache .ruff_cache .pytest_cache
