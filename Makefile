# mailcow-ha. `make` lists the targets. On a fresh Debian 12 machine: `make demo`, then `make test`.
SHELL := /bin/bash
GO ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Stamp the VCS revision into binaries even where GOFLAGS says otherwise (mailcow-ha version prints it).
BUILDFLAGS := -buildvcs=auto -trimpath

.DEFAULT_GOAL := help
.PHONY: help deps build test bench lint verify demo image image-hetzner test-vm clean

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

image: deps build ## build the local appliance image (build/image/<hash>/; reused while its inputs are unchanged)
	@bin/mailcow-ha image build-local

image-hetzner: build ## build the Hetzner snapshot with packer (HCLOUD_TOKEN from the environment)
	@if [ -z "$$HCLOUD_TOKEN" ]; then echo "make image-hetzner: set HCLOUD_TOKEN (a read/write API token of the project)" >&2; exit 1; fi
	@rm -rf build/packer && mkdir -p build/packer
	@bin/mailcow-ha image payload --target hetzner --out build/packer/payload
	@cp packer/mailcow-ha.pkr.hcl build/packer/
	@if ! packer version | grep -q '^Packer v1\.6\.'; then cp packer/newer/plugins.pkr.hcl build/packer/ && cd build/packer && packer init .; fi
	cd build/packer && packer build -var payload=payload -var "version=$$(../../bin/mailcow-ha version | cut -d' ' -f2)" \
		-var "build=$$(git rev-parse --short HEAD)" -var "channel=$${CHANNEL:-testing}" .
	@echo "snapshot: $$(jq -r '.builds[-1].artifact_id' build/packer/packer-manifest.json 2>/dev/null)"

test-vm: deps build ## boot the image in QEMU: two VMs and an arbitrator, a failover, bad user-data (root)
	@go test -count=1 -v -timeout 85m ./test/vm 2>&1 | grep -vE '^\s*=== (RUN|PAUSE|CONT|NAME)'; rc=$${PIPESTATUS[0]}; exit $$rc

clean: ## remove build output
	rm -rf bin build
