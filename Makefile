# segcore: `make run` runs the whole pipeline on the synthetic pill data,
# `make test` runs lint and the test suite. Both set up .venv first (once).

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# pip prints one warning per package for the machine's missing local indexes; keep the log readable.
QUIET_PIP := { grep -v "^WARNING: Location" || test $$? -eq 1; }

.PHONY: setup run test lint format serve ui lock clean help

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing segcore and its pinned dependencies into $(VENV) (first time: a few minutes)..."
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]' 2>&1 | $(QUIET_PIP)
	@$(BIN)/python -c "import segcore, torch, mlflow, prefect, dvc" 
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install (skipped when up to date)

run: setup  ## the whole pipeline on the synthetic pill data
	$(BIN)/python -m flows.run

test: setup lint  ## lint, format check and the test suite
	$(BIN)/python -m pytest -q

lint: setup  ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

serve: setup  ## serve the flow on the cron schedule of params.yaml
	$(BIN)/python -m flows.serve

ui: setup  ## open the MLflow UI on the project's store
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" --host 127.0.0.1 --port 5000

lock:  ## upgrade: resolve the newest allowed versions into requirements.lock
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | $(QUIET_PIP)
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^segcore' > requirements.lock
	rm -rf .venv-lock
	@echo "requirements.lock updated; run 'make test' to check the new versions."

clean:  ## remove the virtual environment
	rm -rf $(VENV)
