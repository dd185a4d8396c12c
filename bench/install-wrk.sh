#!/usr/bin/env bash
# wrk (Debian package, 4.1.0) for the API benchmarks: installed once, needs root and apt.
set -euo pipefail
if command -v wrk >/dev/null; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q wrk >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
wrk --version 2>&1 | head -1 || true
