#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries (initdb, pg_ctl, postgres) are available; prints their
# directory on the last line. The tests start their own throwaway server from them, on a free
# port in a temporary directory; nothing here starts, stops or configures a system server.
# Order: $PG_BIN, the newest /usr/lib/postgresql/*/bin, PATH; else install Debian's package
# when we are root with apt-get; else tell the user the exact command and fail.
set -euo pipefail

usable() { [[ -n "$1" && -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" ]]; }
found() { echo "postgresql: using $1 ($("$1/postgres" --version))" >&2; echo "$1"; exit 0; }
newest() { printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -V | tail -n 1; }

on_path="$(command -v initdb || true)"
for candidate in "${PG_BIN:-}" "$(newest)" "${on_path%/initdb}"; do
  usable "$candidate" && found "$candidate"
done

if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  echo "postgresql: not found; installing Debian's postgresql package with apt-get" >&2
  # The package's maintainer scripts must not start a system-wide server (one may already run
  # on 5432): invoke-rc.d obeys policy-rc.d, and exit code 101 means "action forbidden".
  # An existing policy is put back afterwards, whatever it says.
  policy=/usr/sbin/policy-rc.d
  backup="$(mktemp)"
  had_policy=""
  if [[ -e "$policy" ]]; then cp -p "$policy" "$backup" && had_policy=1; fi
  trap 'if [[ -n "$had_policy" ]]; then cp -p "$backup" "$policy"; else rm -f "$policy"; fi; rm -f "$backup"' EXIT
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
  candidate="$(newest)"
  usable "$candidate" && found "$candidate"
fi

cat >&2 <<'MSG'
PostgreSQL's server binaries (initdb, pg_ctl) are not installed and this script cannot install
them (needs root and apt-get). Install them, then run the command again:
    sudo apt-get install -y postgresql          # Debian / Ubuntu
    brew install postgresql@16                  # macOS
or point PG_BIN at the directory that holds initdb and pg_ctl.
MSG
exit 1
