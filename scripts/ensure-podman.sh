#!/usr/bin/env bash
# Make sure podman can build and run the image here; prints podman's path on the last line.
# Order: podman, buildah, runc and debootstrap on PATH; else install Debian's packages when we
# are root with apt-get; else tell the user the exact command and fail (the image tests then
# skip, naming the same command). Writes /etc/containers/containers.conf only when it is
# missing and this machine needs it (see below). Starts no service.
set -euo pipefail

tools=(podman buildah runc debootstrap)
missing() { for t in "${tools[@]}"; do command -v "$t" >/dev/null || echo "$t"; done; }

if [[ -n "$(missing)" ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "podman: not found ($(missing | xargs)); installing podman, buildah, runc and debootstrap with apt-get" >&2
    # Nothing to keep from starting: podman has no daemon (its API socket units stay idle).
    export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${tools[@]}" >&2
  else
    cat >&2 <<'MSG'
podman (with buildah, runc and debootstrap) is not installed and this script cannot install it
(needs root and apt-get). The image tests skip until it is. Install them, then run the command
again:
    sudo bash scripts/ensure-podman.sh          # Debian / Ubuntu: apt-get install, as root
or install podman, buildah, runc and debootstrap with the system's package manager.
MSG
    exit 1
  fi
fi

# Podman asks the kernel for nofile=1048576 in every container, which fails where even root
# cannot raise its hard limits (sandboxes); crun refuses cgroup v1/hybrid hosts, runc works there.
# Only then, and only when the machine has no containers.conf of its own, write one.
conf=/etc/containers/containers.conf
if [[ ! -e "$conf" ]] && [[ "$(id -u)" == 0 ]]; then
  cannot_raise=""; (ulimit -Hn 1048576) 2>/dev/null || cannot_raise=yes
  cgroup_v1=""; [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" == cgroup2fs ]] || cgroup_v1=yes
  if [[ -n "$cannot_raise$cgroup_v1" ]]; then
    echo "podman: writing $conf (lowered container ulimits: ${cannot_raise:-no}; runc for cgroup v1: ${cgroup_v1:-no})" >&2
    mkdir -p /etc/containers
    {
      echo "# written by flask-celery's scripts/ensure-podman.sh for this machine's limits"
      echo "[containers]"
      [[ -n "$cannot_raise" ]] && echo 'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]'
      echo "[engine]"
      [[ -n "$cgroup_v1" ]] && echo 'runtime = "runc"'
    } >"$conf"
  fi
fi

podman="$(command -v podman)"
echo "podman: using $podman ($("$podman" --version | awk '{print $3}'))" >&2
echo "$podman"
