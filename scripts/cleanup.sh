#!/usr/bin/env bash
# Removes what the intel-gpu-driver chart created, after (or instead of) `helm uninstall`:
#   1. the Helm release, if it is still there (its pre-delete hook unloads the driver first);
#   2. a Module left behind (kmm mode) and our NodeFeatureRule;
#   3. the node labels of ours (gpu-driver.intel.com/state, gpu-driver.intel.com/gpu);
#   4. the CustomResourceDefinitions the chart's dependencies installed (Helm never deletes CRDs):
#      cert-manager, node-feature-discovery, Intel device plugins. --keep-deps keeps them (use it when
#      those were installed separately or other software uses them);
#   5. the release namespace, when no other Helm release is left in it (--keep-namespace keeps it).
# KMM itself is not touched: it is installed separately (docs/chart.md says how to remove it).
# The driver, firmware and firmware path on the nodes are removed by the agent when its pod stops.
set -euo pipefail

release=intel-gpu
namespace=inteldeviceplugins
kmm_namespace=kmm-operator-system
module=kmm-i915-backport
timeout=10m
keep_deps=false
keep_namespace=false
dry_run=false

usage() {
  cat <<USAGE
usage: $0 [--release NAME] [--namespace NS] [--kmm-namespace NS] [--module NAME]
          [--timeout 10m] [--keep-deps] [--keep-namespace] [--dry-run]
defaults: --release $release --namespace $namespace --kmm-namespace $kmm_namespace --module $module
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    --release) release=${2:?}; shift 2 ;;
    --namespace|-n) namespace=${2:?}; shift 2 ;;
    --kmm-namespace) kmm_namespace=${2:?}; shift 2 ;;
    --module) module=${2:?}; shift 2 ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    --keep-deps) keep_deps=true; shift ;;
    --keep-namespace) keep_namespace=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "cleanup.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

for tool in kubectl helm; do
  command -v "$tool" >/dev/null || { echo "cleanup.sh: $tool is needed" >&2; exit 2; }
done

# Changes go through run: --dry-run prints them instead.
run() {
  if $dry_run; then
    echo "would run: $*"
  else
    echo "+ $*"
    "$@"
  fi
}

has_crd() { kubectl get crd "$1" >/dev/null 2>&1; }

# 1. The release: uninstalling runs the hook that unloads the driver on every node.
if helm status --namespace "$namespace" "$release" >/dev/null 2>&1; then
  if ! run helm uninstall --namespace "$namespace" "$release" --wait --timeout "$timeout"; then
    cat >&2 <<HINT
cleanup.sh: helm uninstall failed: the driver is probably still in use on a node.
  See who holds it:  kubectl logs -n $namespace -l app.kubernetes.io/instance=$release,app.kubernetes.io/component=agent
  Stop those workloads and run this script again. Escape hatch (leaves the driver loaded until the
  node reboots): helm uninstall --namespace $namespace $release --no-hooks
HINT
    exit 1
  fi
fi

# 2. Leftover custom resources of ours.
if has_crd modules.kmm.sigs.x-k8s.io; then
  run kubectl delete modules.kmm.sigs.x-k8s.io --namespace "$kmm_namespace" "$module" \
    --ignore-not-found --wait=true --timeout="$timeout"
fi
if has_crd nodefeaturerules.nfd.k8s-sigs.io; then
  run kubectl delete nodefeaturerules.nfd.k8s-sigs.io \
    --selector "app.kubernetes.io/instance=$release,app.kubernetes.io/name=intel-gpu-driver" --ignore-not-found
fi

# 3. Node labels of ours (a node without them is left as it is).
run kubectl label nodes --all gpu-driver.intel.com/state- gpu-driver.intel.com/gpu- --overwrite

# 4. CRDs of the dependencies.
if ! $keep_deps; then
  crds=$(kubectl get crd -o name | sed 's|^[^/]*/||' | grep -E '\.(cert-manager\.io|acme\.cert-manager\.io|nfd\.k8s-sigs\.io|deviceplugin\.intel\.com)$' || true)
  for crd in $crds; do
    run kubectl delete crd "$crd" --ignore-not-found
  done
fi

# 5. The namespace, if nothing else of Helm's lives there.
if ! $keep_namespace && kubectl get namespace "$namespace" >/dev/null 2>&1; then
  if [ -z "$(helm list --namespace "$namespace" --all --short)" ]; then
    run kubectl delete namespace "$namespace" --ignore-not-found
  else
    echo "cleanup.sh: namespace $namespace still has Helm releases: kept"
  fi
fi
echo "cleanup.sh: done"
