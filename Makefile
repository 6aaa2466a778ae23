# StockFlow developer commands. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Says what it does: the first run spends a while in pip, which shows its own progress.
$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || { echo "==> Creating the virtualenv $(VENV)"; python3 -m venv $(VENV); }
	@echo "==> Installing the pinned requirements (requirements-dev.txt) into $(VENV)"
	@$(VENV)/bin/pip install --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

.PHONY: help venv run test lint format bench bench-smoke

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create the virtualenv and install the pinned requirements

run: $(STAMP) ## Migrate, load demo data and serve on 127.0.0.1:8000 (all processes if REDIS_URL is set)
	./bin/run

test: $(STAMP) ## Run the whole test suite (uses DATABASE_URL/REDIS_URL, else local PostgreSQL/Redis)
	$(PY) -m pytest

lint: $(STAMP) ## ruff, migrations check, compose schema and Dockerfile lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run -v0
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(VENV)/bin/hadolint Dockerfile

format: $(STAMP) ## Format and auto-fix with ruff
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP) ## Start the stack, measure settlement, reads, ceilings, scaling, fan-out (minutes)
	$(PY) -m bench.run

bench-smoke: $(STAMP) ## The same benchmark at tiny sizes (seconds): checks it still works
	$(PY) -m bench.run --smoke
