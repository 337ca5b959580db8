#!/usr/bin/env bash
# Install checkov into its own virtualenv, .venv-checkov/ (it pins packaging, networkx and
# more, so it never shares the project's venv). Idempotent: an installed checkov of the
# pinned version is kept.
# Usage: bash scripts/install-checkov.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CHECKOV_VENV:-$root/.venv-checkov}"
version="3.3.30"
py="${PYTHON:-python3}"

if [[ -x "$venv/bin/checkov" ]] && [[ "$("$venv/bin/checkov" --version 2>/dev/null)" == "$version" ]]; then
  echo "checkov $version already installed: $venv/bin/checkov"
  exit 0
fi
echo "installing checkov $version into $venv"
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
"$venv/bin/pip" install --disable-pip-version-check --quiet "checkov==$version"
echo "installed $venv/bin/checkov ($("$venv/bin/checkov" --version))"
