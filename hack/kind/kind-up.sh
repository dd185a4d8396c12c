#!/usr/bin/env bash
# `make kind-up`: a kind cluster with LocalStack in it, the operator image built and loaded,
# and the chart installed with hack/kind/values-kind.yaml. Idempotent: re-running rebuilds the
# image and upgrades the release. Needs docker, kind, kubectl and helm on PATH.
set -euo pipefail
# shellcheck source=hack/kind/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require docker kind kubectl helm

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  step "kind cluster $cluster exists"
else
  step "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --config "$repo/kind-config.yaml" --wait 120s
fi

step "LocalStack"
if [[ -n "$localstack_image" ]]; then
  sed "s#image: localstack/localstack:.*#image: ${localstack_image}#" "$repo/hack/kind/localstack.yaml" \
    | kubectl --context "$context" apply -f -
else
  kubectl --context "$context" apply -f "$repo/hack/kind/localstack.yaml"
fi

step "building $image"
revision="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
docker build --tag "$image" --build-arg "REVISION=${revision}" "$repo"
kind load docker-image "$image" --name "$cluster"

kubectl --context "$context" -n localstack rollout status deployment/localstack --timeout=300s

step "installing the chart (release $release in $operator_namespace)"
helm upgrade --install "$release" "$repo/charts/incident-commander" \
  --kube-context "$context" \
  --namespace "$operator_namespace" --create-namespace \
  --values "$repo/hack/kind/values-kind.yaml" \
  --set "image.repository=${image%:*}" --set "image.tag=${image##*:}" \
  --wait --timeout 5m
kubectl --context "$context" wait --for=condition=Established --timeout=60s \
  crd/awsconnections.incidentcommander.io crd/budgetpolicies.incidentcommander.io \
  crd/incidentpolicies.incidentcommander.io

step "ready: kubectl --context $context get incidentcommander -A"
