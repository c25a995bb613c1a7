#!/usr/bin/env bash
# Builds a Go program from the Go module proxy by module path and exact version, into a cache
# outside the clone keyed by that version, so a machine builds each version once.
#
#   scripts/go-build.sh kubernetes v1.37.2   -> $SGPC_GO_CACHE/kubernetes/v1.37.2/{kubelet,kube-apiserver}
#   scripts/go-build.sh etcd v3.6.16         -> $SGPC_GO_CACHE/etcd/v3.6.16/etcd
#
# Prints the directory holding the binaries on its last line. A module whose go.mod replaces its
# own parts with local paths (kubernetes' staging modules, etcd's siblings) cannot be
# `go install`ed: a wrapper module requires it and points each replaced part at its published
# version instead. Go's own module and build caches stay where `go env` puts them.
set -euo pipefail

kind=${1:?usage: go-build.sh kubernetes|etcd VERSION}
version=${2:?usage: go-build.sh kubernetes|etcd VERSION}
case "$version" in v[0-9]*.[0-9]*.[0-9]*) ;; *) echo "go-build: version '$version' is not of the form vX.Y.Z" >&2; exit 2 ;; esac
cache=${SGPC_GO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sgpc/go}
out="$cache/$kind/$version"

case "$kind" in
  kubernetes) module=k8s.io/kubernetes; programs="cmd/kubelet cmd/kube-apiserver"; bins="kubelet kube-apiserver" ;;
  etcd)       module=go.etcd.io/etcd/server/v3; programs="."; bins="etcd" ;;
  *) echo "go-build: unknown program '$kind' (kubernetes or etcd)" >&2; exit 2 ;;
esac

have=1; for b in $bins; do [ -x "$out/$b" ] || have=0; done
if [ "$have" = 1 ]; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "go-build: no 'go' on PATH (Go 1.26 is needed to build $module $version)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/sgpc-gobuild.XXXXXX")
trap 'rm -rf "$work"' EXIT
log="$work/build.log"
fail() { echo "go-build: $module $version: $1" >&2; tail -n 25 "$log" >&2 || true; exit 1; }

echo "go-build: $module $version: reading its go.mod from the module proxy" >&2
gomod=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module@$version" 2>"$log" \
        | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p') || fail "not served by the module proxy"
[ -n "$gomod" ] && [ -f "$gomod" ] || fail "not served by the module proxy"

# The wrapper: the version's go/godebug lines, the module, and every local replace pointed at the
# published module of the same release line (k8s.io/api v0.37.2 for kubernetes v1.37.2).
published=$version; [ "$kind" = kubernetes ] && published="v0.${version#v1.}"
{
  echo "module sgpc.invalid/build/$kind"
  grep -E '^(go|godebug) ' "$gomod"
  echo "require $module $version"
  sed -nE 's#^[[:space:]]*([^[:space:]]+)[[:space:]]+=>[[:space:]]+\.\.?/.*#replace \1 => \1 PUBLISHED#p' "$gomod" \
    | grep -v FORBIDDEN | sed "s/PUBLISHED/$published/"
} > "$work/go.mod"
echo "go-build: $module $version: $(grep -c '^replace' "$work/go.mod") local parts replaced by their published modules" >&2

ldflags="-s -w"
if [ "$kind" = kubernetes ]; then
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $p.gitVersion=$version -X $p.gitTreeState=clean -X $p.gitMajor=1 -X $p.gitMinor=$(echo "$version" | cut -d. -f2)"
  done
fi
pkgs=""; for p in $programs; do pkgs="$pkgs $module/$p"; done; pkgs=${pkgs//\/./}

mkdir -p "$out.partial"
start=$(date +%s)
echo "go-build: $module $version: go build$pkgs (CGO_ENABLED=0; a cold build takes many minutes)" >&2
( cd "$work" && GOFLAGS=-mod=mod go get "$module@$version" >>"$log" 2>&1 ) || fail "go get failed"
# Progress: a line a minute while the compiler runs.
( while sleep 60; do echo "go-build: $module $version: still building ($(( $(date +%s) - start ))s)" >&2; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null; rm -rf "$work"' EXIT
if [ "$kind" = etcd ]; then
  ( cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out.partial/etcd" $pkgs >>"$log" 2>&1 ) || fail "go build failed"
else
  ( cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out.partial/" $pkgs >>"$log" 2>&1 ) || fail "go build failed"
fi
kill $ticker 2>/dev/null || true
rm -rf "$out"; mv "$out.partial" "$out"
echo "go-build: $module $version: built $bins in $(( $(date +%s) - start ))s" >&2
echo "$out"
