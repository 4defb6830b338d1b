# Murmur developer entry points. `make up` starts the backing servers (and, once the platform
# step is filled in, the services and the gateway); `make test` runs the whole suite.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: up down status deps test lint backing-up backing-down platform-up platform-down

up: backing-up platform-up

down: platform-down backing-down

status:
	$(PYTHON) -m deploy.local status

# PostgreSQL (murmur_auth, murmur_post), Redis, RabbitMQ, Neo4j and MailHog on their default
# ports; state in .murmur/, logs in .murmur/logs/ (see docs/local.md).
backing-up: deps
	$(PYTHON) -m deploy.local up

backing-down:
	$(PYTHON) -m deploy.local down

# PLATFORM hook: the five services and the gateway start here, after the backing servers.
platform-up:
	@true

platform-down:
	@true

# Installs the project's Python dependencies only when they are missing.
deps:
	@$(PYTHON) -c "import importlib.metadata as m; m.version('murmur'); import pytest, pytest_asyncio, pytest_timeout, ruff, mypy, importlinter, asgi_lifespan" 2>/dev/null \
		|| $(PYTHON) -m pip install -q -e '.[dev]'

test: deps
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

lint: deps
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
	lint-imports
