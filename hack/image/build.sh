#!/usr/bin/env bash
# Builds the operator image from the project's Dockerfile without Docker: buildah (chroot
# isolation, host network for pip) on a Python base made by debootstrap from Debian's mirror,
# since no registry but the package registries is reachable here. Both the base and the image
# are cached outside the tree, keyed by their inputs; a second run with the same inputs builds
# nothing. Prints the path of the image as an OCI archive (import it into containerd with
# `ctr -n k8s.io images import --index-name NAME ARCHIVE`).
#
# Environment:
#   IMAGE       name:tag given to the image in buildah's storage and the archive (incident-commander:dev)
#   BASE_IMAGE  an image already in buildah's storage to build on instead of the debootstrap base
#   REVISION    the org.opencontainers.image.revision label (unknown)
#   IC_CACHE_DIR  cache root (~/.cache/incident-commander)
# With Docker instead: docker build -t incident-commander:dev . (the Dockerfile's default base).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache_root="${IC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/incident-commander}"
image="${IMAGE:-incident-commander:dev}"
revision="${REVISION:-unknown}"
suite="bookworm"
# python-is-python3: the Dockerfile runs `python`, as on the official images.
base_packages="python3,python3-venv,python-is-python3"

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "$tool missing: run tests/node/install-packages.sh" >&2; exit 1; }
done

# buildah keeps its images and layers in the cache too, not in /var/lib/containers.
store="$cache_root/image/storage"
runroot="/run/incident-commander-buildah"
b() { buildah --root "$store" --runroot "$runroot" --storage-driver overlay "$@"; }

sha() { sha256sum | cut -c1-16; }

# The Debian mirror apt already uses (deb822 or one-line sources), else Debian's default.
mirror() {
  local uri
  uri="$(sed -n 's/^URIs:[[:space:]]*\(http[^[:space:]]*debian\)[[:space:]]*$/\1/p' \
           /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
  if [[ -z $uri ]]; then
    uri="$(sed -n 's/^deb[[:space:]]\+\(http[^[:space:]]*debian\)[[:space:]]\+'"$suite"'[[:space:]].*/\1/p' \
             /etc/apt/sources.list 2>/dev/null | head -1)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# --- the base: Debian minbase with Python 3.11, made by debootstrap ------------------------------
make_base() {
  local key archive ref rootfs ctr mnt started
  key="$( (echo "base-v1 $suite $base_packages"; sed -n '/^make_base()/,/^}/p' "${BASH_SOURCE[0]}") | sha)"
  ref="localhost/incident-commander-base:$key"
  archive="$cache_root/image/base/$key/base.oci.tar"
  if [[ ! -s $archive ]]; then
    started=$(date +%s)
    echo "debootstrap $suite ($base_packages) from $(mirror) (one time, ~2 minutes)" >&2
    rootfs="$(mktemp -d /tmp/ic-base-XXXXXX)"
    trap 'rm -rf "$rootfs"' RETURN
    nice -n 10 debootstrap --variant=minbase --include="$base_packages" "$suite" "$rootfs" "$(mirror)" >&2
    # What a container never needs: package caches and lists, docs, man pages, locales.
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
      "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/* "$rootfs"/tmp/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true
    ctr="$(b from scratch)"
    mnt="$(b mount "$ctr")"
    tar -C "$rootfs" -cf - . | tar -C "$mnt" -xpf -
    b umount "$ctr" >/dev/null
    b config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
      --cmd python3 "$ctr"
    b commit --quiet "$ctr" "$ref" >/dev/null
    b rm "$ctr" >/dev/null
    mkdir -p "$(dirname "$archive")"
    b push --quiet "$ref" "oci-archive:$archive.tmp:$ref" >&2
    mv "$archive.tmp" "$archive"
    echo "base image built in $(( $(date +%s) - started ))s" >&2
  elif ! b inspect --type image "$ref" >/dev/null 2>&1; then
    b pull --quiet "oci-archive:$archive" >/dev/null
    b tag "$(b images --quiet --filter reference="$ref" | head -1 || true)" "$ref" 2>/dev/null || true
  fi
  echo "$ref"
}

if [[ -n ${BASE_IMAGE:-} ]]; then
  base="$BASE_IMAGE"
else
  base="$(make_base)"
fi

# --- the image ------------------------------------------------------------------------------------
cd "$repo"
inputs_key="$(
  {
    echo "image-v1 $base $image $revision"
    cat Dockerfile requirements.lock pyproject.toml README.md
    find operator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | LC_ALL=C sort | xargs sha256sum
  } | sha
)"
archive="$cache_root/image/operator/$inputs_key/image.oci.tar"
if [[ -s $archive ]]; then
  echo "$archive"
  exit 0
fi

started=$(date +%s)
echo "building $image on $base with buildah" >&2
# pip in the build stage reaches the package index through this machine's settings: its CA
# bundle and pip configuration (index, certificate), passed as build secrets (the Dockerfile
# mounts them for its pip step only; nothing of them ends up in a layer).
secrets=()
pip_conf="$(mktemp /tmp/ic-pip-XXXXXX.conf)"
trap 'rm -f "$pip_conf"' EXIT
{
  echo "[global]"
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    secrets+=(--secret "id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt")
    echo "cert = /run/secrets/ca-bundle"
  fi
  index="$(python3 -m pip config get global.index-url 2>/dev/null || true)"
  [[ -n ${PIP_INDEX_URL:-} ]] && index="$PIP_INDEX_URL"
  [[ -n $index ]] && echo "index-url = $index"
} >"$pip_conf"
secrets+=(--secret "id=pip.conf,src=$pip_conf")

b bud --pull=never --isolation=chroot --network=host --layers=false \
  "${secrets[@]}" --build-arg BASE_IMAGE="$base" --build-arg REVISION="$revision" \
  -t "$image" -f Dockerfile . >&2
mkdir -p "$(dirname "$archive")"
b push --quiet "$image" "oci-archive:$archive.tmp:$image" >&2
mv "$archive.tmp" "$archive"
# Every change under operator/ makes a new archive (~100 MB): keep the newest three, and drop
# the images in buildah's storage that no tag names any more.
find "$cache_root/image/operator" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn \
  | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
b rmi --prune >/dev/null 2>&1 || true
echo "image built in $(( $(date +%s) - started ))s: $archive" >&2
echo "$archive"
