# conveyor-test/shell-only:1, for the artifacts tests: an image whose only program is a shell
# (Debian's busybox-static installed as /bin/sh alone, no applet links), so no tar, gzip, curl
# or wget on its PATH: artifacts must still upload and download (the transfer binary does it).
NAMES=(conveyor-test/shell-only:1)
INPUTS=("$(sha256sum /bin/busybox 2>/dev/null | cut -c1-64)")
CONFIG=(--config.env PATH=/usr/bin:/bin --config.workingdir /)
build_rootfs() {
  [ -x /bin/busybox ] || die "busybox-static is missing (make node-deps installs it)"
  mkdir -p "$1/bin" "$1/tmp" "$1/etc" "$1/root"
  chmod 1777 "$1/tmp"
  cp /bin/busybox "$1/bin/sh"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$1/etc/passwd"
  printf 'root:x:0:\n' >"$1/etc/group"
}
