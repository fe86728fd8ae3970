# quay.io/projectquay/clair:4.9.0 (Clair v4, the indexer and matcher a `scan: {scanner: clair}`
# job asks; deploy/optional/clair.yaml runs it). The `clair` binary of github.com/quay/clair/v4
# v4.9.0 from the Go module proxy (hack/build-clair.sh, cached in ~/.cache/conveyor/clair-v4.9.0),
# static, alone in the image with /tmp. Differs: no clairctl, no CA certificates (Clair reaches
# only the local registry and the local feed here), upstream's entrypoint and user (65532) kept.
CLAIR_VERSION="${CLAIR_VERSION:-v4.9.0}"
NAMES=(quay.io/projectquay/clair:4.9.0)
INPUTS=("$CLAIR_VERSION" "$(sha256sum "$HERE/../build-clair.sh" | cut -d' ' -f1)")
CONFIG=(--config.entrypoint /bin/clair --config.user 65532:65532 --config.workingdir /tmp
  --config.env CLAIR_MODE=combo --config.env CLAIR_CONF=/config/config.yaml --config.env TMPDIR=/tmp)
build_rootfs() {
  local bin
  bin=$(CLAIR_VERSION="$CLAIR_VERSION" bash "$HERE/../build-clair.sh" | tail -n 1)
  [ -x "$bin" ] || die "building Clair $CLAIR_VERSION failed"
  mkdir -p "$1/bin" "$1/tmp" "$1/etc" "$1/config"
  chmod 1777 "$1/tmp"
  cp "$bin" "$1/bin/clair"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$1/etc/group"
}
