#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok) and the real nodes' kubelet, kube-proxy and CoreDNS from the Go module proxy into
# a cache outside the clone, once. Reuses what is there.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.14}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.1}"
GO_MIN="1.26"
CACHE="${CONVEYOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor}"
BIN="$CACHE/k8s-$K8S_VERSION/bin"
WORK="$CACHE/k8s-$K8S_VERSION/build"

die() { echo "build-control-plane: $*" >&2; exit 1; }

want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kubelet kube-proxy coredns)
missing=()
for b in "${want[@]}"; do [ -x "$BIN/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null 2>&1 || die "Go is not installed (need Go >= $GO_MIN): install it and put 'go' on PATH"
gov=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$GO_MIN" "$gov" | sort -V | head -n1)" != "$GO_MIN" ]; then
  die "Go $gov is too old: Kubernetes $K8S_VERSION and kwok $KWOK_VERSION need Go >= $GO_MIN"
fi

export GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
mkdir -p "$BIN" "$WORK"
start=$(date +%s)
log="$WORK/build.log"
: >"$log"

# Runs a go command; on failure names the module the proxy could not serve, if that is the cause.
gorun() {
  if ! "$@" >>"$log" 2>&1; then
    mod=$(grep -Eo '(reading|downloading|verifying) [^ :]+@[^ :]+' "$log" | tail -n1 || true)
    tail -n 20 "$log" >&2
    [ -n "$mod" ] && die "the Go module proxy could not serve ${mod#* } (full log: $log)"
    die "'$*' failed (full log: $log)"
  fi
}

ver_ldflags() {
  local pkg v="$K8S_VERSION" major minor
  major=$(echo "${v#v}" | cut -d. -f1); minor=$(echo "${v#v}" | cut -d. -f2)
  local flags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean"
    flags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

need() { for b in "${missing[@]}"; do [ "$b" = "$1" ] && return 0; done; return 1; }

# Kubernetes: a throwaway module that requires k8s.io/kubernetes and replaces every staging module
# with its published version, read from the real go.mod so the list cannot drift.
k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
if [ -n "$(for b in "${k8s_cmds[@]}"; do need "$b" && echo y; done)" ]; then
  d="$WORK/kubernetes"; mkdir -p "$d"; cd "$d"
  [ -f go.mod ] || gorun go mod init local/k8sbuild
  gorun go mod download -json "k8s.io/kubernetes@$K8S_VERSION"
  modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$modfile" ] || die "could not read the go.mod of k8s.io/kubernetes@$K8S_VERSION"
  staging_ver="v0.${K8S_VERSION#v1.}"
  args=(-require="k8s.io/kubernetes@$K8S_VERSION")
  for m in $(grep -Eo 'k8s.io/[a-z0-9-]+ => ./staging' "$modfile" | awk '{print $1}'); do
    args+=(-replace="$m=$m@$staging_ver")
  done
  gorun go mod edit "${args[@]}"
  pkgs=()
  for b in "${k8s_cmds[@]}"; do
    need "$b" && pkgs+=("k8s.io/kubernetes/cmd/$b")
  done
  gorun go mod tidy -e
  for p in "${pkgs[@]}"; do
    echo "building $(basename "$p") ..." >&2
    gorun go build -mod=mod -trimpath -ldflags "$(ver_ldflags)" -o "$BIN/$(basename "$p")" "$p"
  done
fi

if need etcd; then
  d="$WORK/etcd"; mkdir -p "$d"; cd "$d"
  [ -f go.mod ] || gorun go mod init local/etcdbuild
  gorun go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  echo "building etcd ..." >&2
  gorun go build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
fi

if need kwok; then
  echo "building kwok ..." >&2
  gorun env GOBIN="$BIN" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi

if need coredns; then
  echo "building coredns ..." >&2
  # CoreDNS has no replace directives: a plain install at a fixed version works.
  gorun env GOBIN="$BIN" go install -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
fi

echo "built in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
