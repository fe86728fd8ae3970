# registry.k8s.io/pause:3.10 (every pod's sandbox; containerd's sandbox_image).
# Built from the same source as upstream's: build/pause/linux/pause.c of the k8s.io/kubernetes
# module the control plane is built from (read from the Go module proxy), compiled here with
# Debian's gcc, statically. Differs: gcc and glibc from Debian instead of upstream's cross
# toolchain; no Windows variant; the version string says so.
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
pause_src() {
  local dir
  dir=$(GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  echo "$dir/build/pause/linux/pause.c"
}
NAMES=(registry.k8s.io/pause:3.10 registry.k8s.io/pause:3.9 registry.k8s.io/pause:3.6)
INPUTS=("$K8S_VERSION")
CONFIG=(--config.entrypoint /pause --config.user 65535:65535)
build_rootfs() {
  local src
  src=$(pause_src)
  [ -f "$src" ] || die "pause.c not found in k8s.io/kubernetes@$K8S_VERSION ($src)"
  gcc -Os -Wall -Werror -static -DVERSION="\"$K8S_VERSION-conveyor\"" -o "$1/pause" "$src"
  strip "$1/pause"
}
