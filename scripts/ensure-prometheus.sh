#!/usr/bin/env bash
# Make sure Prometheus' binaries (promtool, prometheus) are available; prints their directory on
# the last line. The tests check and unit-test the alert rules and dashboard queries with
# promtool; nothing here starts, stops or configures a Prometheus server.
# Order: $PROMETHEUS_BIN, the directory of promtool on PATH, /usr/bin; else install Debian's
# package when we are root with apt-get; else tell the user the exact command and fail.
set -euo pipefail

usable() { [[ -n "$1" && -x "$1/promtool" && -x "$1/prometheus" ]]; }
found() { echo "prometheus: using $1 ($("$1/promtool" --version 2>&1 | head -n 1))" >&2; echo "$1"; exit 0; }

on_path="$(command -v promtool || true)"
for candidate in "${PROMETHEUS_BIN:-}" "${on_path%/promtool}" /usr/bin; do
  usable "$candidate" && found "$candidate"
done

if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  echo "prometheus: not found; installing Debian's prometheus package with apt-get" >&2
  # Its maintainer scripts would start a system-wide server on 9090: invoke-rc.d and
  # deb-systemd-invoke obey policy-rc.d, whose exit code 101 means "action forbidden".
  # Whatever policy was there before is put back.
  policy=/usr/sbin/policy-rc.d saved="$(mktemp)"
  cp -p "$policy" "$saved" 2>/dev/null || rm -f "$saved"
  trap 'if [[ -e "$saved" ]]; then mv "$saved" "$policy"; else rm -f "$policy"; fi' EXIT
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends prometheus >&2
  usable /usr/bin && found /usr/bin
fi

cat >&2 <<'MSG'
Prometheus' promtool is not installed and this script cannot install it (needs root and
apt-get). Install it, then run the command again:
    sudo apt-get install -y --no-install-recommends prometheus   # Debian / Ubuntu
    brew install prometheus                                       # macOS
or point PROMETHEUS_BIN at the directory that holds promtool and prometheus.
MSG
exit 1
