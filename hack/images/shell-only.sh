# conveyor-test/shell-only:1, for the artifacts tests: an image with a shell and the two programs
# Conveyor's job supervisor calls (kube/script.py: cat, sleep), and nothing else: Debian's dash
# as /bin/sh, coreutils' cat and sleep, the C library they load. No tar, gzip, curl or wget
# (busybox would not do: its shell runs its applets, tar among them, without links). Artifacts
# must still upload and download there: the transfer binary does it.
NAMES=(conveyor-test/shell-only:1)
INPUTS=("$(cat /bin/dash /bin/cat /bin/sleep /lib/x86_64-linux-gnu/libc.so.6 2>/dev/null | sha256sum | cut -c1-64)")
CONFIG=(--config.env PATH=/usr/bin:/bin --config.workingdir /)
build_rootfs() {
  local lib
  [ -x /bin/dash ] || die "dash is missing"
  mkdir -p "$1/bin" "$1/tmp" "$1/etc" "$1/root" "$1/lib64" "$1/lib/x86_64-linux-gnu"
  chmod 1777 "$1/tmp"
  cp /bin/dash "$1/bin/sh"
  cp /bin/cat /bin/sleep "$1/bin/"
  for lib in $(ldd /bin/dash /bin/cat /bin/sleep | grep -o '/lib[^ ]*' | sort -u); do
    cp -L "$lib" "$1$lib"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nci:x:1000:1000:ci:/tmp:/bin/sh\n' >"$1/etc/passwd"
  printf 'root:x:0:\nci:x:1000:\n' >"$1/etc/group"
}
