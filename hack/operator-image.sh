#!/usr/bin/env bash
# Builds the operator's own image from the project's Dockerfile with buildah (Debian's; no Docker
# engine), on the local stand-in of its base python:3.11-slim (hack/images/python.sh), into an
# OCI layout cached outside the clone and keyed by what goes into it (Dockerfile, pyproject.toml,
# operator/, the base image); pip fetches the dependencies from PyPI over the host's
# network. With --push HOST:PORT it copies the image into that registry under the name
# deploy/20-operator.yaml runs (conveyor:<version>, i.e. docker.io/library/conveyor:<version>).
# Prints the OCI layout's path.
#
#   hack/operator-image.sh [--push HOST:PORT]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE_ROOT="${CONVEYOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor}"
CACHE="$CACHE_ROOT/operator-image"
push=""
if [ "${1:-}" = "--push" ]; then push="$2"; shift 2; fi

die() { echo "operator-image: $*" >&2; exit 1; }
for tool in buildah skopeo; do command -v "$tool" >/dev/null || die "$tool is missing (make node-deps installs it)"; done
[ "$(id -u)" = 0 ] || die "buildah builds as root here (no user namespaces set up for it)"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml")
[ -n "$version" ] || die "no version in pyproject.toml"
image="conveyor:$version"
grep -q "image: $image\$" "$ROOT/deploy/20-operator.yaml" \
  || die "deploy/20-operator.yaml does not run $image: keep the two in step"

# The base, from the image recipes' cache (built if missing).
bash "$ROOT/hack/images/build.sh" python >&2
base=""
for d in "$CACHE_ROOT"/images/python/*/; do [ -f "$d/done" ] && base="${d%/}"; done
[ -n "$base" ] || die "the python:3.11-slim stand-in did not build"
base_digest=$(skopeo inspect --raw "oci:$base/oci:image" | sha256sum | cut -c1-64)

# The build context: exactly what the Dockerfile copies, without caches.
ctx_files() {
  (cd "$ROOT" && { echo Dockerfile; echo pyproject.toml; echo README.md;
    find operator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*'; } | LC_ALL=C sort)
}
# README.md goes in (pyproject's readme: the package's long description) but not in the key: a
# documentation change would otherwise rebuild the image, minutes of pip each time.
key=$( { cat "$0"; echo "$base_digest"; ctx_files | grep -vx README.md | while read -r f; do echo "$f"; sha256sum <"$ROOT/$f"; done; } \
  | sha256sum | cut -c1-16)
out="$CACHE/$key"
if [ ! -f "$out/done" ]; then
  start=$(date +%s)
  echo "operator-image: building $image ($key) ..." >&2
  rm -rf "$out" && mkdir -p "$out"
  work=$(mktemp -d "$CACHE/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/ctx"
  ctx_files | (cd "$ROOT" && xargs cp --parents -t "$work/ctx")
  # A store of its own (vfs: plain directories, nothing mounted once done), removed afterwards.
  B=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
  skopeo copy --quiet "oci:$base/oci:image" \
    "containers-storage:[vfs@$work/storage+$work/run]docker.io/library/python:3.11-slim" >&2
  # chroot isolation with the host's network: pip and apt-get reach PyPI and Debian's archive
  # the way the host does, and pip trusts what the host's pip trusts (a TLS-intercepting proxy's
  # CA, here), given as a build secret so it stays out of the image.
  cert="${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}"
  [ -s "$cert" ] || cert=/etc/ssl/certs/ca-certificates.crt
  secret=()
  [ -s "$cert" ] && secret=(--secret "id=pip-cert,src=$cert")
  "${B[@]}" bud --isolation=chroot --network=host --pull=never --format=oci "${secret[@]}" \
    -t "localhost/$image" -f "$work/ctx/Dockerfile" "$work/ctx" >&2
  "${B[@]}" push --quiet "localhost/$image" "oci:$out/oci:image" >&2
  "${B[@]}" rmi --all --force >/dev/null 2>&1 || true
  echo "$image" >"$out/name"
  touch "$out/done"
  echo "operator-image: built $image in $(( $(date +%s) - start ))s" >&2
  # Older builds are of no use any more.
  find "$CACHE" -mindepth 1 -maxdepth 1 ! -name "$key" ! -name 'build.*' -exec rm -rf {} +
fi
if [ -n "$push" ]; then
  local_digest=$(skopeo inspect --raw "oci:$out/oci:image" | sha256sum | cut -d' ' -f1)
  dest="$push/library/$image"
  remote=$(skopeo inspect --raw --tls-verify=false "docker://$dest" 2>/dev/null | sha256sum | cut -d' ' -f1 || true)
  if [ "$remote" != "$local_digest" ]; then
    skopeo copy --quiet --dest-tls-verify=false --preserve-digests "oci:$out/oci:image" "docker://$dest" >&2
  fi
fi
echo "$out/oci"
