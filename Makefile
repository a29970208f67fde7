# tier0 — see README.md. Quick start: `make run`, `make test`.
GO       ?= go
PKGS     ?= ./...
BIN      := bin
TESTENV  := deploy/dev/testenv.sh

.PHONY: run build image test test-short lint vet fmt bench fuzz proto clean

## run: a single-node CA on its embedded defaults (./tier0-data); more flags: make run ARGS="--listen 127.0.0.1:9443"
run:
	@[ -x $(BIN)/tier0 ] || echo "make run: building $(BIN)/tier0 first (a first build fetches modules and compiles: a few minutes)..."
	@$(GO) build -o $(BIN)/ ./cmd/tier0
	$(BIN)/tier0 server $(ARGS)

## build: bin/tier0, bin/tier0-agent, bin/tier0-loadtest, bin/tier0-dev (KMS fakes, not for production)
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## image: OCI images tier0:$(IMAGE_TAG), tier0-agent:$(IMAGE_TAG), tier0:$(IMAGE_TAG)-pkcs11 in bin/image
## (Go toolchain only, no Docker daemon; reproducible; docs/OPERATIONS.md "Image")
IMAGE_TAG ?= dev
image:
	@echo "make image: building the binaries and images into $(BIN)/image (no container daemon needed)"
	cd deploy && SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || echo 0)} \
		$(GO) run ./image --src .. --out $(abspath $(BIN))/image --tag $(IMAGE_TAG)

## test: every test, with the real components (Postgres, SoftHSM2, promtool) provided; the
## deploy module (image, Helm chart, alert rules) is a module of its own (deploy/go.mod)
test:
	@set -e; eval "$$($(TESTENV))"; \
	$(GO) vet $(PKGS); \
	(cd deploy && $(GO) vet ./...); \
	$(GO) test -count=1 -timeout 15m $(PKGS); \
	(cd deploy && $(GO) test -count=1 -timeout 15m ./...)

## test-short: unit tests only, no integration components
test-short:
	$(GO) test -short -count=1 $(PKGS)

lint:
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run $(PKGS)
	cd deploy && $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run --config ../.golangci.yml ./...

vet:
	$(GO) vet $(PKGS)
	cd deploy && $(GO) vet ./...

fmt:
	gofmt -l -w .

## bench: micro and end-to-end benchmarks (see docs/BENCHMARKS.md)
bench:
	@set -e; eval "$$($(TESTENV))"; \
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./ca/... ./api/...

## fuzz: 30 s per fuzz target (CSR, SPIFFE ID, role IDs, Raft commands, snapshots, pkcs11 URIs); corpus under testdata/fuzz
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseCSR -fuzztime 30s ./ca/
	$(GO) test -run '^$$' -fuzz FuzzSPIFFEID -fuzztime 30s ./ca/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./internal/roles/
	$(GO) test -run '^$$' -fuzz FuzzParseSelector -fuzztime 30s ./ca/
	$(GO) test -run '^$$' -fuzz FuzzFSMApply -fuzztime 30s ./ha/
	$(GO) test -run '^$$' -fuzz FuzzInspectSnapshot -fuzztime 30s ./ha/
	$(GO) test -run '^$$' -fuzz FuzzParseURI -fuzztime 30s ./signer/pkcs11/
	$(GO) test -run '^$$' -fuzz FuzzParseCgroup -fuzztime 30s ./cmd/tier0-agent/internal/k8sattest/

proto:
	protoc -I api/proto --go_out=api/gen --go_opt=paths=source_relative \
		--go-grpc_out=api/gen --go-grpc_opt=paths=source_relative api/proto/tier0/v1/*.proto

clean:
	rm -rf $(BIN)

## bench-storm: the million-SVID storm (STORM_AGENTS x STORM_WORKLOADS) against one fresh node on its defaults; prints time, failures, server VmHWM and record count
STORM_AGENTS    ?= 1000
STORM_WORKLOADS ?= 1000
.PHONY: bench-storm
bench-storm:
	$(GO) build -o $(BIN)/ ./cmd/tier0 ./cmd/tier0-loadtest
	@set -e; d=$$(mktemp -d); trap 'kill $$pid 2>/dev/null; rm -rf $$d' EXIT; \
	env -u TIER0_CONFIG $(BIN)/tier0 server --data-dir $$d/data --listen 127.0.0.1:0 --http 127.0.0.1:0 --log-level warn >$$d/server.log 2>&1 & pid=$$!; \
	for i in $$(seq 1 120); do http=$$(sed -n 's/.*"http": *"\([^"]*\)".*/\1/p' $$d/data/server.json 2>/dev/null || true); \
	  [ -n "$$http" ] && curl -sf http://$$http/readyz >/dev/null && break; sleep 1; done; \
	/usr/bin/env time -v $(BIN)/tier0-loadtest storm --data-dir $$d/data --agents $(STORM_AGENTS) --workloads $(STORM_WORKLOADS) \
	  --duration 30m --deadline 20m --keep --out $(BIN)/bench-storm 2>&1 | grep -E '^storm:|refused|Maximum resident|Elapsed'; \
	echo "server peak RSS: $$(grep VmHWM /proc/$$pid/status)"; \
	curl -s http://$$http/metrics | grep -E '^tier0_journal_seq |^tier0_exported_records_total'

## bench-guard: allocation regression guard (counts, not timings: load-independent; CI runs it)
.PHONY: bench-guard
bench-guard:
	$(GO) test -short -count=1 -run '^$$' -bench MintAllocGuard -benchtime 20x ./ca/

## bench-compare: tier0 vs SPIRE v1.13.3 agent path (BatchNewX509SVID) and MintX509SVID at c=1/8/32 x batch 1/10/100, plus the bare limit, alternating (builds SPIRE once; see docs/BENCHMARKS.md)
.PHONY: bench-compare loadtest-smoke
bench-compare:
	$(GO) build -o $(BIN)/ ./cmd/tier0 ./cmd/tier0-loadtest
	$(BIN)/tier0-loadtest compare --tier0 $(BIN)/tier0 --rounds 3 --round 5s --out $(BIN)/bench-compare.json

## loadtest-smoke: a few seconds of each load-test scenario against a real server process
loadtest-smoke:
	$(GO) test -count=1 -timeout 5m ./loadtest/

## bench-cluster: 3-node cluster vs single node, and failover gap (median of 5)
bench-cluster:
	@set -e; eval "$$($(TESTENV))"; \
	TIER0_CLUSTER_BENCH=1 $(GO) test -count=1 -run TestClusterBenchmark -v -timeout 20m ./cmd/tier0/

## bench-backup: backup, verify and restore of 1M journal records
bench-backup:
	TIER0_BACKUP_RECORDS=1000000 $(GO) test -count=1 -run TestBackupScale -v -timeout 30m ./ha/
