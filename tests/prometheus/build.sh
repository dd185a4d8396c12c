#!/usr/bin/env bash
# Builds prometheus-operator from the pinned Go module beside this script (its own cmd/operator,
# named by the `tool` directive of go.mod) and copies the CRDs of the same release out of the
# module. Both land in a cache outside the work tree, keyed by the inputs' hash, like
# tests/controlplane/build.sh. Prints the directory holding `prometheus-operator` and `crds/`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${IC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/incident-commander}"
module="github.com/prometheus-operator/prometheus-operator"

key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)"
out="$cache_root/prometheus-operator/$key"

if [[ -x "$out/prometheus-operator" && -f "$out/crds/.complete" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out/crds"
started=$(date +%s)
echo "building prometheus-operator into $out (one time; a few minutes)" >&2
(
  cd "$here"
  export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=readonly"
  version="$(go list -m -f '{{.Version}}' "$module")"
  nice -n 10 go build -trimpath \
    -ldflags "-X github.com/prometheus/common/version.Version=${version#v}" \
    -o "$out/prometheus-operator.tmp" "$module/cmd/operator"
  mv "$out/prometheus-operator.tmp" "$out/prometheus-operator"
  # The CRDs of the same release (the ones `kubectl apply --server-side` installs upstream).
  src="$(go list -m -f '{{.Dir}}' "$module")/example/prometheus-operator-crd"
  cp "$src"/*.yaml "$out/crds/"
  chmod -R u+w "$out/crds"
  touch "$out/crds/.complete"
) >&2
echo "prometheus-operator built in $(( $(date +%s) - started ))s" >&2
echo "$out"
