#!/usr/bin/env bash
# `make kind-e2e` (after kind-up): applies examples/ pointed at LocalStack, waits for every
# object to become Ready, checks that the IncidentPolicy issued its API-key Secrets, and runs the
# chart's `helm test` hook. Exits non-zero, with the objects and the operator log, on failure.
set -euo pipefail
# shellcheck source=hack/kind/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require kubectl helm

k() { kubectl --context "$context" "$@"; }

diagnose() {
  echo "--- objects ---" >&2
  k get incidentcommander -n "$demo_namespace" -o yaml >&2 || true
  echo "--- operator log ---" >&2
  k logs -n "$operator_namespace" "deployment/${release}" --tail=100 >&2 || true
}
trap 'diagnose' ERR

step "applying examples/ into namespace $demo_namespace"
k create namespace "$demo_namespace" --dry-run=client -o yaml | k apply -f -
k kustomize --load-restrictor=LoadRestrictionsNone "$repo/hack/kind/examples" \
  | k apply -n "$demo_namespace" -f -

step "waiting for Ready"
k wait -n "$demo_namespace" --for=condition=Ready --timeout=180s awsconnection/emulator
k wait -n "$demo_namespace" --for=condition=Ready --timeout=180s budgetpolicy/platform-monthly
k wait -n "$demo_namespace" --for=condition=Ready --timeout=300s incidentpolicy/production

step "API-key Secrets"
for client in triage-agent dashboard platform-admin; do
  k get secret -n "$demo_namespace" "production-${client}-api-key" -o name
done

step "helm test"
helm test "$release" --kube-context "$context" --namespace "$operator_namespace" --timeout 2m

k get incidentcommander -A
echo "kind e2e passed"
