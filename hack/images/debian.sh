# debian:bookworm-slim (and debian:bookworm, debian:12, debian:12-slim).
# mmdebstrap's `minbase` of bookworm from the archive the host's apt uses, without apt lists,
# caches, man pages and docs (as Docker's slim images). Differs: built today from the host's
# archive snapshot, so package versions are those; the full debian:bookworm is the slim one too.
NAMES=(debian:bookworm-slim debian:bookworm debian:12-slim debian:12)
INPUTS=()
CONFIG=(--config.cmd bash --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
build_rootfs() { debootstrap_into "$1" ""; }
