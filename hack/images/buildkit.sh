# moby/buildkit:v0.19.0-rootless (the operator's --builder-image default) and :rootless.
# buildkitd and buildctl built from the Go module proxy by hack/build-buildkit.sh; Debian
# bookworm minbase with rootlesskit, uidmap (newuidmap/newgidmap with file capabilities), runc (the OCI worker's
# runtime), git and ca-certificates; user `user` (1000:1000) with subordinate ids 100000-165535,
# XDG_RUNTIME_DIR /run/user/1000, the image's user is 1000 as upstream's. buildctl-daemonless.sh
# is our own: it starts rootlesskit buildkitd for one buildctl command and stops it.
# Registries: buildkitd's config is written at start from the environment, since the local
# registry's address is known only then: CONVEYOR_REGISTRY_MIRROR=HOST:PORT mirrors docker.io, gcr.io,
# quay.io, ghcr.io and registry.k8s.io to that registry over plain HTTP (what the real nodes'
# containerd does), and CONVEYOR_INSECURE_REGISTRIES (space-separated HOST:PORT) are spoken to
# over plain HTTP. Differs: Debian's rootlesskit 1.1 and runc 1.1; no fuse-overlayfs (pods get
# no /dev/fuse: the kernel's overlayfs in the user namespace, else the native snapshotter).
BUILDKIT_VERSION="${BUILDKIT_VERSION:-v0.19.0}"
NAMES=("moby/buildkit:$BUILDKIT_VERSION-rootless" moby/buildkit:rootless)
INPUTS=("$BUILDKIT_VERSION")
CONFIG=(--config.user 1000:1000 --config.workingdir /home/user
  --config.env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
  --config.env USER=user --config.env HOME=/home/user --config.env XDG_RUNTIME_DIR=/run/user/1000
  --config.env BUILDKIT_HOST=unix:///run/user/1000/buildkit/buildkitd.sock
  --config.entrypoint rootlesskit --config.cmd buildkitd)
build_rootfs() {
  local root="$1" bin
  debootstrap_into "$root" "rootlesskit,uidmap,runc,git,ca-certificates,libcap2-bin"
  bin=$(bash "$HERE/../build-buildkit.sh")
  # newuidmap/newgidmap with file capabilities, not setuid root: Debian's keep euid 0 when
  # setuid, and root without CAP_SYS_ADMIN (any pod's) may not write a namespace's uid_map
  # ("newuidmap: write to uid_map failed: Operation not permitted"); as the user, with
  # CAP_SETUID (CAP_SETFCAP to map root), it may.
  chmod u-s "$root/usr/bin/newuidmap" "$root/usr/bin/newgidmap"
  chroot "$root" setcap cap_setuid,cap_setfcap+ep /usr/bin/newuidmap
  chroot "$root" setcap cap_setgid,cap_setfcap+ep /usr/bin/newgidmap
  install -m 0755 "$bin/buildkitd" "$bin/buildctl" "$root/usr/local/bin/"
  chroot "$root" groupadd -g 1000 user
  chroot "$root" useradd -u 1000 -g 1000 -m -d /home/user -s /bin/sh user
  echo user:100000:65536 >"$root/etc/subuid"
  echo user:100000:65536 >"$root/etc/subgid"
  mkdir -p "$root/run/user/1000" "$root/home/user/.local/share/buildkit" "$root/home/user/.config/buildkit"
  chmod 700 "$root/run/user/1000"
  chown -R 1000:1000 "$root/run/user/1000" "$root/home/user"
  cat >"$root/usr/local/bin/buildctl-daemonless.sh" <<'SCRIPT'
#!/bin/sh
# buildctl-daemonless.sh ARGS...: runs `buildctl ARGS...` against a buildkitd started for it alone
# (rootless through rootlesskit unless run as root), then stops that daemon. BUILDKITD_FLAGS are
# more buildkitd flags; CONVEYOR_REGISTRY_MIRROR and CONVEYOR_INSECURE_REGISTRIES configure registries.
set -eu
: "${XDG_RUNTIME_DIR:=/run/user/$(id -u)}"
export XDG_RUNTIME_DIR
dir=$(mktemp -d "$XDG_RUNTIME_DIR/buildkitd.XXXXXX")
addr="unix://$dir/buildkitd.sock"
config="$dir/buildkitd.toml"
: >"$config"
http_registry() { printf '[registry."%s"]\n  http = true\n  insecure = true\n\n' "$1" >>"$config"; }
if [ -n "${CONVEYOR_REGISTRY_MIRROR:-}" ]; then
  for public in docker.io gcr.io quay.io ghcr.io registry.k8s.io; do
    printf '[registry."%s"]\n  mirrors = ["%s"]\n\n' "$public" "$CONVEYOR_REGISTRY_MIRROR" >>"$config"
  done
  http_registry "$CONVEYOR_REGISTRY_MIRROR"
fi
for r in ${CONVEYOR_INSECURE_REGISTRIES:-}; do
  [ "$r" = "${CONVEYOR_REGISTRY_MIRROR:-}" ] || http_registry "$r"
done
daemon=buildkitd
[ "$(id -u)" = 0 ] || daemon="rootlesskit buildkitd"
# shellcheck disable=SC2086 # BUILDKITD_FLAGS is a list of flags
$daemon --config "$config" --addr "$addr" ${BUILDKITD_FLAGS:-} >"$dir/buildkitd.log" 2>&1 &
pid=$!
stop() { kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
i=0
until buildctl --addr "$addr" debug workers >/dev/null 2>&1; do
  i=$((i + 1))
  if ! kill -0 "$pid" 2>/dev/null || [ "$i" -gt 600 ]; then
    cat "$dir/buildkitd.log" >&2
    echo "buildctl-daemonless.sh: buildkitd did not start" >&2
    stop
    exit 1
  fi
  sleep 0.1
done
rc=0
buildctl --addr "$addr" "$@" || rc=$?
stop || true
exit "$rc"
SCRIPT
  chmod 0755 "$root/usr/local/bin/buildctl-daemonless.sh"
}
