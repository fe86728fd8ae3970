#!/usr/bin/env bash
# Builds Trivy and trivy-db (Trivy's own vulnerability database builder) from the Go module
# proxy into $CACHE/trivy-<version>/ (keyed by both versions), once; prints that directory.
# The scanner image (hack/images/trivy.sh) and the local vulnerability database
# (hack/vulnfeed/trivydb.py) use them. Nothing is downloaded but Go modules.
#
#   hack/build-trivy.sh        -> .../trivy-v0.74.0 (bin/trivy, bin/trivy-db, contrib/*.tpl)
set -euo pipefail

TRIVY_VERSION=v0.74.0
# The proxy refuses version lists and serves trivy-db by pseudo-version only: the one that
# Trivy's own go.mod requires, so the database schema is the one this Trivy reads.
TRIVY_DB_VERSION=v0.0.0-20260813095258-0e0340a01b57

CACHE="${CONVEYOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor}"
out="$CACHE/trivy-$TRIVY_VERSION-db-${TRIVY_DB_VERSION##*-}"
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi
# One build at a time (cluster-up and `make images` may both ask); the next finds it done.
mkdir -p "$CACHE"
exec 9>"$out.lock"
flock 9
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build-trivy: go is missing" >&2; exit 1; }
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"  # outside any module: `go mod download` of a bare module path

source_of() {  # the module's source directory in the module cache
  go mod download -json "$1@$2" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

rm -rf "$out.tmp" && mkdir -p "$out.tmp/bin" "$out.tmp/contrib"
trivy_src=$(source_of github.com/aquasecurity/trivy "$TRIVY_VERSION")
echo "build-trivy: building trivy $TRIVY_VERSION ..." >&2
# As Trivy's release build (goreleaser.yml): static, and encoding/json/v2, which it imports.
(cd "$trivy_src" && CGO_ENABLED=0 GOEXPERIMENT=jsonv2 go build -trimpath \
  -ldflags "-s -w -X github.com/aquasecurity/trivy/pkg/version/app.ver=${TRIVY_VERSION#v}" \
  -o "$out.tmp/bin/trivy" ./cmd/trivy)
# The report templates Trivy's image ships (contrib/gitlab.tpl: GitLab's container scanning report).
cp "$trivy_src"/contrib/*.tpl "$out.tmp/contrib/"

db_src=$(source_of github.com/aquasecurity/trivy-db "$TRIVY_DB_VERSION")
echo "build-trivy: building trivy-db $TRIVY_DB_VERSION ..." >&2
(cd "$db_src" && CGO_ENABLED=0 GOEXPERIMENT=jsonv2 go build -trimpath -ldflags "-s -w" \
  -o "$out.tmp/bin/trivy-db" ./cmd/trivy-db)

touch "$out.tmp/done"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "build-trivy: built in $(( $(date +%s) - start ))s" >&2
echo "$out"
