#!/usr/bin/env bash
# Installs with apt-get (as root) what the real nodes, the local registry and the image builds
# need, when a tool is missing: containerd, runc, the CNI plugins, iptables, conntrack, socat,
# Debian's docker-registry, umoci, skopeo, mmdebstrap, busybox-static, gcc for the pause
# image, buildah for the operator's own image (hack/operator-image.sh), and chromium and
# chromium-driver for the dashboard's browser test (tests/e2e/test_dashboard.py). Does
# nothing when everything is there.
set -euo pipefail

# tool (a path or a command) -> the Debian package that provides it
declare -A pkgs=(
  [containerd]=containerd
  [ctr]=containerd
  [runc]=runc
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [iptables]=iptables
  [conntrack]=conntrack
  [socat]=socat
  [docker-registry]=docker-registry
  [umoci]=umoci
  [skopeo]=skopeo
  [mmdebstrap]=mmdebstrap
  [pkg:busybox-static]=busybox-static
  [nsenter]=util-linux
  [ip]=iproute2
  [sysctl]=procps
  [gcc]=gcc
  [/usr/lib/x86_64-linux-gnu/libc.a]=libc6-dev
  [git]=git
  [buildah]=buildah
  [chromium]=chromium
  [chromedriver]=chromium-driver
)
missing=()
for tool in "${!pkgs[@]}"; do
  if [[ "$tool" == pkg:* ]]; then
    # Debian's `busybox` package also provides /bin/busybox, dynamically linked: ask dpkg.
    dpkg-query -W -f='${Status}' "${tool#pkg:}" 2>/dev/null | grep -q 'install ok installed' && continue
  elif [[ "$tool" == /* ]]; then [ -e "$tool" ] && continue
  else PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 && continue; fi
  missing+=("${pkgs[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" != 0 ]; then
  echo "node-deps: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
  exit 1
fi
echo "node-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: docker-registry and containerd recommend nothing the nodes use.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
