# Shared settings of the kind scripts (sourced, not run). Every name can be overridden from the
# environment, e.g. KIND_CLUSTER=ic2 make kind-up.
# shellcheck shell=bash

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cluster="${KIND_CLUSTER:-incident-commander}"
context="kind-${cluster}"
image="${IMAGE:-incident-commander:dev}"
release="${RELEASE:-incident-commander}"
operator_namespace="${OPERATOR_NAMESPACE:-incident-commander}"
demo_namespace="${DEMO_NAMESPACE:-demo}"
localstack_image="${LOCALSTACK_IMAGE:-}"

export repo cluster context image release operator_namespace demo_namespace localstack_image

require() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "$(basename "$0"): '$tool' is required (see README, 'Container image and kind')" >&2
      exit 1
    fi
  done
}

step() {
  printf '\n==> %s\n' "$*"
}
