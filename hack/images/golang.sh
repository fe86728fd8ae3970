# golang:* (golang:alpine, golang:1.23-alpine and golang:1.26 name it in the examples and seeds).
# Debian bookworm minbase with git, gcc and libc6-dev (cgo), and the Go toolchain this machine
# builds the control plane with (`go env GOROOT`, Go >= 1.26), at /usr/local/go as upstream puts
# it; GOPATH=/go, GOTOOLCHAIN=local. Differs: every tag is that one Go version (a go.mod asking for
# a newer Go fails instead of downloading one); Debian, not Alpine, under the -alpine tags; no
# module proxy is reachable from pods, so builds need vendored or standard-library-only code.
GOROOT_HOST="$(go env GOROOT 2>/dev/null || true)"
NAMES=(golang:latest golang:1.26 golang:bookworm golang:alpine golang:1.23-alpine golang:1.23 golang:1.24-alpine golang:1.25-alpine)
INPUTS=("$(go env GOVERSION 2>/dev/null || echo none)")
CONFIG=(--config.workingdir /go
  --config.env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  --config.env GOPATH=/go --config.env GOTOOLCHAIN=local --config.env "GOLANG_VERSION=${INPUTS[0]#go}"
  --config.cmd bash)
build_rootfs() {
  [ -x "$GOROOT_HOST/bin/go" ] || die "no Go toolchain on this machine to put in the golang image"
  debootstrap_into "$1" "git,gcc,libc6-dev,ca-certificates"
  mkdir -p "$1/usr/local" "$1/go/bin" "$1/go/src"
  # The toolchain without its own test suite (a quarter of its size).
  tar -C "$GOROOT_HOST/.." --exclude="$(basename "$GOROOT_HOST")/test" -cf - "$(basename "$GOROOT_HOST")" \
    | tar -C "$1/usr/local" -xf -
  [ "$(basename "$GOROOT_HOST")" = go ] || mv "$1/usr/local/$(basename "$GOROOT_HOST")" "$1/usr/local/go"
  chmod 1777 "$1/go"
}
