#!/usr/bin/env bash
# Create (or bring up to date) the local Kubernetes cluster for flask-celery:
# a kind cluster with a local image registry, KEDA, and optionally
# kube-prometheus-stack. Safe to run again: every step checks before it acts.
#
# Usage: k8s-dev/bootstrap.sh [--with-monitoring] [--down] [--help]
#
# The steps follow kubernetes-sigs/kind's kind-with-registry.sh, with the cluster
# config in k8s-dev/kind-cluster.yaml. Settings (environment, with defaults):
#   CLUSTER_NAME=flask-celery       kind cluster; kubectl context kind-$CLUSTER_NAME
#   REGISTRY_NAME=kind-registry     registry container
#   REGISTRY_PORT=5001              registry on 127.0.0.1 of the host
#   REGISTRY_IMAGE=registry:3
#   KEDA_CHART_VERSION=2.16.1       kedacore/keda (the chart needs KEDA >= 2.12)
#   KPS_CHART_VERSION=89.2.2        prometheus-community/kube-prometheus-stack
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
CLUSTER_NAME="${CLUSTER_NAME:-flask-celery}"
CONTEXT="kind-${CLUSTER_NAME}"
REGISTRY_NAME="${REGISTRY_NAME:-kind-registry}"
REGISTRY_PORT="${REGISTRY_PORT:-5001}"
REGISTRY_IMAGE="${REGISTRY_IMAGE:-registry:3}"
KEDA_CHART_VERSION="${KEDA_CHART_VERSION:-2.16.1}"
KPS_CHART_VERSION="${KPS_CHART_VERSION:-89.2.2}"
# The node image in kind-cluster.yaml is built for this kind release.
KIND_MIN_VERSION="0.29.0"

WITH_MONITORING=0
DOWN=0

# The header comment above, without its '#'.
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

say() { printf '==> %s\n' "$*"; }
die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
  case "$arg" in
    --with-monitoring) WITH_MONITORING=1 ;;
    --down) DOWN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
  esac
done

# helm from PATH, else the one `make helm` puts in .tools/.
HELM="${HELM:-}"
if [[ -z "$HELM" ]]; then
  if command -v helm >/dev/null 2>&1; then
    HELM=helm
  elif [[ -x "$ROOT/.tools/helm-4.3.1/helm" ]]; then
    HELM="$ROOT/.tools/helm-4.3.1/helm"
  fi
fi

