# sgpc: `make conformance` runs the catalogue against a private containerd 2.x;
# `make test` runs every test, including those that start real containerd.

CACHE          ?= $(CURDIR)/.cache
CONTAINERD_DIR ?= $(CACHE)/debs/sid/containerd/usr/bin
# busybox-static: the image payload; catatonit: the pause image; docker-registry: the local
# registry; runc: the OCI runtime; skopeo: tests that the archives load; protobuf-compiler: CRI.
APT_PACKAGES   := busybox-static catatonit docker-registry runc skopeo protobuf-compiler
REPORT_DIR     ?= target/sgpc
CARGO          ?= cargo

export SGPC_CONTAINERD_DIR := $(CONTAINERD_DIR)

.PHONY: setup conformance test bench clean-cache

setup:
	@scripts/apt-install.sh $(APT_PACKAGES)
	@scripts/fetch-deb.sh sid containerd $(CACHE)/debs/sid/containerd

conformance: setup
	$(CARGO) run --quiet --bin sgpc -- run --containerd $(CONTAINERD_DIR) \
	  --junit $(REPORT_DIR)/junit.xml --json $(REPORT_DIR)/report.json

test: setup
	$(CARGO) test --workspace

bench: setup
	$(CARGO) bench --bench catalogue

clean-cache:
	rm -rf $(CACHE)
