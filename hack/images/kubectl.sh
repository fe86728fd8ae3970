# bitnami/kubectl:* and registry.k8s.io/kubectl:v1.37.2, and the seed's and examples' own deploy
# image operations/images/kubectl_deployer:latest (behind $CI_REGISTRY; the local registry
# stores it under that path whatever the registry host).
# Debian bookworm minbase with git, ca-certificates and gettext-base (envsubst), and the kubectl
# that hack/build-control-plane.sh builds with the local clusters' control plane, at
# /usr/local/bin/kubectl. Differs: kubectl v1.37.2 whatever the tag says; Debian, not Bitnami's
# image (runs as root, not 1001; no ENTRYPOINT kubectl: jobs give their own command anyway).
KUBECTL_HOST="${CONVEYOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor}/k8s-${K8S_VERSION:-v1.37.2}/bin/kubectl"
NAMES=(bitnami/kubectl:latest bitnami/kubectl:1.37 bitnami/kubectl:1.37.2 registry.k8s.io/kubectl:v1.37.2
  operations/images/kubectl_deployer:latest)
INPUTS=("$(sha256sum "$KUBECTL_HOST" 2>/dev/null | cut -c1-64)")
CONFIG=(--config.cmd kubectl --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
build_rootfs() {
  [ -x "$KUBECTL_HOST" ] || die "no kubectl at $KUBECTL_HOST: run make control-plane first"
  debootstrap_into "$1" "git,ca-certificates,gettext-base"
  install -m 0755 "$KUBECTL_HOST" "$1/usr/local/bin/kubectl"
}
