# shimkeeper build and test entry points.
#
#   make tools        stock containerd binaries, runc, toybox, the CRI tools and
#                     containerd 1.7 (daemon and runc shim) into bin/
#   make cri-tools    crictl, critest, the CNI plugins (bin/cni/) and testimages
#   make build        tools + our daemon, bin/containerd
#   make unit         go test of everything but integration/
#   make integration  build, then the integration suite (build tag "integration")
#   make lint         gofmt and go vet
#   make test         lint, unit, integration, critest-smoke, critest-restart
#   make demo         build, then scripts/demo.sh
#   make bench        build, then the recovery benchmark against stock (root)
#   make critest      build, then cri-tools' critest against stock and ours (root)
#   make critest-smoke  the same for a few groups of specs (part of make test)
#   make critest-restart  containerd v2.4.2's CRI test TestContainerdRestart
#                     against stock and ours (root; part of make test)
#   make clean        remove bin/
#
# Everything is built from pinned module versions through the Go module proxy;
# nothing is downloaded as a prebuilt binary. The stock containerd tools are
# `tool` directives in go.mod, so go.sum pins their dependencies and they use
# the same versions as the containerd module we build against. runc is built
# with `go install pkg@version` in its own module context so its dependency
# versions never reach our go.mod. The CRI tools (crictl, critest, the CNI
# plugins) are built the same way; critest is a ginkgo test binary, which
# `go install` cannot build, so it is `go test -c` inside its module in the
# module cache. tools/testimages is a module of its own for the same reason.
# containerd 1.7 (the upgrade tests) is `go build` inside its module in the
# module cache too: its go.mod has exclude directives, which `go install
# pkg@version` refuses.

GO ?= go

ROOTDIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
BIN := $(ROOTDIR)/bin

CONTAINERD_PKG := github.com/containerd/containerd/v2
CONTAINERD_VERSION := v2.4.2
RUNC_PKG := github.com/opencontainers/runc
RUNC_VERSION := v1.5.3
CRI_TOOLS_PKG := sigs.k8s.io/cri-tools
CRI_TOOLS_VERSION := v1.37.0
CNI_PLUGINS_PKG := github.com/containernetworking/plugins
CNI_PLUGINS_VERSION := v1.10.0
# containerd 1.7, for the upgrade tests (integration/upgrade_test.go): its
# daemon and its runc shim, built from the module proxy like critest.
CONTAINERD17_PKG := github.com/containerd/containerd
CONTAINERD17_VERSION := v1.7.35

# Version stamping as in stock release builds (containerd's Makefile: VERSION,
# REVISION, PACKAGE, and -s -w unless debugging). Set STRIP= to keep symbols.
STRIP ?= -s -w
REVISION ?= $(shell git -C $(ROOTDIR) rev-parse --short HEAD 2>/dev/null)
STOCK_LDFLAGS := -X $(CONTAINERD_PKG)/version.Version=$(CONTAINERD_VERSION) \
	-X $(CONTAINERD_PKG)/version.Package=$(CONTAINERD_PKG) $(STRIP)
OUR_LDFLAGS := -X $(CONTAINERD_PKG)/version.Version=$(CONTAINERD_VERSION) \
	-X $(CONTAINERD_PKG)/version.Revision=shimkeeper-$(or $(REVISION),unknown) \
	-X $(CONTAINERD_PKG)/version.Package=$(CONTAINERD_PKG) $(STRIP)

# Stock: GO_BUILDTAGS always has urfave_cli_no_docs; the shim adds no_grpc and
# is built with SHIM_CGO_ENABLED=0 and -extldflags "-static".
GO_TAGS := urfave_cli_no_docs
SHIM_TAGS := urfave_cli_no_docs no_grpc
GO_BUILD := $(GO) build -buildvcs=false

# runc needs cgo (nsenter). Its Makefile defaults to "seccomp urfave_cli_no_docs
# libpathrs"; libpathrs needs a Rust library we don't have, and seccomp needs
# libseccomp-dev, so it is added only when pkg-config finds libseccomp.
RUNC_TAGS := urfave_cli_no_docs $(shell pkg-config --exists libseccomp 2>/dev/null && echo seccomp)

