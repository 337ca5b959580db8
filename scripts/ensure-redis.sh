#!/usr/bin/env bash
# Make sure a redis-server binary is available; prints its path on the last line.
# Order: $REDIS_SERVER_BIN, PATH, /usr/sbin and /usr/bin; else install Debian's package when we
# are root with apt-get; else tell the user the exact command and fail.
set -euo pipefail

found() { echo "redis-server: using $1 ($("$1" --version | awk '{print $3}'))" >&2; echo "$1"; exit 0; }

for candidate in "${REDIS_SERVER_BIN:-}" "$(command -v redis-server || true)" /usr/sbin/redis-server /usr/bin/redis-server; do
  [[ -n "$candidate" && -x "$candidate" ]] && found "$candidate"
done

if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  echo "redis-server: not found; installing Debian's redis-server package with apt-get" >&2
  # The package's init script must not start a system-wide daemon: we run our own instances.
  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends redis-server >&2
  found "$(command -v redis-server || echo /usr/bin/redis-server)"
fi

cat >&2 <<'MSG'
redis-server is not installed and this script cannot install it (needs root and apt-get).
Install it, then run the command again:
    sudo apt-get install -y redis-server        # Debian / Ubuntu
    brew install redis                          # macOS
or point REDIS_SERVER_BIN at a redis-server binary.
MSG
exit 1
