#!/usr/bin/env bash
# Build a local Debian 12 base image with Python (localhost/bookworm-python:latest) for podman,
# for machines that reach Debian's mirror but no container registry. Idempotent.
# Needs root; installs podman, buildah, runc and debootstrap with apt when missing.
set -euo pipefail

image="${1:-localhost/bookworm-python:latest}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [[ "$(id -u)" != 0 ]]; then
  echo "build-base-image: needs root (debootstrap, podman); run: sudo bash $0" >&2
  exit 1
fi
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "build-base-image: installing podman, buildah, runc and debootstrap with apt-get" >&2
  # package scripts must not start services here
  [[ -x /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman buildah runc debootstrap >&2
fi
if [[ ! -f /etc/containers/containers.conf ]]; then
  # sandboxes with hard rlimits and cgroup v1 need lowered ulimits and runc
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n' \
    > /etc/containers/containers.conf
fi
if podman image exists "$image"; then
  echo "build-base-image: $image already exists" >&2
  exit 0
fi
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
echo "build-base-image: debootstrap bookworm with python3 into $rootfs" >&2
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3 bookworm "$rootfs" "$mirror" >&2
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import - "$image" >&2
echo "build-base-image: built $image" >&2
