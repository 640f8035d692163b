# breachd: `make run` to try it, `make test` before every commit.

GO            ?= go
BIN           := $(CURDIR)/bin
TOOLS         := $(BIN)/tools
DATA          ?= $(CURDIR)/data
ADDR          ?= 127.0.0.1:7355
DEMO_CSV      := $(CURDIR)/demo/segapass.csv
DEMO_MANIFEST := $(CURDIR)/demo/segapass.manifest.json
DEMO_RECORDS  ?= 1290775

# Pinned code generators and tools; `make proto` installs exactly these.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION        := v0.8.2
BENCHSTAT_VERSION          := v0.0.0-20260908200009-22c9c6c9d4da

PROTO_FILES := proto/breachd/v1/breachd.proto

.PHONY: all run build test test-race test-norace test-short bench bench-smoke bench-growth fuzz proto proto-check lint tidy-check clean tools verify-unit crash-test history-soak soak replica-chaos probe kratos-e2e watch-e2e

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# run builds, creates and imports the demo corpus on first use, then serves it.
# A corpus whose demo breach was deleted gets it back.
run: build
	@if [ ! -d "$(DATA)" ]; then \
	  echo "first run: generating the synthetic Sega Pass corpus ($(DEMO_RECORDS) rows) and importing it into $(DATA)"; \
	  $(BIN)/corpusgen --records $(DEMO_RECORDS) --out $(DEMO_CSV) && \
	  $(BIN)/breachd import --data $(DATA) --manifest $(DEMO_MANIFEST) $(DEMO_CSV) || { rm -rf "$(DATA)"; exit 1; }; \
	elif ! $(BIN)/breachd breach list --data $(DATA) | cut -f1 | grep -qx SegaPass; then \
	  echo "$(DATA) lacks the demo breach SegaPass: importing it again"; \
	  { test -f $(DEMO_CSV) || $(BIN)/corpusgen --records $(DEMO_RECORDS) --out $(DEMO_CSV); } && \
	  $(BIN)/breachd import --data $(DATA) --manifest $(DEMO_MANIFEST) $(DEMO_CSV) || exit 1; \
	fi
	@echo
	@sample=$$($(BIN)/corpusgen --sample 1); \
	echo "try it from another terminal:"; \
	echo "  $(BIN)/breachctl check --addr $(ADDR) $$sample nobody@example.com"; \
	echo "  grpcurl -plaintext -d '{\"email_sha256\":\"'$$($(BIN)/breachctl hash --base64 $$sample)'\"}' $(ADDR) breachd.v1.ExposureService/Check"; \
	echo
	$(BIN)/breachd serve --data $(DATA) --addr $(ADDR)

# test runs the whole suite as two jobs side by side: everything under the
# race detector but the tests that kill processes, soak or count rates
# (NORACE_TESTS: the detector adds nothing to them and slows them ten times),
# and those tests without it. Nothing is left out: a test is in one job.
# The names are unique across the packages of NORACE_PKGS and the rest.
NORACE_TESTS := TestReloadIdentities|TestAssessEndToEnd|TestReplicaDaemons|TestHIBPClient|TestCrash|TestCrashPasswords|TestCrashPairs|TestBackupsDuringImport|TestMigrateLayoutKilled|TestDiskFull|TestFilterRates|TestBulkPagesOutTables|TestReplicaKilled|TestReplicaChaos|TestSoak|TestRun|TestPadding|TestPaddingMerge|TestScripts|TestWatchEndToEnd|TestCrashWatch|TestCrashRekey|TestSystemdService|TestKeyedDaemon|TestBoundedHistory|TestPrivateDaemon|TestCrashPrivate|TestImportNothingAccepted|TestBreachCommands|TestEndToEnd|TestRefusalLogSampled|TestMetricsBeyondLoopback|TestResume|TestBulkSweep|TestReplicas|TestReadiness|TestAuthMatrix|TestMetrics|TestMigrateLayout|TestConformanceMatrix|TestQuota|TestAdminOnlyOnSocket|TestClientCertificateRequired|TestRangeAnonymousQuota|TestHTTPConnectionPlaces|TestPasswordIndexLarge|TestPasswordIndex|TestPasswordBase|TestCrashDelta|TestReplicaDeleteThroughCompaction|TestCountedLayouts|TestCrashReplicaBase|TestPasswordHistory|TestWatchHistory|TestWatchWhileChanging
NORACE_PKGS  := ./store ./natsrepl ./bench/loadgen ./httpapi ./cmd/breachd ./cmd/breachctl
TEST_TIMEOUT ?= 8m
test:
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-race test-norace

test-race:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -skip '^($(NORACE_TESTS))$$' ./...