# Integration tests find our binaries here (and on PATH).
export SHIMKEEPER_BIN := $(BIN)

STOCK_BINS := $(BIN)/ctr $(BIN)/containerd-shim-runc-v2 $(BIN)/containerd-stock
CNI_BIN := $(BIN)/cni
CNI_PLUGINS := $(CNI_BIN)/bridge $(CNI_BIN)/loopback $(CNI_BIN)/host-local $(CNI_BIN)/portmap
CRI_TOOLS := $(BIN)/crictl $(BIN)/critest $(CNI_PLUGINS) $(BIN)/testimages
CONTAINERD17_BINS := $(BIN)/containerd-1.7 $(BIN)/containerd-shim-runc-v2-1.7
TOOLS := $(STOCK_BINS) $(BIN)/runc $(BIN)/toybox $(CRI_TOOLS) $(CONTAINERD17_BINS)

# Each binary is written to a temp name and renamed into place, so rebuilding
# never leaves a half-written binary for a test that is running at the time.
#
# Never run two cold compiles at once, even under make -j: the machines have
# two cores and each Go build already uses both.
.NOTPARALLEL:

.DEFAULT_GOAL := build

.PHONY: all tools cri-tools build unit integration lint fmt-check vet test demo bench critest critest-smoke critest-restart critest-driver clean FORCE

all: build

tools: $(TOOLS)

cri-tools: $(CRI_TOOLS)

build: tools
	@echo "+ bin/containerd"
	$(GO_BUILD) -tags "$(GO_TAGS)" -ldflags '$(OUR_LDFLAGS)' -o $(BIN)/containerd.tmp ./cmd/containerd
	@mv -f $(BIN)/containerd.tmp $(BIN)/containerd

# Rebuild the pinned tools when the pins or flags change, not on every run.
# The recipe rewrites the file only when its content differs; make re-reads
# its mtime afterwards, so unchanged pins don't trigger rebuilds.
BUILD_CONFIG := $(CONTAINERD_VERSION) $(RUNC_VERSION) [$(RUNC_TAGS)] [$(STOCK_LDFLAGS)] [$(GO_TAGS)] [$(SHIM_TAGS)] $(shell $(GO) env GOVERSION)
$(BIN)/.build-config: FORCE
	@mkdir -p $(BIN)
	@echo '$(BUILD_CONFIG)' | cmp -s - $@ || echo '$(BUILD_CONFIG)' > $@

$(BIN)/ctr: go.mod go.sum $(BIN)/.build-config
	@echo "+ bin/ctr ($(CONTAINERD_VERSION))"
	$(GO_BUILD) -tags "$(GO_TAGS)" -ldflags '$(STOCK_LDFLAGS)' -o $@.tmp $(CONTAINERD_PKG)/cmd/ctr
	@mv -f $@.tmp $@

$(BIN)/containerd-shim-runc-v2: go.mod go.sum $(BIN)/.build-config
	@echo "+ bin/containerd-shim-runc-v2 ($(CONTAINERD_VERSION), static)"
	CGO_ENABLED=0 $(GO_BUILD) -tags "$(SHIM_TAGS)" -ldflags '$(STOCK_LDFLAGS) -extldflags "-static"' -o $@.tmp $(CONTAINERD_PKG)/cmd/containerd-shim-runc-v2
	@mv -f $@.tmp $@

$(BIN)/containerd-stock: go.mod go.sum $(BIN)/.build-config
	@echo "+ bin/containerd-stock ($(CONTAINERD_VERSION))"
	$(GO_BUILD) -tags "$(GO_TAGS)" -ldflags '$(STOCK_LDFLAGS)' -o $@.tmp $(CONTAINERD_PKG)/cmd/containerd
	@mv -f $@.tmp $@

$(BIN)/runc: $(BIN)/.build-config
	@echo "+ bin/runc ($(RUNC_VERSION), tags: $(strip $(RUNC_TAGS)))"
	@rm -rf $(BIN)/.runc-tmp
	cd / && GOBIN=$(BIN)/.runc-tmp CGO_ENABLED=1 GOFLAGS= $(GO) install -tags "$(strip $(RUNC_TAGS))" \
		$(RUNC_PKG)@$(RUNC_VERSION)
	@mv -f $(BIN)/.runc-tmp/runc $@ && rmdir $(BIN)/.runc-tmp

