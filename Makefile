# mailcow-ha. `make` lists the targets. On a fresh Debian 12 machine: `make demo`, then `make test`.
SHELL := /bin/bash
GO ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Stamp the VCS revision into binaries even where GOFLAGS says otherwise (mailcow-ha version prints it).
BUILDFLAGS := -buildvcs=auto -trimpath

.DEFAULT_GOAL := help
.PHONY: help deps build test bench lint verify demo image test-vm clean

help: ## list the targets
	@echo "mailcow-ha: make TARGET"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 12

deps: ## install the Debian packages the tests and the demo need (idempotent)
	@bash scripts/deps.sh

build: ## build the commands into bin/
	@mkdir -p bin
	GOFLAGS= CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -o bin/ ./cmd/...

test: deps ## run every test tier: go test -race ./... with dockerd started if needed
	@bash scripts/test.sh

bench: deps ## print the benchmarks' figures (dockerd started if needed)
	@bash scripts/dockerd.sh start
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -p 1 ./...; rc=$$?; bash scripts/dockerd.sh stop; exit $$rc

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

verify: ## fail if go mod tidy would change go.mod or go.sum
	@cp go.mod build-go.mod.bak && cp go.sum build-go.sum.bak
	@$(GO) mod tidy
	@if ! cmp -s go.mod build-go.mod.bak || ! cmp -s go.sum build-go.sum.bak; then \
		echo "go mod tidy changes go.mod/go.sum:"; diff -u build-go.mod.bak go.mod; diff -u build-go.sum.bak go.sum; \
		mv build-go.mod.bak go.mod; mv build-go.sum.bak go.sum; exit 1; fi
	@rm -f build-go.mod.bak build-go.sum.bak; echo "go.mod and go.sum are tidy"

demo: deps build ## run the local 3-node lab, mail, a master power-off and its timeline (root)
	@bash scripts/demo.sh

image: ## build the local appliance disk image (needs the image build)
	@echo "make image: not yet available: the appliance image build has not landed yet" >&2; exit 1

test-vm: ## boot the image in QEMU and fail over between VMs (needs the VM tests)
	@echo "make test-vm: not yet available: the VM tests have not landed yet" >&2; exit 1

clean: ## remove build output
	rm -rf bin build
