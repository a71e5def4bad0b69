# Caretrail — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
# Reuse a warm build directory outside the clone when there is one.
export CARGO_TARGET_DIR ?= $(if $(wildcard $(HOME)/.cache/caretrail/target),$(HOME)/.cache/caretrail/target,$(CURDIR)/target)
BIN := $(CARGO_TARGET_DIR)/debug/caretrail
export FHIR_VENV ?= $(HOME)/.cache/caretrail/fhir-venv

CARETRAIL_HTTP_PORT ?= 8080
CARETRAIL_DATA_DIR ?= ./data
export CARETRAIL_HTTP_PORT CARETRAIL_DATA_DIR

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build every crate
	$(CARGO) build --workspace --all-targets

.PHONY: run
run: ## Run the all-in-one server on the embedded defaults (SQLite, in-process bus) at :8080, with the demo tenant
	$(CARGO) build -p caretrail
	$(BIN) serve --seed-demo

.PHONY: demo
demo: ## Narrate the pilot's story against the server `make run` started (another terminal)
	$(CARGO) build -p caretrail
	$(BIN) demo --url $(or $(DEMO_URL),http://127.0.0.1:8080) --credentials $(or $(DEMO_CREDENTIALS),data/dev-credentials.json)

.PHONY: fhir-validator
fhir-validator: ## Python venv with the FHIR R4 models the FHIR export tests validate against
	@test -x $(FHIR_VENV)/bin/python || python3 -m venv $(FHIR_VENV)
	@$(FHIR_VENV)/bin/python -c 'import fhir.resources' 2>/dev/null || $(FHIR_VENV)/bin/pip install -q 'fhir.resources==6.1.0' 'pydantic<2'

.PHONY: infra
infra: ## Start PostgreSQL, RabbitMQ and the S3 server (Garage) for the tests (idempotent; installs Garage on first use)
	./infra/start-postgres.sh
	./infra/start-rabbitmq.sh
	./infra/start-s3.sh

.PHONY: s3
s3: ## Start a local S3 server (Garage; installs it on first use, ~10 min)
	./infra/start-s3.sh

.PHONY: test
test: infra fhir-validator ## Run every test, on the embedded adapters and on real PostgreSQL, RabbitMQ and S3
	@command -v cargo-nextest >/dev/null || $(CARGO) install cargo-nextest --locked
	$(CARGO) nextest run --workspace --no-fail-fast -E 'not test(/broker_restart/)'
	@# This one stops and starts RabbitMQ, so it runs alone.
	$(CARGO) nextest run --workspace -E 'test(/broker_restart/)'
	./infra/start-rabbitmq.sh

.PHONY: lint
lint: ## Formatting and clippy, warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: openapi
openapi: ## Regenerate openapi/caretrail.json from the code
	$(CARGO) build -p caretrail
	$(BIN) openapi > openapi/caretrail.json.tmp && mv openapi/caretrail.json.tmp openapi/caretrail.json
	@# The gateway embeds the document: rebuild so it serves the new one.
	$(CARGO) build -p caretrail

.PHONY: openapi-check
openapi-check: ## Fail if the committed OpenAPI document differs from the code
	$(CARGO) build -p caretrail
	@$(BIN) openapi > $(CARGO_TARGET_DIR)/openapi-generated.json
	@diff -u openapi/caretrail.json $(CARGO_TARGET_DIR)/openapi-generated.json \
	  || (echo "openapi/caretrail.json is stale: run 'make openapi' and commit it" >&2; exit 1)
	@python3 infra/validate-openapi.py openapi/caretrail.json

.PHONY: helm-check
helm-check: ## Lint, render and validate the Helm chart (helm lint/template, kubernetes-validate, checkov, bad values, ledger peers)
	./charts/check.sh

.PHONY: story-cluster
story-cluster: ## Boot the Helm chart's configuration as separate local processes (3-node ledger; PostgreSQL, RabbitMQ, S3 from `make infra`) and run the pilot story against it
	$(CARGO) build $(addprefix -p ,caretrail caretrail-gateway caretrail-identity caretrail-consent caretrail-ledger caretrail-object-store caretrail-audit)
	@py=$(HOME)/.cache/caretrail/k8s-venv/bin/python; test -x $$py || py=python3; \
	  $$py charts/boot-local.py $(BOOT_ARGS)

.PHONY: migrate
migrate: ## Apply database migrations of every service (CARETRAIL_DATABASE_URL for PostgreSQL)
	$(CARGO) build -p caretrail
	$(BIN) migrate

.PHONY: bench
bench: ## Criterion benchmarks (figures go in docs/PERFORMANCE.md)
	$(CARGO) bench --workspace

.PHONY: bench-ledger
bench-ledger: ## Ledger append load test: 3-node cluster on loopback vs etcd 3.4 (report on stdout)
	@command -v etcd >/dev/null || apt-get install -y etcd-server
	$(CARGO) build --release -p caretrail-ledger -p caretrail-ledger-bench
	$(CARGO_TARGET_DIR)/release/caretrail-ledger-bench $(or $(BENCH_ARGS),--suite both --clients 1,16,64,256 --duration-secs 10)

.PHONY: bench-consent
bench-consent: ## Consent decision load run: 100k grants, in-process at 10k/s and over the bus (report on stdout)
	$(MAKE) infra
	$(CARGO) build --release -p caretrail-consent-bench
	$(CARGO_TARGET_DIR)/release/caretrail-consent-bench $(or $(BENCH_ARGS),--real)

.PHONY: bench-audit
bench-audit: ## Audit query latency with 1M indexed events on SQLite and PostgreSQL (report on stdout)
	$(MAKE) infra
	$(CARGO) build --release -p caretrail-audit-bench
	$(CARGO_TARGET_DIR)/release/caretrail-audit-bench $(or $(BENCH_ARGS),--real)

.PHONY: oracle-timing
oracle-timing: ## Time refused reads against reads of records that do not exist (report on stdout)
	$(CARGO) build -p caretrail
	python3 loadtests/oracle-timing/probe.py --binary $(BIN)

.PHONY: login-flood
login-flood: ## Flood logins while timing a partner's token issuance, embedded then on PostgreSQL + RabbitMQ (report on stdout)
	$(MAKE) infra
	$(CARGO) build -p caretrail
	python3 loadtests/login-flood/flood.py --binary $(BIN)
	python3 loadtests/login-flood/flood.py --binary $(BIN) --postgres

.PHONY: contract
contract: ## Schemathesis (every phase) against make run's server with a partner app's token (report on stdout)
	$(CARGO) build -p caretrail
	./contract/schemathesis.sh

.PHONY: cut-off
cut-off: ## Time how long a disabled user's or revoked app's token keeps working, embedded then on PostgreSQL + RabbitMQ (report on stdout)
	$(MAKE) infra
	$(CARGO) build -p caretrail
	python3 loadtests/cut-off/probe.py --binary $(BIN)
	python3 loadtests/cut-off/probe.py --binary $(BIN) --postgres

.PHONY: bench-records
bench-records: ## Record upload/download load test through the gateway, local directory and S3 (report on stdout)
	./infra/start-s3.sh
	$(CARGO) build --release -p caretrail -p caretrail-records-bench
	$(CARGO_TARGET_DIR)/release/caretrail-records-bench $(or $(BENCH_ARGS),--s3)

.PHONY: clean-data
clean-data: ## Delete the embedded server's data directory
	rm -rf $(CARETRAIL_DATA_DIR)