test-norace:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run '^($(NORACE_TESTS))$$' $(NORACE_PKGS)

# test-short is the quick subset for iterating (go test -short ./...): no
# processes killed, no soak, no NATS cluster, no npm client; under a minute.
test-short:
	$(GO) test -short -count=1 ./...

# bench-smoke runs every benchmark once, at small sizes: a benchmark that no
# longer runs (BenchmarkCheckTLSRatio was refused by a quota for two stops)
# is a defect nothing else shows. .ci/run runs it beside make test.
bench-smoke:
	BREACHD_BENCH_KEYS=20000 $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./...

# bench runs the quick set and writes bench/RESULTS.md: Go benchmarks (6 runs,
# benchstat medians), the corpus import, the load generator and the bulk sweep.
bench: build $(TOOLS)/benchstat
	bash bench/run.sh

# bench-growth measures 1.29M and 10M keys into bench/GROWTH.md; add
# BENCH_100M=1 for 100M keys (about 13 GB of disk).
bench-growth: build $(TOOLS)/benchstat
	bash bench/growth.sh

# crash-test kills importers, deletes and collections with SIGKILL at random
# moments and checks every reopen (store/crash_test.go), 20 runs of each of
# the 7 operations; then stops deletes at 20 points of their collection, by
# their caller and through a daemon, before another import
# (store/delete_test.go). make test runs one of each operation and 4 points.
CRASH_RUNS ?= 140
DELETE_RUNS ?= 20
crash-test:
	@mkdir -p bench/out; BREACHD_CRASH_RUNS=$(CRASH_RUNS) BREACHD_CRASH_LARGE=150000 $(GO) test -count=1 -run '^(TestCrash|TestCrashPasswords|TestCrashPairs|TestCrashWatch|TestCrashRekey|TestCrashPrivate|TestCrashDelta|TestCrashReplicaBase)$$' -v -timeout 60m ./store > bench/out/crash.log 2>&1; \
	  status=$$?; grep -E 'crash(_passwords|_pairs|_watch|_delta)?_test|^(ok|FAIL|---)' bench/out/crash.log; [ $$status -eq 0 ] || exit $$status; \
	  BREACHD_DELETE_RUNS=$(DELETE_RUNS) $(GO) test -count=1 -run '^(TestDeleteThroughDaemon|TestDeletedBreachNeverComesBack)$$' -v -timeout 30m ./store > bench/out/delete-crash.log 2>&1; \
	  status=$$?; grep -E '^(ok|FAIL|--- FAIL|--- PASS: TestDelete)' bench/out/delete-crash.log; exit $$status

# history-soak runs the random histories HISTORY_RUNS times each, every run
# with a new seed (docs/TESTING.md): a failure names its seed, and
# BREACHD_HISTORY_SEED=N replays it. make test runs each once.
HISTORY_RUNS ?= 20
history-soak:
	$(GO) test -count=$(HISTORY_RUNS) -run '^(TestConformanceMatrix|TestPasswordHistory|TestWatchHistory|TestWatchWhileChanging)$$' -timeout 60m ./store
	$(GO) test -count=$(HISTORY_RUNS) -run '^TestPairHistory$$' -timeout 30m ./service

# replica-chaos runs a writer and two replicas (real daemons) on a real
# three-node JetStream cluster for CHAOS, under checks that ask for minimum
# versions, while it kills NATS nodes and the object stream's leader,
# restarts the writer and replicas, starts a second writer and deletes large
# breaches: every answer is compared with the writer's history at its
# version, and no replica may say SERVING while stale beyond max_lag. It logs
# the lag per fault (docs/RELIABILITY.md). make test runs 8 s of it.
CHAOS ?= 5m
replica-chaos:
	@mkdir -p bench/out; BREACHD_CHAOS=$(CHAOS) $(GO) test -count=1 -run '^TestReplicaChaos$$' -v -timeout 60m ./natsrepl > bench/out/replica-chaos.log 2>&1; \
	  status=$$?; grep -E 'chaos_test.go:[0-9]+: [a-z0-9]|^(ok|FAIL|---)' bench/out/replica-chaos.log | grep -v 'daemon logs'; exit $$status

# kratos-e2e builds Ory Kratos v1.3.1 from the module proxy (once, into
# bench/out) and runs registrations and a login through it against a real
# breachd (deploy/kratos/e2e.sh); outside make test.
kratos-e2e:
	bash deploy/kratos/e2e.sh

