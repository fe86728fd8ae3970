# gcr.io/distroless/static:nonroot (and :latest, :nonroot-amd64, static-debian12:*): the base a
# static binary runs on, with nothing else. Files taken from Debian bookworm's packages (a minbase
# with ca-certificates, tzdata and netbase is bootstrapped aside, and only these are copied):
# /etc/ssl/certs/ca-certificates.crt, /usr/share/zoneinfo, /etc/services, /etc/protocols,
# /etc/nsswitch.conf, /etc/os-release, the copyrights of those packages; /etc/passwd and
# /etc/group with root (0), nobody (65534) and nonroot (65532, home /home/nonroot); /tmp 1777.
# No shell, no package manager, no libc (so not a stand-in for distroless/base): a scanner finds
# no OS package in it.
# Differs: every tag is the one image and runs as nonroot (65532:65532, workdir /home/nonroot),
# as :nonroot does; upstream's :latest runs as root (0) — a Dockerfile that needs root says
# `USER root`. No /var/lib/dpkg/status.d (upstream lists its few packages there), so scanners see
# it as an empty OS; os-release says Debian 12 like upstream's.
NAMES=(gcr.io/distroless/static:nonroot gcr.io/distroless/static:latest
  gcr.io/distroless/static:nonroot-amd64 gcr.io/distroless/static-debian12:nonroot
  gcr.io/distroless/static-debian12:latest)
INPUTS=()
CONFIG=(--config.user 65532:65532 --config.workingdir /home/nonroot
  --config.env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
build_rootfs() {
  local root="$1" stage p
  stage="$(dirname "$root")/stage"
  rm -rf "$stage" && mkdir -p "$stage"
  debootstrap_into "$stage" "ca-certificates,tzdata,netbase"
  mkdir -p "$root"/etc/ssl/certs "$root"/usr/share "$root"/tmp "$root"/home/nonroot "$root"/root \
    "$root"/usr/share/doc
  chmod 1777 "$root"/tmp
  chmod 700 "$root"/root
  chown 65532:65532 "$root"/home/nonroot
  cp "$stage"/etc/ssl/certs/ca-certificates.crt "$root"/etc/ssl/certs/
  cp -a "$stage"/usr/share/zoneinfo "$root"/usr/share/
  cp "$stage"/etc/services "$stage"/etc/protocols "$root"/etc/
  cp -L "$stage"/etc/os-release "$root"/etc/os-release
  for p in ca-certificates tzdata netbase base-files; do
    [ -f "$stage/usr/share/doc/$p/copyright" ] || continue
    mkdir -p "$root/usr/share/doc/$p" && cp "$stage/usr/share/doc/$p/copyright" "$root/usr/share/doc/$p/"
  done
  rm -rf "$stage"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root"/etc/passwd
  printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$root"/etc/group
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root"/etc/nsswitch.conf
}
