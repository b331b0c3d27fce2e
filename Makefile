# proxylab — see README.md. Every target works on a fresh Debian 12 clone.
GO        ?= go
BIN       := bin/proxylab
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 20s
PKGS      := ./...

.PHONY: all build build-dpdk run upgrade test test-dpdk fuzz race bench bench-overhead bench-go bench-sockmap bench-gm bench-dpdk bpf deps vet clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/proxylab
	$(GO) build -trimpath -o bin/proxybench ./cmd/proxybench

# With the DPDK transport (cgo, libdpdk-dev 22.11: make deps installs it).
build-dpdk:
	$(GO) build -trimpath -tags dpdk -ldflags "$(LDFLAGS)" -o bin/proxylab-dpdk ./cmd/proxylab

# The proxy on its embedded default config: curl -i 127.0.0.1:8080/
run: build
	./$(BIN) run

# Hot upgrade of the running proxylab to a fresh build (docs/operating.md,
# "Hot upgrade"): the build is copied to its own path (bin/proxylab-<time>,
# so the running binary is never overwritten and a rollback is the same
# command with the old path), then scripts/upgrade.sh takes over.
#   make upgrade CONFIG=proxylab.yaml [UPGRADE_SOCKET=PATH]
upgrade: build
	@test -n "$(CONFIG)" || { echo "make upgrade: CONFIG=FILE is required"; exit 2; }
	@new=bin/proxylab-$$(date +%Y%m%d-%H%M%S); cp $(BIN) $$new; \
	./scripts/upgrade.sh -b $$new -c $(CONFIG) $(if $(UPGRADE_SOCKET),-s $(UPGRADE_SOCKET))

deps:
	./scripts/install-deps.sh

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Everything: dependencies, vet, unit and integration tests, a race pass over
# the integration suite, and a bounded run of every fuzz target.
test: deps vet
	# One package at a time: the integration suites and the benchmark-matrix
	# test each load both cores, and their timing assertions must not compete.
	$(GO) test -p 1 -count=1 -timeout 45m $(PKGS)
	$(MAKE) test-dpdk
	$(MAKE) race
	$(MAKE) fuzz

# The DPDK transport's tests (build tag dpdk): as root with libdpdk-dev,
# a network namespace and veth pair with net_af_packet; skipped otherwise.
test-dpdk:
	@if [ "$$(id -u)" = 0 ] && pkg-config --exists libdpdk; then \
	  $(GO) test -tags dpdk -count=1 -timeout 10m -run 'DPDK|NetConn' ./cmd/proxylab/ ./transport/dpdk/ ./transport/internal/netconn/; \
	else echo "test-dpdk: skipped (needs root and libdpdk-dev)"; fi

# The integration suite against a race-detector build of the binary.
race:
	$(GO) build -race -o bin/proxylab-race ./cmd/proxylab
	PROXYLAB_BIN=$(CURDIR)/bin/proxylab-race $(GO) test -count=1 -short -timeout 45m ./cmd/proxylab/
	$(GO) test -race -count=1 -timeout 10m ./core/... ./transport/... ./offload/... ./bench/upstream ./bench/loadgen

fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# Micro-benchmarks next to the hot code, allocs/op included.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./core/... ./transport/...

# Whole-system comparison against haproxy and nginx on this host: the quick
# scenario (results under results/<date>-<host>/quick/).
bench: build deps
	./bin/proxybench matrix -scenario bench/scenarios/quick.yaml $(if $(BASE),-base $(BASE))

# What metrics and access logs cost, on vs off in one run.
bench-overhead: build deps
	./scripts/bench-overhead.sh

# The sockmap transport against the kernel path and haproxy (root).
bench-sockmap: build deps
	./scripts/bench-sockmap.sh

# The DPDK transport against the kernel path on one veth (root).
bench-dpdk: deps
	./scripts/bench-dpdk.sh

# TLCP handshakes and bulk against Go TLS and haproxy.
bench-gm: build deps
	./scripts/bench-gm.sh

# Regenerate the sockmap transport's BPF objects from bpf/sockmap.c (they are
# committed, so building needs no clang): clang, llvm and libbpf-dev.
bpf:
	command -v clang >/dev/null || apt-get install -y clang llvm libbpf-dev
	cd transport/sockmap && $(GO) generate .

clean:
	rm -rf bin