# watch-e2e runs TestWatchEndToEnd at the issue's sizes: a 1M-account
# watchlist, a 1.29M-row breach with 1,000 of them, the receiver down 20 s
# and the daemon killed with SIGKILL meanwhile. make test runs it at 10k/15k.
watch-e2e:
	@mkdir -p bench/out; WATCH_E2E_SCALE=full $(GO) test -count=1 -run '^TestWatchEndToEnd$$' -v -timeout 30m ./cmd/breachd > bench/out/watch-e2e.log 2>&1; \
	  status=$$?; grep -E 'watch_test.go:[0-9]+|^(ok|FAIL|---)' bench/out/watch-e2e.log; exit $$status

# probe repeats the hostile-client probe at the scale of issue 20 against a
# real daemon process (30,000 silent connections, 40,000 Health.Watch
# attempts, attackers in processes of their own); about a minute.
probe:
	@mkdir -p bench/out; PROBE_SCALE=1 $(GO) test -count=1 -run '^TestProbeAtScale$$' -v -timeout 10m ./cmd/breachd > bench/out/probe.log 2>&1; \
	  status=$$?; grep -E 'probe_test.go:[0-9]+: [0-9a-z]|^(ok|FAIL|---)' bench/out/probe.log; exit $$status

# soak serves the demo corpus (a copy in bench/out) under unary Checks at half
# of peak for SOAK_TIME while breaches are imported and deleted, reports each
# SOAK_WINDOW, then sends SIGTERM under load; it fails on any error
# (bench/loadgen/soak.go). make test runs a 4-second version (TestSoak).
SOAK_TIME   ?= 10m
SOAK_WINDOW ?= 1m
soak: build
	$(GO) build -o $(BIN)/ ./bench/loadgen
	@test -f $(DEMO_CSV) || $(BIN)/corpusgen --records $(DEMO_RECORDS) --out $(DEMO_CSV)
	@mkdir -p bench/out && rm -rf bench/out/soak-data && \
	  $(BIN)/breachd import --data bench/out/soak-data --manifest $(DEMO_MANIFEST) $(DEMO_CSV) >/dev/null
	@echo "soaking for $(SOAK_TIME); the report goes to bench/out/soak.md"
	@$(BIN)/loadgen --breachd $(BIN)/breachd --data bench/out/soak-data --corpus $(DEMO_CSV) \
	  --soak $(SOAK_TIME) --soak-window $(SOAK_WINDOW) > bench/out/soak.md; rc=$$?; cat bench/out/soak.md; exit $$rc

# fuzz runs every fuzz target briefly; FUZZTIME=5m for a longer soak.
# FUZZMINIMIZE bounds how long the fuzzer may minimise each new input: left
# unbounded (60s each) it spent whole runs of FuzzEmailFastPath minimising.
FUZZTIME     ?= 15s
FUZZMINIMIZE ?= 10x
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE); \
	  done; \
	done

$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(TOOLS)/benchstat:
	GOBIN=$(TOOLS) $(GO) install golang.org/x/perf/cmd/benchstat@$(BENCHSTAT_VERSION)

tools: $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/staticcheck $(TOOLS)/benchstat

# proto regenerates the committed Go code from the .proto files. It needs
# Debian's protobuf-compiler (installed here if missing) and the pinned plugins.
proto: $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc
	@command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	PATH=$(TOOLS):$$PATH protoc -I proto -I /usr/include \
	  --go_out=proto --go_opt=paths=source_relative \
	  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
	  $(PROTO_FILES)

# proto-check fails when the committed generated code differs from what
# `make proto` produces. It generates into a scratch directory, never over
# the committed files, so it may run beside a build or the tests.
proto-check: $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc
	@command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	  PATH=$(TOOLS):$$PATH protoc -I proto -I /usr/include \
	    --go_out=$$tmp --go_opt=paths=source_relative \
	    --go-grpc_out=$$tmp --go-grpc_opt=paths=source_relative \
	    $(PROTO_FILES) && \
	  for f in $$(cd $$tmp && find . -name '*.go'); do \
	    diff -u proto/$$f $$tmp/$$f || { echo "generated code is stale: run 'make proto' and commit"; exit 1; }; \
	  done

lint: $(TOOLS)/staticcheck
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# verify-unit checks the systemd unit with systemd-analyze (pointed at the
# binary just built, since it checks that ExecStart exists).
verify-unit: build
	@command -v systemd-analyze >/dev/null || { apt-get update -qq && apt-get install -y -qq systemd; }
	@tmp=$$(mktemp -d) && sed 's#/usr/local/bin/breachd#$(BIN)/breachd#' deploy/breachd.service > $$tmp/breachd.service && \
	  systemd-analyze verify $$tmp/breachd.service && systemd-analyze security --offline=yes $$tmp/breachd.service | tail -1; rm -rf $$tmp

tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit"; exit 1; }

clean:
	rm -rf $(BIN) $(DEMO_CSV)
