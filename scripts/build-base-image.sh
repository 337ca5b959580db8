#!/usr/bin/env bash
# Build a local Debian 12 base image with Python (localhost/bookworm-python:latest) for podman,
# for machines that reach Debian's mirror but no container registry. Idempotent: an existing
# image is kept (remove it with `podman rmi` to rebuild). Needs root (debootstrap); podman,
# buildah, runc and debootstrap come from scripts/ensure-podman.sh, which installs them.
set -euo pipefail

image="${1:-localhost/bookworm-python:latest}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if command -v podman >/dev/null && podman image exists "$image"; then
  echo "build-base-image: using $image" >&2
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "build-base-image: $image not found and building it needs root (debootstrap); run: sudo bash $0" >&2
  exit 1
fi
bash "$(dirname "$0")/ensure-podman.sh" >/dev/null
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
echo "build-base-image: $image not found; debootstrap bookworm with python3 into $rootfs" >&2
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3 bookworm "$rootfs" "$mirror" >&2
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import - "$image" >&2
echo "build-base-image: built $image" >&2
