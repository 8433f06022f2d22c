# CLAIIM. `make run` serves the API on :8080 with an embedded SQLite database under data/;
# `make test` runs every test (OPA policy tests, then jest on SQLite and PostgreSQL).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help setup run test test-lts fuzz bench typecheck publish-policy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## install what is missing: npm packages, the OPA CLI, Prisma clients, compiled JS
	@bash scripts/setup.sh

run: setup ## migrate the database and serve CLAIIM (PORT, DATABASE_URL, OPA_BIN are honoured)
	@bash scripts/run.sh

test: setup ## OPA policy tests and jest (route, service and end-to-end tests on SQLite and PostgreSQL)
	@bash scripts/test.sh

test-lts: setup ## the tests on the Node.js LTS line (24, from the npm registry, in .tools/node-lts); jest arguments in ARGS="…"
	@bash scripts/test-lts.sh $(ARGS)

fuzz: setup ## schemathesis against a live CLAIIM from its OpenAPI document (FUZZ_SECONDS=300; FUZZ_DATABASE_URL for PostgreSQL)
	@bash scripts/fuzz.sh

publish-policy: ## publish rego/ to the running CLAIIM as a new version (MESSAGE="…", ACTIVATE=1, SHADOW=1; CLAIIM_URL or PORT, CLAIIM_TOKEN)
	@node bin/claiim publish --dir rego $(if $(MESSAGE),--message "$(MESSAGE)") $(if $(ACTIVATE),--activate) $(if $(SHADOW),--shadow)

bench: setup ## decisions/s, latency and the Chron check under load; CLAIIM against opa run --server; how fast a change reaches a second process; the cost of a tree head every second; several writers on one chain; worker mode (CLAIIM_WORKERS=1 against 2, SQLite and PostgreSQL); then export and verify 1,000,000 Chron records
	@node dist/bench/decisions.js
	@node dist/bench/opa-ratio.js
	@node dist/bench/propagation.js
	@node dist/bench/tree-heads.js
	@BENCH_BEFORE_ROOT="$$(bash scripts/bench-before.sh)" node dist/bench/writers.js
	@BENCH_PG_URL="$${BENCH_PG_URL:-$$(bash scripts/ensure-postgres.sh)}" node dist/bench/workers.js
	@node --expose-gc dist/bench/chron-export.js

typecheck: ## type-check sources and tests without emitting
	@npx tsc -p tsconfig.check.json

clean: ## remove build output and local state (data/, bundles/, dist/)
	rm -rf dist data bundles/*.tar.gz
