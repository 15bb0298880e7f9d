# ordersaga — see README.md. Every tool is pinned in tools/go.mod and run with `go tool`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

SERVICES := order payment inventory shipping
K8S_OVERLAYS := $(notdir $(wildcard deploy/k8s/overlays/*))
BUF := go tool -modfile=tools/go.mod buf
GO_TEST := go test -race -count=1

.PHONY: help
help: ## Show the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: build infra ## Build and run the four services on this machine (Ctrl-C stops them).
	@scripts/run.sh

.PHONY: build
build: bin/grpcurl ## Build one binary per service, ordersctl and a pinned grpcurl into bin/.
	@mkdir -p bin
	@for svc in $(SERVICES); do go build -o bin/$$svc ./services/$$svc/cmd/$$svc; done
	@go build -o bin/ordersctl ./cmd/ordersctl
	@echo "built: $$(ls bin | tr '\n' ' ')"

bin/grpcurl: tools/go.mod tools/go.sum
	@mkdir -p bin
	go build -modfile=tools/go.mod -o bin/grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl

.PHONY: infra
infra: ## Start the local PostgreSQL and RabbitMQ when they are installed but stopped.
	@scripts/infra.sh

.PHONY: test
test: build infra deploy-tools web-tools ## Unit, integration and end-to-end tests against the real PostgreSQL and RabbitMQ.
	ORDERSAGA_BIN_DIR=$(CURDIR)/bin $(GO_TEST) -timeout 20m ./...
	cd gen && $(GO_TEST) ./...
	cd deploy/k8s && $(GO_TEST) ./...

.PHONY: k8s
k8s: ## Render every Kubernetes overlay (kubectl kustomize) into bin/k8s/<overlay>.yaml.
	@mkdir -p bin/k8s
	@for o in $(K8S_OVERLAYS); do kubectl kustomize deploy/k8s/overlays/$$o > bin/k8s/$$o.yaml; echo "rendered bin/k8s/$$o.yaml"; done

.PHONY: deploy-tools
deploy-tools: ## Install promtool and docker-compose when missing (apt-get), for the deploy/ checks.
	@scripts/deploy-tools.sh

.PHONY: web-tools
web-tools: ## Install what the browser, Prism and TypeScript e2e tests drive: npm packages pinned by their lock files, Chromium (apt-get).
	@scripts/web-tools.sh

TS_EXAMPLE := examples/typescript

$(TS_EXAMPLE)/node_modules/.package-lock.json: $(TS_EXAMPLE)/package-lock.json
	npm ci --prefix $(TS_EXAMPLE) --no-audit --no-fund --loglevel=error >/dev/null

.PHONY: check-deploy
check-deploy: deploy-tools ## Prometheus config, rules and alert unit tests (promtool), the Grafana dashboard, docker-compose.yml.
	$(GO_TEST) ./deploy/...

.PHONY: test-faults
test-faults: build infra ## Crash, restart, duplicate and poison-message tests (restart the local broker and database).
	ORDERSAGA_BIN_DIR=$(CURDIR)/bin $(GO_TEST) -tags faults -timeout 40m -run 'TestFault' -v ./faults/...

.PHONY: cluster-test
cluster-test: build infra ## A 3-node RabbitMQ cluster losing a node and cut off by a partition, a PostgreSQL failover to a synchronous standby (scratch servers beside the machine's; root).
	ORDERSAGA_BIN_DIR=$(CURDIR)/bin $(GO_TEST) -tags cluster -timeout 15m -run 'TestCluster' -v ./faults/...

.PHONY: test-hostile
test-hostile: build infra ## The hostile-world fault tests only (refused permissions, deleted topology, paused replicas, database storm): each touches only its own vhost and databases.
	ORDERSAGA_BIN_DIR=$(CURDIR)/bin $(GO_TEST) -tags faults -timeout 15m -run 'TestFault(BrokerRefusesDeclare|TopologyDeleted|PausedReplicas|DatabaseStormAndReadOnly)$$' -v ./faults/...

.PHONY: test-upgrade
test-upgrade: build infra ## The expand/contract check of the migrations and the rolling upgrade from the previous release (RELEASES; its binaries built once from its commit, about 2 minutes, then cached).
	$(GO_TEST) -tags upgrade -run 'TestMigrationsExpandOnly' -v ./internal/release/
	ORDERSAGA_BIN_DIR=$(CURDIR)/bin $(GO_TEST) -tags 'faults upgrade' -timeout 20m -run 'TestFaultRollingUpgrade$$' -v ./faults/...

.PHONY: bench
bench: build infra ## Benchmark scenarios end to end (orders/s, latency, batch sizes, CPU per order) beside PostgreSQL and RabbitMQ baselines; BENCH_FLAGS=-help lists the knobs.
	ORDERSAGA_BIN_DIR=$(CURDIR)/bin go run ./cmd/bench $(BENCH_FLAGS)

.PHONY: bench-markdown
bench-markdown: build infra ## The same as bench, the report as Markdown tables.
	ORDERSAGA_BIN_DIR=$(CURDIR)/bin go run ./cmd/bench -markdown $(BENCH_FLAGS)

SOAK_DURATION ?= 30m
SOAK_RATE ?= 100

.PHONY: soak
soak: build infra ## Run the saga SOAK_DURATION (30m) at SOAK_RATE (100) orders/s, a row of figures per minute; fails on a broken invariant or unbounded growth. SOAK_FLAGS passes more flags (-help).
	ORDERSAGA_BIN_DIR=$(CURDIR)/bin go run ./cmd/soak -duration $(SOAK_DURATION) -rate $(SOAK_RATE) $(SOAK_FLAGS)

.PHONY: soak-short
soak-short: ## The soak CI runs: 2m at 50 orders/s, a row every 15s, INBOX_RETENTION 1m so that the retention is checked too.
	$(MAKE) soak SOAK_DURATION=2m SOAK_RATE=50 SOAK_FLAGS='-interval 15s -inbox-retention 1m'

.PHONY: generate
generate: $(TS_EXAMPLE)/node_modules/.package-lock.json ## Regenerate gen/ (Go, gRPC, gateway, OpenAPI 2 and 3) from proto/, the e2e REST client and the TypeScript example's types.
	$(BUF) generate
	cd tools && go run ./openapidoc ../gen/openapi/ordersaga.swagger.json ../gen/openapi/ordersaga.openapi3.json
	go tool -modfile=tools/go.mod oapi-codegen -config e2e/restclient/oapi-codegen.yaml gen/openapi/ordersaga.openapi3.json
	npm run --prefix $(TS_EXAMPLE) --silent generate
	cd gen && go mod tidy

GENERATED := gen/ e2e/restclient/ $(TS_EXAMPLE)/src/ordersaga.d.ts

.PHONY: check-generate
check-generate: generate ## Fail when gen/ or the e2e REST client is stale.
	@git diff --exit-code -- $(GENERATED) || { echo "generated code is stale: run make generate and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- $(GENERATED))" || { git status --porcelain -- $(GENERATED); echo "generated code has untracked files: run make generate and commit" >&2; exit 1; }

.PHONY: lint
lint: k8s ## buf lint and format, go vet, staticcheck and gofmt; the Kubernetes overlays render.
	$(BUF) lint
	$(BUF) format --diff --exit-code
	go vet ./...
	go vet -tags faults ./faults/ && go vet -tags cluster ./faults/ && go vet -tags 'faults upgrade' ./faults/  # each suite builds on its own
	go vet -tags upgrade ./internal/release/
	go tool -modfile=tools/go.mod staticcheck ./...
	cd gen && go vet ./...
	cd deploy/k8s && go vet ./...
	@if command -v docker-compose >/dev/null; then docker-compose config -q && echo "docker-compose.yml: valid"; \
	  else echo "docker-compose not installed: docker-compose.yml not checked"; fi
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1; }

.PHONY: breaking
breaking: breaking-rest ## Fail on a wire or JSON breaking change against the released contract (contract/released.binpb), and on a REST one (breaking-rest).
	$(BUF) breaking --against contract/released.binpb

# buf does not compare the REST routes (the http rules live in YAML): oasdiff compares the
# OpenAPI 3 documents. contract/rest-breaking-accepted.txt lists the changes reviewed and let through.
.PHONY: breaking-rest
breaking-rest: ## Fail on a breaking change of the REST facade against the released OpenAPI document (contract/released.openapi3.json).
	go tool -modfile=tools/go.mod oasdiff breaking --fail-on ERR --format singleline \
	  --err-ignore contract/rest-breaking-accepted.txt --warn-ignore contract/rest-breaking-accepted.txt \
	  contract/released.openapi3.json gen/openapi/ordersaga.openapi3.json

.PHONY: release-contract
release-contract: ## Move the breaking-change baselines to the current protos and OpenAPI document (a deliberate, reviewed step).
	$(BUF) build -o contract/released.binpb
	cp gen/openapi/ordersaga.openapi3.json contract/released.openapi3.json
	: > contract/rest-breaking-accepted.txt
	@echo "contract/released.binpb and contract/released.openapi3.json now hold the current contract: commit them on their own"

.PHONY: clean
clean: ## Remove bin/.
	rm -rf bin
