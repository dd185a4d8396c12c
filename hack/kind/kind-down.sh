#!/usr/bin/env bash
# `make kind-down`: deletes the kind cluster of `make kind-up`.
set -euo pipefail
# shellcheck source=hack/kind/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require kind
kind delete cluster --name "$cluster"