# 0. Check the tools, and say exactly what is missing and where to get it.
check_tools() {
  local missing=()
  command -v docker >/dev/null 2>&1 \
    || missing+=("docker: a Docker engine and CLI, https://docs.docker.com/engine/install/")
  command -v kind >/dev/null 2>&1 \
    || missing+=("kind >= v${KIND_MIN_VERSION}: https://kind.sigs.k8s.io/docs/user/quick-start/#installation")
  command -v kubectl >/dev/null 2>&1 \
    || missing+=("kubectl: https://kubernetes.io/docs/tasks/tools/")
  [[ -n "$HELM" ]] \
    || missing+=("helm: run \`make helm\` (installs .tools/helm-4.3.1/helm) or https://helm.sh/docs/intro/install/")
  if ((${#missing[@]})); then
    printf 'bootstrap: missing tools:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
  fi
  docker info >/dev/null 2>&1 \
    || die "the docker CLI is installed but no Docker engine answers (is the daemon running? \`docker info\` fails)"
  local kind_version
  kind_version="$(kind version | sed -n 's/^kind v\([0-9][0-9.]*\).*/\1/p')"
  if [[ -n "$kind_version" ]] \
    && [[ "$(printf '%s\n%s\n' "$KIND_MIN_VERSION" "$kind_version" | sort -V | head -n1)" != "$KIND_MIN_VERSION" ]]; then
    say "warning: kind v${kind_version} is older than v${KIND_MIN_VERSION}, the release the node image in kind-cluster.yaml is built for"
  fi
}

cluster_exists() {
  kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"
}

down() {
  if cluster_exists; then
    say "deleting kind cluster ${CLUSTER_NAME}"
    kind delete cluster --name "$CLUSTER_NAME"
  fi
  if docker inspect "$REGISTRY_NAME" >/dev/null 2>&1; then
    say "removing registry container ${REGISTRY_NAME}"
    docker rm -f "$REGISTRY_NAME" >/dev/null
  fi
}

check_tools
if ((DOWN)); then
  down
  exit 0
fi

# 1. The local registry container, on 127.0.0.1 only, restarted with Docker.
if [[ "$(docker inspect -f '{{.State.Running}}' "$REGISTRY_NAME" 2>/dev/null || true)" == "true" ]]; then
  say "1. registry ${REGISTRY_NAME} is running on localhost:${REGISTRY_PORT}"
elif docker inspect "$REGISTRY_NAME" >/dev/null 2>&1; then
  say "1. starting the stopped registry ${REGISTRY_NAME}"
  docker start "$REGISTRY_NAME" >/dev/null
else
  say "1. creating registry ${REGISTRY_NAME} on localhost:${REGISTRY_PORT}"
  docker run -d --restart=always -p "127.0.0.1:${REGISTRY_PORT}:5000" --network bridge \
    --name "$REGISTRY_NAME" "$REGISTRY_IMAGE" >/dev/null
fi

# 2. The kind cluster, with containerd reading /etc/containerd/certs.d (kind-cluster.yaml).
if cluster_exists; then
  say "2. kind cluster ${CLUSTER_NAME} exists"
else
  say "2. creating kind cluster ${CLUSTER_NAME}"
  kind create cluster --name "$CLUSTER_NAME" --config "$HERE/kind-cluster.yaml"
fi

# 3. On every node, alias localhost:$REGISTRY_PORT to the registry container.
# Inside a node, localhost is the node itself, so the name the host pushes to
# would not reach the registry; hosts.toml sends it to the container by name.
registry_dir="/etc/containerd/certs.d/localhost:${REGISTRY_PORT}"
for node in $(kind get nodes --name "$CLUSTER_NAME"); do
  say "3. registry alias on node ${node}"
  docker exec "$node" mkdir -p "$registry_dir"
  printf '[host."http://%s:5000"]\n' "$REGISTRY_NAME" \
    | docker exec -i "$node" cp /dev/stdin "${registry_dir}/hosts.toml"
done

# 4. Put the registry on the kind network, so the nodes can reach it by name.
if [[ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REGISTRY_NAME")" == "null" ]]; then
  say "4. connecting ${REGISTRY_NAME} to the kind network"
  docker network connect kind "$REGISTRY_NAME"
else
  say "4. ${REGISTRY_NAME} is on the kind network"
fi

# 5. Document the registry for tools (KEP-1755); Tilt reads this ConfigMap and
# pushes the images it builds to localhost:$REGISTRY_PORT.
say "5. local-registry-hosting ConfigMap"
kubectl --context "$CONTEXT" apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${REGISTRY_PORT}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
EOF

# 6. KEDA (the chart's ScaledObjects need its CRDs), pinned; optionally monitoring.
say "6. KEDA ${KEDA_CHART_VERSION} in namespace keda"
"$HELM" repo add kedacore https://kedacore.github.io/charts --force-update >/dev/null
"$HELM" repo update kedacore >/dev/null
"$HELM" upgrade --install keda kedacore/keda --version "$KEDA_CHART_VERSION" \
  --namespace keda --create-namespace --kube-context "$CONTEXT" --wait --timeout 10m
if ((WITH_MONITORING)); then
  say "6. kube-prometheus-stack ${KPS_CHART_VERSION} in namespace monitoring"
  "$HELM" repo add prometheus-community https://prometheus-community.github.io/helm-charts \
    --force-update >/dev/null
  "$HELM" repo update prometheus-community >/dev/null
  "$HELM" upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
    --version "$KPS_CHART_VERSION" --namespace monitoring --create-namespace \
    --kube-context "$CONTEXT" --wait --timeout 15m
fi

# 7. Next steps.
cat <<EOF

==> 7. Cluster ${CLUSTER_NAME} is ready (context ${CONTEXT}, registry localhost:${REGISTRY_PORT}).

Develop with Tilt (builds the image, deploys the chart with k8s-dev/values-dev.yaml,
syncs service/ into the running pods):
  kubectl config use-context ${CONTEXT}
  tilt up

Or without Tilt:
  docker build -t localhost:${REGISTRY_PORT}/flask-celery:dev ${ROOT}
  docker push localhost:${REGISTRY_PORT}/flask-celery:dev
  ${HELM} upgrade --install dev ${ROOT}/charts/flask-celery -f ${HERE}/values-dev.yaml \\
    --kube-context ${CONTEXT} --wait
  kubectl --context ${CONTEXT} port-forward svc/dev-flask-celery-web 8000:8000

End-to-end tests against this cluster (a fresh namespace each run):
  FLASK_CELERY_E2E_CONTEXT=${CONTEXT} \\
  FLASK_CELERY_E2E_IMAGE=localhost:${REGISTRY_PORT}/flask-celery:dev \\
    .venv/bin/python -m pytest tests/e2e -m e2e

Remove everything: ${BASH_SOURCE[0]} --down
EOF
