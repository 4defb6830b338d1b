# Murmur developer entry points. `make up` starts the backing servers, the five services and the
# nginx gateway; `make test` runs the whole suite (it starts its own servers on free ports).
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: up down status deps test lint bench bench-smoke backing-up backing-down platform-up platform-down

up: backing-up platform-up

down: platform-down backing-down

status:
	-$(PYTHON) -m deploy.local status
	-$(PYTHON) -m deploy.platform status

# PostgreSQL (murmur_auth, murmur_post), Redis, RabbitMQ, Neo4j and MailHog on their default
# ports; state in .murmur/, logs in .murmur/logs/ (see docs/local.md).
backing-up: deps
	$(PYTHON) -m deploy.local up

backing-down:
	$(PYTHON) -m deploy.local down

# The five services (migrated first) and the nginx gateway on :8080; logs in .murmur/platform/logs/.
platform-up:
	$(PYTHON) -m deploy.platform up

platform-down:
	$(PYTHON) -m deploy.platform down

# Installs the project's Python dependencies when pyproject.toml changed since the last install.
deps: .murmur/deps.stamp

.murmur/deps.stamp: pyproject.toml
	$(PYTHON) -m pip install -q -e '.[dev]'
	@mkdir -p .murmur && touch $@

test: deps
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

lint: deps
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
	lint-imports

# The benchmark (docs/benchmarks.md): a private platform on free ports, the socfb-Reed98 graph,
# open-loop load, fan-out lag, baselines; about 11 minutes. Not part of `make test`.
BENCH_OUT ?= bench/results/latest.json

bench: deps
	$(PYTHON) -m pip install -q -e '.[bench]'
	$(PYTHON) -m bench run --out $(BENCH_OUT)
	$(PYTHON) -m bench report $(BENCH_OUT)

# A few seconds: the load generator, the statistics and the fan-out watcher (also in make test).
bench-smoke: deps
	$(PYTHON) -m pytest -q tests/bench
