# docker:* (the Docker client: docker:latest, docker:27, docker:27-cli, docker:stable, docker:git,
# docker:cli), as GitLab jobs run it against a docker:dind service.
# Debian bookworm minbase with git, openssh-client and ca-certificates, and the `docker` client of
# Debian's docker.io package (taken out of that package, without its daemon). Entrypoint as
# upstream's: arguments starting with `-` or naming no program are docker's; the command is sh.
# Differs: Docker 20.10 (Debian's) whatever the tag says; Debian, not Alpine; no buildx or compose
# plugins (`docker build` is the classic builder).
NAMES=(docker:latest docker:27 docker:27-cli docker:cli docker:stable docker:git docker:27-git)
INPUTS=("$(apt-cache policy docker.io 2>/dev/null | sed -n 's/ *Candidate: //p')")
CONFIG=(--config.entrypoint docker-entrypoint.sh --config.cmd sh
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  --config.env DOCKER_TLS_CERTDIR=/certs)
# The docker.io package's files, unpacked into $1 (not installed: only some binaries are wanted).
docker_package_into() {
  local dir="$1" deb
  deb="$(dirname "$dir")/deb"
  mkdir -p "$deb" && (cd "$deb" && apt-get download -q docker.io >&2)
  dpkg-deb -x "$deb"/docker.io_*.deb "$dir"
  rm -rf "$deb"
}
build_rootfs() {
  local root="$1" pkg
  pkg="$(dirname "$root")/pkg"
  debootstrap_into "$root" "ca-certificates,git,openssh-client"
  docker_package_into "$pkg"
  install -m 0755 "$pkg/usr/bin/docker" "$root/usr/local/bin/docker"
  rm -rf "$pkg"
  mkdir -p "$root/certs" && chmod 1777 "$root/certs"
  cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'SCRIPT'
#!/bin/sh
# As upstream's: `-flags` or a docker subcommand run docker; anything else runs as given.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then set -- docker "$@"; fi
if [ "$1" != docker ] && ! command -v "$1" >/dev/null 2>&1 && docker help "$1" >/dev/null 2>&1; then
  set -- docker "$@"
fi
# No DOCKER_HOST: the `docker` service's TLS port when its client certificates are here, else
# its plain port (GitLab's services are reachable at the alias `docker`).
if [ -z "${DOCKER_HOST:-}" ]; then
  if [ -n "${DOCKER_TLS_CERTDIR:-}" ] && [ -s "$DOCKER_TLS_CERTDIR/client/ca.pem" ]; then
    export DOCKER_HOST=tcp://docker:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$DOCKER_TLS_CERTDIR/client"
  else
    export DOCKER_HOST=tcp://docker:2375
  fi
fi
exec "$@"
SCRIPT
  chmod 0755 "$root/usr/local/bin/docker-entrypoint.sh"
}
