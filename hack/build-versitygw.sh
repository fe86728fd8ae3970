#!/usr/bin/env bash
# Builds versitygw (Versity's S3 gateway: a real S3 server over a POSIX directory) from the Go
# module proxy into $CACHE/versitygw-<version>/bin/versitygw, once; prints that directory.
# The local clusters' artifact store (hack/localcluster.py) runs it. Chosen over SeaweedFS's S3
# gateway because it is one static binary with a far smaller build, and it serves what the
# data plane needs: SigV4 (headers and presigned query), path-style buckets and multipart.
#
#   hack/build-versitygw.sh    -> .../versitygw-v1.8.0 (bin/versitygw)
set -euo pipefail

VERSION=v1.8.0

CACHE="${CONVEYOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor}"
out="$CACHE/versitygw-$VERSION"
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi
# One build at a time (cluster-up may be asked twice at once); the next finds it done.
mkdir -p "$CACHE"
exec 9>"$out.lock"
flock 9
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build-versitygw: go is missing" >&2; exit 1; }
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"  # outside any module: `go mod download` of a bare module path
src=$(go mod download -json "github.com/versity/versitygw@$VERSION" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')

rm -rf "$out.tmp" && mkdir -p "$out.tmp/bin"
echo "build-versitygw: building versitygw $VERSION ..." >&2
(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
  -o "$out.tmp/bin/versitygw" ./cmd/versitygw)
touch "$out.tmp/done"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "build-versitygw: built in $(( $(date +%s) - start ))s" >&2
echo "$out"