$(BIN)/toybox: $(wildcard tools/toybox/*.go) go.mod $(BIN)/.build-config
	@echo "+ bin/toybox"
	CGO_ENABLED=0 $(GO_BUILD) -ldflags '-s -w' -o $@.tmp ./tools/toybox
	@mv -f $@.tmp $@

# containerd 1.7 (the upgrade tests) has a stamp of its own, like the CRI
# tools. Built as 1.7's Makefile builds it (urfave_cli_no_docs, the version
# stamped into its own version package, the shim static without cgo), with
# `go build` inside the module in the module cache, like critest: its own
# go.mod and go.sum (-mod=readonly: the cache is read-only), so none of its
# dependency versions reach our go.mod.
CONTAINERD17_LDFLAGS := -X $(CONTAINERD17_PKG)/version.Version=$(CONTAINERD17_VERSION) \
	-X $(CONTAINERD17_PKG)/version.Package=$(CONTAINERD17_PKG) $(STRIP)
CONTAINERD17_BUILD_CONFIG := $(CONTAINERD17_VERSION) [$(CONTAINERD17_LDFLAGS)] [$(GO_TAGS)] $(shell $(GO) env GOVERSION)
$(BIN)/.containerd-1.7-build-config: FORCE
	@mkdir -p $(BIN)
	@echo '$(CONTAINERD17_BUILD_CONFIG)' | cmp -s - $@ || echo '$(CONTAINERD17_BUILD_CONFIG)' > $@

# containerd17_build: $(1) the package dir in the module, $(2) extra
# environment, $(3) extra ldflags.
define containerd17_build
	@dir=$$(cd / && GOFLAGS= $(GO) mod download -json $(CONTAINERD17_PKG)@$(CONTAINERD17_VERSION) | \
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	if [ -z "$$dir" ]; then echo "$(CONTAINERD17_PKG)@$(CONTAINERD17_VERSION): no module dir" >&2; exit 1; fi; \
	echo "cd $$dir && go build ./$(1)"; \
	cd "$$dir" && $(2) GOFLAGS=-mod=readonly $(GO) build -buildvcs=false -tags "$(GO_TAGS)" \
		-ldflags '$(CONTAINERD17_LDFLAGS) $(3)' -o $@.tmp ./$(1)
	@mv -f $@.tmp $@
endef

$(BIN)/containerd-1.7: $(BIN)/.containerd-1.7-build-config
	@echo "+ bin/containerd-1.7 ($(CONTAINERD17_VERSION))"
	$(call containerd17_build,cmd/containerd,,)

$(BIN)/containerd-shim-runc-v2-1.7: $(BIN)/.containerd-1.7-build-config
	@echo "+ bin/containerd-shim-runc-v2-1.7 ($(CONTAINERD17_VERSION), static)"
	$(call containerd17_build,cmd/containerd-shim-runc-v2,CGO_ENABLED=0,-extldflags "-static")

# The CRI tools have a stamp of their own, so that moving their pins does not
# rebuild containerd and runc (and the other way round). Static, like the
# release builds of crictl and the CNI plugins.
CRI_BUILD_CONFIG := $(CRI_TOOLS_VERSION) $(CNI_PLUGINS_VERSION) $(shell $(GO) env GOVERSION)
$(BIN)/.cri-build-config: FORCE
	@mkdir -p $(BIN)
	@echo '$(CRI_BUILD_CONFIG)' | cmp -s - $@ || echo '$(CRI_BUILD_CONFIG)' > $@

CRI_TOOLS_LDFLAGS := -X $(CRI_TOOLS_PKG)/pkg/version.Version=$(CRI_TOOLS_VERSION:v%=%) -s -w

$(BIN)/crictl: $(BIN)/.cri-build-config
	@echo "+ bin/crictl ($(CRI_TOOLS_VERSION))"
	@rm -rf $(BIN)/.crictl-tmp
	cd / && GOBIN=$(BIN)/.crictl-tmp CGO_ENABLED=0 GOFLAGS= $(GO) install -ldflags '$(CRI_TOOLS_LDFLAGS)' \
		$(CRI_TOOLS_PKG)/cmd/crictl@$(CRI_TOOLS_VERSION)
	@mv -f $(BIN)/.crictl-tmp/crictl $@ && rmdir $(BIN)/.crictl-tmp

# critest: the module is downloaded (verified against the checksum database
# like any other) and its own go.mod and go.sum build the test binary, as
# cri-tools' Makefile does with `go test -c`; -mod=readonly because the
# module cache is read-only.
$(BIN)/critest: $(BIN)/.cri-build-config
	@echo "+ bin/critest ($(CRI_TOOLS_VERSION))"
	@dir=$$(cd / && GOFLAGS= $(GO) mod download -json $(CRI_TOOLS_PKG)@$(CRI_TOOLS_VERSION) | \
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	if [ -z "$$dir" ]; then echo "critest: no module dir for $(CRI_TOOLS_PKG)@$(CRI_TOOLS_VERSION)" >&2; exit 1; fi; \
	echo "cd $$dir && go test -c ./cmd/critest"; \
	cd "$$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly $(GO) test -c -ldflags '$(CRI_TOOLS_LDFLAGS)' -o $@.tmp ./cmd/critest
	@mv -f $@.tmp $@

$(CNI_BIN)/%: $(BIN)/.cri-build-config
	@echo "+ bin/cni/$* ($(CNI_PLUGINS_VERSION))"
	@mkdir -p $(CNI_BIN) && rm -rf $(CNI_BIN)/.tmp-$*
	cd / && GOBIN=$(CNI_BIN)/.tmp-$* CGO_ENABLED=0 GOFLAGS= $(GO) install \
		-ldflags '-X $(CNI_PLUGINS_PKG)/pkg/utils/buildversion.BuildVersion=$(CNI_PLUGINS_VERSION) -s -w' \
		$(CNI_PLUGINS_PKG)/plugins/$(CNI_PLUGIN_DIR_$*)@$(CNI_PLUGINS_VERSION)
	@mv -f $(CNI_BIN)/.tmp-$*/$* $@ && rmdir $(CNI_BIN)/.tmp-$*

CNI_PLUGIN_DIR_bridge := main/bridge
CNI_PLUGIN_DIR_loopback := main/loopback
CNI_PLUGIN_DIR_host-local := ipam/host-local
CNI_PLUGIN_DIR_portmap := meta/portmap

# The registry that serves the CRI tests' images (tools/testimages, its own
# module: go-containerregistry stays out of our go.mod).
TESTIMAGES_SRC := $(wildcard tools/testimages/*.go) tools/testimages/go.mod tools/testimages/go.sum
$(BIN)/testimages: $(TESTIMAGES_SRC) $(BIN)/.build-config
	@echo "+ bin/testimages"
	cd tools/testimages && CGO_ENABLED=0 $(GO_BUILD) -ldflags '-s -w' -o $@.tmp .
	@mv -f $@.tmp $@

# Unit tests: every package except integration/ (whose tests also carry the
# "integration" build tag).
unit:
	$(GO) test -buildvcs=false $$($(GO) list ./... | grep -v '/integration\(/\|$$\)')
	cd tools/testimages && $(GO) test -buildvcs=false ./...

integration: build
	@if [ -d integration ]; then \
		PATH="$(BIN):$$PATH" $(GO) test -buildvcs=false -tags integration -count=1 -v -timeout 30m ./integration/...; \
	else \
		echo "no integration/ directory yet; skipping"; \
	fi

fmt-check:
	@files=$$(gofmt -l $$(find . \( -path ./bin -o -path ./.git -o -name testdata \) -prune -o -name '*.go' -print)); \
	if [ -n "$$files" ]; then echo "gofmt needed for:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...
	@if [ -d integration ]; then $(GO) vet -tags integration ./integration/...; fi
	cd tools/testimages && $(GO) vet ./...

lint: fmt-check vet

test: lint unit integration critest-smoke critest-restart

demo: build
	PATH="$(BIN):$$PATH" $(ROOTDIR)/scripts/demo.sh

# The recovery benchmark (bench/, results in docs/benchmarks.md): our daemon
# and stock containerd restarted alternately over the same shim populations.
# Needs root; takes about 6 minutes on 2 cores (cri100, 100 CRI pods, runs
# only when named in -cases). Extra flags through
# BENCH_FLAGS, e.g. BENCH_FLAGS="-rounds 5 -cases live1000,runc -keep -pprof".
BENCH_BIN := $(BIN)/bench
BENCH_FLAGS ?=
bench: build
	@mkdir -p $(BENCH_BIN)
	@echo "+ bin/bench/{bench,synthshim,floor}"
	$(GO_BUILD) -o $(BENCH_BIN)/bench.tmp ./bench/cmd/bench
	@mv -f $(BENCH_BIN)/bench.tmp $(BENCH_BIN)/bench
	$(GO_BUILD) -o $(BENCH_BIN)/synthshim.tmp ./bench/synthshim
	@mv -f $(BENCH_BIN)/synthshim.tmp $(BENCH_BIN)/synthshim
	$(GO_BUILD) -o $(BENCH_BIN)/floor.tmp ./bench/floor
	@mv -f $(BENCH_BIN)/floor.tmp $(BENCH_BIN)/floor
	$(BENCH_BIN)/bench -bin $(BIN) -tools $(BENCH_BIN) -repo $(ROOTDIR) $(BENCH_FLAGS)

# cri-tools' validation suite (bin/critest) against stock containerd and
# ours in one run (tools/critest): prints both daemons' outcome of every
# spec, the skips by name with their reasons, and fails if ours does not
# pass a spec stock passes. Needs root; offline (bin/testimages serves the
# images); about 3 minutes on 2 cores. Extra flags through CRITEST_FLAGS,
# e.g. CRITEST_FLAGS="-focus Streaming -keep". critest-smoke, part of make
# test, runs the groups below (about 30 s): CRI's basic pod and container
# life, exec/attach, and the idempotence of stop and remove.
CRITEST_FLAGS ?=
CRITEST_SMOKE := Runtime info|Idempotence|basic operations on (PodSandbox|container)|Streaming
critest: critest-driver
	$(BIN)/critest-driver -bin $(BIN) $(CRITEST_FLAGS)

critest-smoke: critest-driver
	$(BIN)/critest-driver -bin $(BIN) -focus '$(CRITEST_SMOKE)' $(CRITEST_FLAGS)

# containerd v2.4.2's own CRI restart test, TestContainerdRestart (its
# integration/ package), against ours and stock: the driver restarts the
# daemon each time the test has stopped it, and stands in for the pkill
# and pidof the test runs, so only that daemon is signalled, by PID.
# About 1 minute; part of make test.
critest-restart: critest-driver $(BIN)/containerd-integration.test
	$(BIN)/critest-driver -bin $(BIN) -containerd-restart $(CRITEST_FLAGS)

# The test binary of containerd's integration/ package, built like
# critest: inside the module in the module cache (the same version our
# go.mod pins), with its own go.mod and go.sum, -mod=readonly.
$(BIN)/containerd-integration.test: go.mod go.sum $(BIN)/.build-config
	@echo "+ bin/containerd-integration.test ($(CONTAINERD_VERSION))"
	@dir=$$(cd / && GOFLAGS= $(GO) mod download -json $(CONTAINERD_PKG)@$(CONTAINERD_VERSION) | \
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	if [ -z "$$dir" ]; then echo "$(CONTAINERD_PKG)@$(CONTAINERD_VERSION): no module dir" >&2; exit 1; fi; \
	echo "cd $$dir && go test -c ./integration"; \
	cd "$$dir" && GOFLAGS=-mod=readonly $(GO) test -c -o $@.tmp ./integration
	@mv -f $@.tmp $@

critest-driver: build
	@echo "+ bin/critest-driver"
	$(GO_BUILD) -o $(BIN)/critest-driver.tmp ./tools/critest
	@mv -f $(BIN)/critest-driver.tmp $(BIN)/critest-driver

clean:
	rm -rf $(BIN)
