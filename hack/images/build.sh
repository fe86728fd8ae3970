#!/usr/bin/env bash
# Builds the images jobs use from Debian's packages and the toolchains on this machine, one
# recipe per image (hack/images/*.sh), into OCI layouts cached outside the clone; with --push
# REGISTRY it copies each under its public names into that registry (containerd mirrors the
# public registries to it). Nothing is downloaded but Debian packages.
#
#   hack/images/build.sh [--push HOST:PORT] [RECIPE...]     (default: every recipe)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${CONVEYOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor}/images"
push=""
if [ "${1:-}" = "--push" ]; then push="$2"; shift 2; fi
recipes=("$@")
if [ ${#recipes[@]} -eq 0 ]; then
  for f in "$HERE"/*.sh; do [ "$(basename "$f")" = build.sh ] || recipes+=("$(basename "$f" .sh)"); done
fi

die() { echo "images: $*" >&2; exit 1; }
for tool in umoci skopeo; do command -v "$tool" >/dev/null || die "$tool is missing (make node-deps installs it)"; done

# The Debian archive the host's apt uses: recipes that bootstrap Debian read it from here, so no
# host is named in the recipes.
debian_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -s "$f" ] && echo "$f"
  done
  return 0
}

# mmdebstrap into $1 with the packages in $2 (comma-separated), as `minbase`. The host's apt
# options (e.g. an archive snapshot's validity) apply too.
debootstrap_into() {
  local dir="$1" include="$2" args=() f
  command -v mmdebstrap >/dev/null || die "mmdebstrap is missing (make node-deps installs it)"
  for f in /etc/apt/apt.conf.d/*; do args+=(--aptopt="$f"); done
  mapfile -t srcs < <(debian_sources)
  [ ${#srcs[@]} -gt 0 ] || die "the host has no apt sources to bootstrap Debian from"
  mmdebstrap --quiet --variant=minbase --mode=root --format=directory "${args[@]}" \
    ${include:+--include="$include"} \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$dir" "${srcs[@]}" >&2
  # apt's lists and caches are not part of an image (as in Docker's debian:*-slim).
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/var/log/*
}

# Busybox from Debian's busybox-static with one symlink per applet, into $1.
busybox_into() {
  local dir="$1" applet
  [ -x /bin/busybox ] || die "busybox-static is missing (make node-deps installs it)"
  mkdir -p "$dir"/bin "$dir"/sbin "$dir"/usr/bin "$dir"/usr/sbin "$dir"/etc "$dir"/tmp "$dir"/root
  chmod 1777 "$dir"/tmp
  cp /bin/busybox "$dir"/bin/busybox
  for applet in $(/bin/busybox --list-full); do
    [ -e "$dir/$applet" ] || ln -s /bin/busybox "$dir/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir"/etc/passwd
  printf 'root:x:0:\nnobody:x:65534:\n' >"$dir"/etc/group
}

# Where a public name goes in the one local registry: without its registry host, and Docker
# Hub's one-word names under library/ (as Docker Hub stores them).
registry_path() {
  local name="$1" first="${1%%/*}"
  if [ "$first" != "$name" ] && { [[ "$first" == *.* ]] || [[ "$first" == *:* ]] || [ "$first" = localhost ]; }; then
    name="${name#*/}"
  elif [[ "$name" != */* ]]; then
    name="library/$name"
  fi
  [[ "${name##*/}" == *:* ]] || name="$name:latest"
  echo "$name"
}

build_one() {
  local recipe="$1" file="$HERE/$1.sh"
  [ -f "$file" ] || die "no recipe $file"
  # The recipe's functions and variables, in a subshell per recipe.
  (
    NAMES=() CONFIG=() INPUTS=()
    # shellcheck source=/dev/null
    . "$file"
    key=$( { cat "$file" "$HERE/build.sh"; for i in "${INPUTS[@]}"; do echo "$i"; done; } | sha256sum | cut -c1-16)
    out="$CACHE/$recipe/$key"
    if [ ! -f "$out/done" ]; then
      start=$(date +%s)
      echo "images: building $recipe ..." >&2
      rm -rf "$out" && mkdir -p "$out"
      rootfs="$out/rootfs"
      mkdir -p "$rootfs"
      build_rootfs "$rootfs"
      umoci init --layout "$out/oci"
      umoci new --image "$out/oci:image"
      # One layer holding the whole file system, owners and modes as built (we are root).
      umoci insert --image "$out/oci:image" --history.created_by "hack/images/$recipe.sh" "$rootfs" /
      umoci config --image "$out/oci:image" --author conveyor --os linux --architecture amd64 "${CONFIG[@]}"
      umoci gc --layout "$out/oci"
      rm -rf "$rootfs"
      printf '%s\n' "${NAMES[@]}" >"$out/names"
      touch "$out/done"
      echo "images: built $recipe in $(( $(date +%s) - start ))s" >&2
      # Older builds of this recipe are of no use any more.
      find "$CACHE/$recipe" -mindepth 1 -maxdepth 1 ! -name "$key" -exec rm -rf {} +
    fi
    if [ -n "$push" ]; then
      local_digest=$(skopeo inspect --raw "oci:$out/oci:image" | sha256sum | cut -d' ' -f1)
      while read -r name; do
        dest="$push/$(registry_path "$name")"
        remote=$(skopeo inspect --raw --tls-verify=false "docker://$dest" 2>/dev/null | sha256sum | cut -d' ' -f1 || true)
        [ "$remote" = "$local_digest" ] && continue
        skopeo copy --quiet --dest-tls-verify=false --preserve-digests "oci:$out/oci:image" "docker://$dest" >&2
      done <"$out/names"
    fi
  )
}

for r in "${recipes[@]}"; do build_one "$r"; done
