# conveyor-clair-scan:0.1.0, Conveyor's own image for `scan: {scanner: clair}` jobs (the
# operator's --clair-scanner-image): the static Go client scanners/cmd/conveyor-clair-scan/
# (standard library only), alone in the image with /tmp, run as uid 65532. It asks the
# registry for the image's manifest and Clair for the index and vulnerability reports.
SRC="$HERE/../../scanners"
NAMES=(conveyor-clair-scan:0.1.0)
INPUTS=("$(cd "$SRC" && find . -type f \( -name '*.go' -o -name go.mod \) ! -name '*_test.go' | sort | xargs sha256sum | sha256sum)"
  "$(go env GOVERSION 2>/dev/null || echo none)")
CONFIG=(--config.entrypoint /bin/conveyor-clair-scan --config.user 65532:65532 --config.workingdir /tmp)
build_rootfs() {
  mkdir -p "$1/bin" "$1/tmp" "$1/etc"
  chmod 1777 "$1/tmp"
  (cd "$SRC" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" \
    -o "$1/bin/conveyor-clair-scan" ./cmd/conveyor-clair-scan)
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$1/etc/group"
}
