# conveyor-transfer:0.3.0, Conveyor's image that delivers the artifact transfer binary into job
# pods (the operator's --transfer-image): the static Go program transfer/cmd/conveyor-transfer/
# (standard library only), alone in the image. An init container runs it to copy itself into the
# pod's emptyDir and to download the job's dependencies' artifacts and caches; the job's own
# container runs the copy after the script to upload (whatever that image holds).
SRC="$HERE/../../transfer"
NAMES=(conveyor-transfer:0.3.0)
INPUTS=("$(cd "$SRC" && find . -type f \( -name '*.go' -o -name go.mod \) ! -name '*_test.go' | sort | xargs sha256sum | sha256sum)"
  "$(go env GOVERSION 2>/dev/null || echo none)")
CONFIG=(--config.entrypoint /bin/conveyor-transfer --config.workingdir /tmp)
build_rootfs() {
  mkdir -p "$1/bin" "$1/tmp"
  chmod 1777 "$1/tmp"
  (cd "$SRC" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" \
    -o "$1/bin/conveyor-transfer" ./cmd/conveyor-transfer)
}
