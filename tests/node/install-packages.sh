#!/usr/bin/env bash
# Installs the Debian packages the real node and the image build need, once: containerd, runc
# and the CNI plugins (the node), buildah and debootstrap (the image), dnsmasq (cluster DNS),
# iptables and conntrack (kube-proxy), ipset (kube-router's NetworkPolicy controller), iproute2
# and util-linux (network namespaces, nsenter).
# Idempotent: does nothing when every package is already installed. Package scripts would start
# containerd as a system service: a temporary policy-rc.d forbids that (the tests start their
# own containerd inside a network namespace, and CI has no init system).
set -euo pipefail

packages=(containerd runc containernetworking-plugins buildah debootstrap dnsmasq-base
          iptables conntrack ipset iproute2 util-linux ca-certificates)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$package")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-packages.sh: root is needed to install ${missing[*]}" >&2
  exit 1
fi

added_policy=false
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  added_policy=true
fi
cleanup() { if [[ $added_policy == true ]]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

echo "installing Debian packages: ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
