#!/usr/bin/env bash
# Make sure wrk (the HTTP load generator bench.enqueue prefers) is on PATH. Order: wrk on PATH;
# else Debian's package when we are root with apt-get; else say how, and carry on: bench.enqueue
# falls back to its Python load generator (which takes CPU from the server it loads, so its
# absolute figures are lower) and says which generator it used.
set -euo pipefail

if command -v wrk >/dev/null; then
  exit 0
fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  echo "wrk: not found; installing Debian's wrk package with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends wrk >&2
else
  echo "wrk: not found and not installable here (needs root and apt-get): bench.enqueue uses its Python load generator; 'sudo apt-get install wrk' to use wrk" >&2
fi
