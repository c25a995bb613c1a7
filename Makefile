# sgpc: `make conformance` runs the catalogue against a private containerd 2.x;
# `make test` runs every test, including those that start real containerd.

CACHE          ?= $(CURDIR)/.cache
CONTAINERD_DIR ?= $(CACHE)/debs/sid/containerd/usr/bin
# busybox-static: critest's image (sgpc's own images hold only its probe); docker-registry: the local
# registry; runc: the OCI runtime; crun: a runtime that refuses the spec (tested); skopeo:
# tests that the archives load; protobuf-compiler: CRI; containernetworking-plugins: the
# loopback plugin of a live node's network; libseccomp-dev: runc and CRI-O built from their Go
# modules; libsqlite3-dev and conmon: CRI-O; umoci: tests that apply layered images independently.
APT_PACKAGES   := busybox-static docker-registry runc crun skopeo protobuf-compiler \
                  containernetworking-plugins libseccomp-dev libsqlite3-dev conmon umoci
# containerd lines: 1.6 (Debian 12), 1.7 (Debian 13), 2.x (unstable). Suites move: the version
# served is recorded in .cache/debs/<suite>/containerd/.version and in the reports.
SUITES         := bookworm trixie sid
# The live node: kubelet and kube-apiserver from k8s.io/kubernetes, etcd from
# go.etcd.io/etcd/server/v3, built once per version into ~/.cache/sgpc/go (sgpc build).
KUBERNETES     ?= v1.37.2
ETCD           ?= v3.6.16
# The newest containerd release, built from github.com/containerd/containerd/v2 the same way
# (matrix.yaml's containerd-2.4-runc column).
CONTAINERD_MODULE ?= v2.4.2
RUNC_MODULE    ?= v1.4.4
# The newest CRI-O the module proxy serves (github.com/cri-o/cri-o; crio and pinns).
CRIO_MODULE    ?= v1.36.3
# critest (sigs.k8s.io/cri-tools), run beside sgpc: `--critest`, tests/matrix.rs, make bench.
CRITEST        ?= v1.37.0
# The sonobuoy CLI (github.com/vmware-tanzu/sonobuoy): tests/bundle.rs reads a bundle with
# `sonobuoy results`. Keep equal to gomodule::SONOBUOY_VERSION.
SONOBUOY       ?= v0.57.5
# Its path, for a recipe (sgpc build prints the cached directory; builds it if it is missing).
CRITEST_BIN    = $$($(SGPC) build critest $(CRITEST))/critest
REPORT_DIR     ?= target/sgpc
CARGO          ?= cargo
SGPC           := $(CARGO) run --quiet --bin sgpc --

export SGPC_CONTAINERD_DIR := $(CONTAINERD_DIR)
export SGPC_KUBERNETES_VERSION := $(KUBERNETES)
export SGPC_CRIO_MODULE := $(CRIO_MODULE)
export SGPC_RUNC_MODULE := $(RUNC_MODULE)
# The GitHub workflow validator (tests/workflow.rs): check-jsonschema validates against the
# GitHub-workflow schema it vendors, offline, in a virtualenv of its own.
VENV           := $(CACHE)/venv
export SGPC_CHECK_JSONSCHEMA := $(VENV)/bin/check-jsonschema

.PHONY: setup conformance conformance-node matrix matrix-node matrix-releases test bench clean-cache

setup:
	@scripts/apt-install.sh $(APT_PACKAGES)
	@command -v youki >/dev/null 2>&1 || test -x $(HOME)/.cargo/bin/youki || \
	  $(CARGO) install --quiet --locked youki --features v1
	@for suite in $(SUITES); do $(SGPC) fetch --suite $$suite --cache $(CACHE) || exit 1; done
	@$(SGPC) build kubernetes $(KUBERNETES) >/dev/null
	@$(SGPC) build etcd $(ETCD) >/dev/null
	@$(SGPC) build containerd $(CONTAINERD_MODULE) >/dev/null
	@$(SGPC) build runc $(RUNC_MODULE) >/dev/null
	@$(SGPC) build crio $(CRIO_MODULE) >/dev/null
	@$(SGPC) build critest $(CRITEST) >/dev/null
	@$(SGPC) build sonobuoy $(SONOBUOY) >/dev/null
	@test -x $(SGPC_CHECK_JSONSCHEMA) || { python3 -m venv $(VENV) && $(VENV)/bin/pip install --quiet 'check-jsonschema==0.39.0'; }

conformance: setup
	$(SGPC) run --containerd $(CONTAINERD_DIR) \
	  --junit $(REPORT_DIR)/junit.xml --json $(REPORT_DIR)/report.json

# The same catalogue as Pods through a live kubelet (etcd, kube-apiserver, kubelet $(KUBERNETES))
# over the same containerd.
conformance-node: setup
	$(SGPC) run --kubernetes $(KUBERNETES) --etcd $(ETCD) --containerd $(CONTAINERD_DIR) \
	  --junit $(REPORT_DIR)/node/junit.xml --json $(REPORT_DIR)/node/report.json

matrix: setup
	$(SGPC) matrix --file matrix.yaml --cache $(CACHE) --out $(REPORT_DIR)/matrix --critest $(CRITEST_BIN)

# Kubernetes releases x containerd lines through live nodes (builds v1.34.4 on first use).
matrix-node: setup
	$(SGPC) matrix --file matrix-node.yaml --cache $(CACHE) --out $(REPORT_DIR)/matrix-node

# containerd 2.2 and 2.3, runc 1.3 and 1.5, CRI-O 1.34 and 1.35, from their Go modules (built
# on first use).
matrix-releases: setup
	$(SGPC) matrix --file matrix-releases.yaml --cache $(CACHE) --out $(REPORT_DIR)/matrix-releases --critest $(CRITEST_BIN)

test: setup
	$(CARGO) test --workspace --no-fail-fast

bench: setup
	$(CARGO) bench --bench catalogue --bench matrix --bench discover --bench node

clean-cache:
	rm -rf $(CACHE)
