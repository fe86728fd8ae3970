#!/usr/bin/env bash
# Builds BuildKit's buildkitd and buildctl from the Go module proxy (github.com/moby/buildkit at
# BUILDKIT_VERSION, its dependencies from the proxy as its go.sum pins them) into a cache outside the clone, once per
# version, and prints the directory holding them. hack/images/buildkit.sh puts them in the rootless
# builder image.
set -euo pipefail

BUILDKIT_VERSION="${BUILDKIT_VERSION:-v0.19.0}"
CACHE="${CONVEYOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor}"
BIN="$CACHE/buildkit-$BUILDKIT_VERSION/bin"

die() { echo "build-buildkit: $*" >&2; exit 1; }
if [ -x "$BIN/buildkitd" ] && [ -x "$BIN/buildctl" ]; then echo "$BIN"; exit 0; fi
# One build at a time (cluster-up and `make images` of several checkouts share the cache).
mkdir -p "$(dirname "$BIN")"
exec 9>"$(dirname "$BIN")/lock"
flock 9
if [ -x "$BIN/buildkitd" ] && [ -x "$BIN/buildctl" ]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null 2>&1 || die "Go is not installed: install it and put 'go' on PATH"

export GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
mod="github.com/moby/buildkit@$BUILDKIT_VERSION"
log="$CACHE/buildkit-$BUILDKIT_VERSION/build.log"
mkdir -p "$(dirname "$log")"
src=$(cd "$(dirname "$log")" && go mod download -json "$mod" 2>>"$log" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p') || true
[ -n "$src" ] && [ -f "$src/go.mod" ] || { tail -n 5 "$log" >&2; die "the Go module proxy could not serve $mod (log: $log)"; }

start=$(date +%s)
tmp="$BIN.tmp"
# A writable copy (the module cache is read-only); its own go.mod (replaces) and go.sum apply.
work="$CACHE/buildkit-$BUILDKIT_VERSION/src"
rm -rf "$work" && cp -r "$src" "$work" && chmod -R u+w "$work"
rm -rf "$tmp" && mkdir -p "$tmp"
pkg=github.com/moby/buildkit
# As upstream's release build: static, no cgo, version stamped, the same build tags.
ldflags="-s -w -X $pkg/version.Version=$BUILDKIT_VERSION -X $pkg/version.Revision=conveyor -X $pkg/version.Package=$pkg"
for cmd in buildkitd buildctl; do
  echo "build-buildkit: building $cmd $BUILDKIT_VERSION ..." >&2
  (cd "$work" && go build -mod=readonly -trimpath -tags "osusergo netgo static_build" -ldflags "$ldflags" \
    -o "$tmp/$cmd" "./cmd/$cmd") >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "building $cmd failed (log: $log)"; }
done
rm -rf "$BIN" "$work" && mv "$tmp" "$BIN"
echo "build-buildkit: built in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
