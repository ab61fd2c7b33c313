# Orderflow developer commands. `make run` and `make test` each set up everything first.
.PHONY: setup setup-browser run test lint bench stack-up stack-down stack-reset clean token

setup:
	@scripts/bootstrap.sh

# setup plus headless Chromium and its driver, for the API reference's browser test.
setup-browser:
	@scripts/bootstrap.sh --with-browser

# make run RUN_ARGS=--no-func: the project's local host even where func (Core Tools) is on PATH.
RUN_ARGS ?=
run: setup
	@.venv/bin/python -m localdev run $(RUN_ARGS)

test: setup-browser
	@scripts/test.sh

lint: setup
	@scripts/test.sh --lint-only

# Every figure beside its floor in one table (docs/PERFORMANCE.md); then event-processing latency.
bench: setup
	@.venv/bin/python -m benchmarks
	@.venv/bin/python benchmarks/fulfillment.py

# A bearer token from the local issuer (make run / make stack-up must be up), on stdout:
#   make token CUSTOMER=alice                 a customer's app: sub=alice, scp=Orders.ReadWrite
#   make token ROLES="Inventory.ReadWrite"    app roles (space-separated)
#   make token                                every app role (a shop backend)
# Extra options: make token ARGS="--expires-in -60 --aud api://other" (python -m localdev token -h).
CUSTOMER ?=
ROLES ?=
token:
	@.venv/bin/python -m localdev token $(if $(CUSTOMER),--customer "$(CUSTOMER)") $(if $(ROLES),--roles "$(ROLES)") $(ARGS)

stack-up: setup
	@.venv/bin/python -m localdev.stack up

stack-down:
	@.venv/bin/python -m localdev.stack down

# Forget what the stand-ins stored (blobs, items, messages), all together; the stack must be down.
stack-reset:
	@.venv/bin/python -m localdev.stack reset

clean:
	rm -rf .localdev .mypy_cache .ruff_cache .pytest_cache

# End-to-end smoke tests against a running app, local or deployed (docs/SMOKE.md):
#   make smoke BASE_URL=https://<app>.azurewebsites.net TOKEN=<bearer token> [WEBHOOK_SECRET=...]
#   (locally the token comes from the local issuer by itself)
#     [STORAGE_ACCOUNT_URL=https://<account>.blob.core.windows.net | STORAGE_CONNECTION_STRING=...]
#     [RATE_LIMIT_CALLS=<the gateway's per-caller limit>: also expect its 429 in a bounded loop]
# Secrets reach the command through the environment, never its arguments.
.PHONY: smoke
BASE_URL ?= http://127.0.0.1:7071
TIMEOUT ?= 60
smoke: export SMOKE_TOKEN := $(or $(TOKEN),$(SMOKE_TOKEN))
smoke: export SMOKE_WEBHOOK_SECRET := $(WEBHOOK_SECRET)
smoke: export SMOKE_STORAGE_CONNECTION_STRING := $(STORAGE_CONNECTION_STRING)
smoke: export SMOKE_STORAGE_ACCOUNT_URL := $(STORAGE_ACCOUNT_URL)
smoke: export SMOKE_RATE_LIMIT_CALLS := $(RATE_LIMIT_CALLS)
smoke: setup
	@.venv/bin/python -m smoke --base-url "$(BASE_URL)" --timeout "$(TIMEOUT)"
