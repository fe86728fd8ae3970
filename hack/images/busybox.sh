# busybox (Docker Hub's busybox:*), and alpine:* for scripts that need only a POSIX shell and
# the usual tools (the operator's default job image is alpine:3.20).
# Debian's busybox-static with a symlink per applet, /etc/passwd and /etc/group, nothing else.
# Differs: busybox 1.35 whatever the tag says; as alpine, no apk, no musl, no /etc/os-release.
NAMES=(busybox:latest busybox:1.36 busybox:1.37 busybox:stable alpine:latest alpine:3.20 alpine:3.21)
INPUTS=("$(sha256sum /bin/busybox 2>/dev/null | cut -c1-64)")
CONFIG=(--config.cmd sh --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin)
build_rootfs() { busybox_into "$1"; }
