# docker:dind (and docker:27-dind, docker:stable-dind, docker:dind-rootless names it too — it
# runs as root): the Docker daemon as a GitLab service, privileged.
# Debian bookworm minbase with Debian's docker.io (dockerd, containerd, runc, tini, docker-proxy,
# the docker client), iptables, openssl, git, ca-certificates. Entrypoint dockerd-entrypoint.sh,
# our own, as upstream's: cgroup v2 nesting set up, then dockerd on unix:///var/run/docker.sock and
# tcp://0.0.0.0:2375 without TLS when DOCKER_TLS_CERTDIR is empty, else on 2376 with TLS and
# certificates it makes in $DOCKER_TLS_CERTDIR (ca, server, client; the client's for the job).
# Arguments starting with `-` are dockerd's. CONVEYOR_REGISTRY_MIRROR=HOST:PORT becomes a plain-HTTP
# registry mirror (dockerd mirrors Docker Hub only) and CONVEYOR_INSECURE_REGISTRIES (space-separated)
# insecure registries. Differs: Docker 20.10 (Debian's) whatever the tag says; no rootless mode.
NAMES=(docker:dind docker:27-dind docker:stable-dind docker:dind-rootless docker:27-dind-rootless)
INPUTS=("$(apt-cache policy docker.io 2>/dev/null | sed -n 's/ *Candidate: //p')")
CONFIG=(--config.entrypoint dockerd-entrypoint.sh
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  --config.env DOCKER_TLS_CERTDIR=/certs --config.volume /var/lib/docker
  --config.exposedports 2375/tcp --config.exposedports 2376/tcp)
build_rootfs() {
  local root="$1"
  debootstrap_into "$root" "docker.io,iptables,openssl,git,ca-certificates,procps"
  mkdir -p "$root/certs" && chmod 1777 "$root/certs"
  cat >"$root/usr/local/bin/dockerd-entrypoint.sh" <<'SCRIPT'
#!/bin/sh
# dockerd as upstream's docker:dind starts it (see hack/images/docker-dind.sh).
set -eu
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then set -- dockerd "$@"; fi
if [ "$1" != dockerd ]; then exec "$@"; fi
shift
# dockerd needs what only a privileged container has: CAP_SYS_ADMIN (bit 21) among others.
capeff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
if [ $(( 0x$capeff & (1 << 21) )) -eq 0 ]; then
  echo "dockerd-entrypoint.sh: this container is not privileged: dockerd cannot run here" >&2
  exit 1
fi
# cgroup v2: move this container's processes out of its root cgroup so dockerd may enable the
# controllers for its own containers there (as upstream's dind script does).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
  sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers \
    >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
fi
certs="${DOCKER_TLS_CERTDIR:-}"
if [ -n "$certs" ]; then
  mkdir -p "$certs/ca" "$certs/server" "$certs/client"
  if [ ! -s "$certs/server/cert.pem" ]; then
    openssl genrsa -out "$certs/ca/key.pem" 4096 2>/dev/null
    openssl req -new -x509 -days 825 -sha256 -subj /CN=docker:dind-CA -key "$certs/ca/key.pem" \
      -out "$certs/ca/cert.pem"
    for side in server client; do
      openssl genrsa -out "$certs/$side/key.pem" 4096 2>/dev/null
      openssl req -new -sha256 -subj "/CN=docker:dind $side" -key "$certs/$side/key.pem" \
        -out "$certs/$side/csr.pem"
      if [ "$side" = server ]; then
        printf 'subjectAltName = DNS:docker, DNS:localhost, DNS:%s, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n' \
          "$(hostname)" >"$certs/$side/openssl.cnf"
      else
        printf 'extendedKeyUsage = clientAuth\n' >"$certs/$side/openssl.cnf"
      fi
      openssl x509 -req -in "$certs/$side/csr.pem" -CA "$certs/ca/cert.pem" -CAkey "$certs/ca/key.pem" \
        -CAcreateserial -out "$certs/$side/cert.pem" -days 825 -extfile "$certs/$side/openssl.cnf" 2>/dev/null
      cp "$certs/ca/cert.pem" "$certs/$side/ca.pem"
    done
    chmod 0644 "$certs/client/key.pem"
  fi
  set -- --host=tcp://0.0.0.0:2376 --tlsverify --tlscacert "$certs/server/ca.pem" \
    --tlscert "$certs/server/cert.pem" --tlskey "$certs/server/key.pem" "$@"
else
  set -- --host=tcp://0.0.0.0:2375 "$@"
fi
if [ -n "${CONVEYOR_REGISTRY_MIRROR:-}" ]; then
  set -- --registry-mirror "http://$CONVEYOR_REGISTRY_MIRROR" --insecure-registry "$CONVEYOR_REGISTRY_MIRROR" "$@"
fi
for r in ${CONVEYOR_INSECURE_REGISTRIES:-}; do set -- --insecure-registry "$r" "$@"; done
exec dockerd --host=unix:///var/run/docker.sock "$@"
SCRIPT
  chmod 0755 "$root/usr/local/bin/dockerd-entrypoint.sh"
}
