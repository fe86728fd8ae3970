# aquasec/trivy:0.74.0, the operator's --scanner-image default (DEFAULT_SCANNER_IMAGE).
# Trivy built from the Go module proxy (hack/build-trivy.sh, cached by version) at
# /usr/local/bin/trivy and its report templates at /contrib (as in Aqua's image: `--template
# @/contrib/gitlab.tpl`), on busybox for the scan job's shell, with the host's CA bundle.
# Differs: busybox instead of Alpine (no apk, no git); a `nonroot` user 65532 (the scan jobs'
# SCANNER_USER) is in /etc/passwd.
TRIVY_DIR="$(bash "$HERE/../build-trivy.sh")"
NAMES=(aquasec/trivy:0.74.0)
INPUTS=(
  "$(basename "$TRIVY_DIR")"
  "$(sha256sum "$TRIVY_DIR/bin/trivy" | cut -c1-64)"
  "$(sha256sum /bin/busybox 2>/dev/null | cut -c1-64)"
  "$(sha256sum /etc/ssl/certs/ca-certificates.crt 2>/dev/null | cut -c1-64)"
)
CONFIG=(--config.entrypoint trivy --config.env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
build_rootfs() {
  busybox_into "$1"
  mkdir -p "$1"/usr/local/bin "$1"/contrib "$1"/etc/ssl/certs
  cp "$TRIVY_DIR"/bin/trivy "$1"/usr/local/bin/trivy
  cp "$TRIVY_DIR"/contrib/*.tpl "$1"/contrib/
  [ ! -f /etc/ssl/certs/ca-certificates.crt ] || cp /etc/ssl/certs/ca-certificates.crt "$1"/etc/ssl/certs/
  echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >>"$1"/etc/passwd
  echo 'nonroot:x:65532:' >>"$1"/etc/group
}
