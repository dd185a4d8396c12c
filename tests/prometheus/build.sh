#!/usr/bin/env bash
# Builds prometheus-operator and Prometheus from the pinned Go modules beside this script (their own
# cmd/operator in go.mod and cmd/prometheus in server/go.mod, named by `tool` directives; Prometheus
# at the version prometheus-operator depends on, module v0.305.0 = Prometheus 3.5.0; two modules
# because they need different k8s.io/client-go minors) and copies the CRDs of the same
# prometheus-operator release out of its module. Debian's prometheus cannot stand in: it is
# built without Kubernetes service discovery. Everything lands in a cache outside the work tree,
# keyed by the inputs' hash, like tests/controlplane/build.sh. Prints the directory holding
# `prometheus-operator`, `prometheus` and `crds/`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${IC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/incident-commander}"
operator_module="github.com/prometheus-operator/prometheus-operator"
prometheus_module="github.com/prometheus/prometheus"

key="$(cat "$here/go.mod" "$here/go.sum" "$here/server/go.mod" "$here/server/go.sum" "$here/build.sh" \
  | sha256sum | cut -c1-16)"
out="$cache_root/prometheus-operator/$key"

built() { [[ -x "$out/prometheus-operator" && -x "$out/prometheus" && -f "$out/crds/.complete" ]]; }
if built; then
  echo "$out"
  exit 0
fi

# `make test` builds the e2e and ecosystem tiers' dependencies in parallel, and both need this:
# the second caller waits for the first (the lock is released when this script exits), then finds
# the cache filled.
mkdir -p "$out/crds"
exec 9>"$out.lock"
flock 9
if built; then
  echo "$out"
  exit 0
fi
started=$(date +%s)
echo "building prometheus-operator and prometheus into $out (one time; several minutes)" >&2
(
  cd "$here"
  export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=readonly"
  version_of() { go list -m -f '{{.Version}}' "$1"; }
  operator_version="$(version_of "$operator_module")"
  nice -n 10 go build -trimpath \
    -ldflags "-X github.com/prometheus/common/version.Version=${operator_version#v}" \
    -o "$out/prometheus-operator.tmp" "$operator_module/cmd/operator"
  mv "$out/prometheus-operator.tmp" "$out/prometheus-operator"
  # The module's v0.<major><minor as 2 digits>.<patch> is Prometheus <major>.<minor>.<patch>:
  # v0.305.0 is 3.5.0.
  (
    cd server
    module_version="$(version_of "$prometheus_module")"
    IFS=. read -r _ series patch <<<"${module_version#v}"
    prometheus_version="${series:0:1}.$((10#${series:1})).${patch}"
    nice -n 10 go build -trimpath \
      -ldflags "-X github.com/prometheus/common/version.Version=${prometheus_version}" \
      -o "$out/prometheus.tmp" "$prometheus_module/cmd/prometheus"
  )
  mv "$out/prometheus.tmp" "$out/prometheus"
  # The CRDs of the same release (the ones `kubectl apply --server-side` installs upstream).
  src="$(go list -m -f '{{.Dir}}' "$operator_module")/example/prometheus-operator-crd"
  cp "$src"/*.yaml "$out/crds/"
  chmod -R u+w "$out/crds"
  touch "$out/crds/.complete"
) >&2
echo "built in $(( $(date +%s) - started ))s" >&2
echo "$out"
