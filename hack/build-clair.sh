#!/usr/bin/env bash
# Build Clair v4 (the indexer/matcher service) from the Go module proxy, once per version.
# The proxy refuses version lists, so `go install ...@v` fails; download the exact module and
# build inside its source instead. Result: $CACHE/clair-$VERSION/clair (static, CGO off).
set -euo pipefail
VERSION="${CLAIR_VERSION:-v4.9.0}"
CACHE="${CONVEYOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor}"
OUT="$CACHE/clair-$VERSION"
if [[ -x "$OUT/clair" ]]; then echo "$OUT/clair"; exit 0; fi
# One build at a time (cluster-up and `make images` may both ask; the cache is shared).
mkdir -p "$CACHE"
exec 9>"$OUT.lock"
flock 9
if [[ -x "$OUT/clair" ]]; then echo "$OUT/clair"; exit 0; fi
start=$(date +%s)
command -v go >/dev/null || { echo "build-clair: go is required" >&2; exit 2; }
WORK="$(mktemp -d)"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
DIR="$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "github.com/quay/clair/v4@$VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$DIR" ]] || { echo "build-clair: module github.com/quay/clair/v4@$VERSION not served" >&2; exit 2; }
cp -r "$DIR" "$WORK/src" && chmod -R u+w "$WORK/src"
mkdir -p "$OUT.tmp"
# GO_BUILD_P bounds parallel compiles on a host short of memory (Go's default: one per core).
(cd "$WORK/src" && CGO_ENABLED=0 go build ${GO_BUILD_P:+-p "$GO_BUILD_P"} -trimpath \
  -ldflags "-s -w -X github.com/quay/clair/v4/cmd.Version=$VERSION" -o "$OUT.tmp/clair" ./cmd/clair)
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "build-clair: built Clair $VERSION in $(( $(date +%s) - start ))s" >&2
echo "$OUT/clair"
