#!/usr/bin/env bash
# Put CoreDNS back in a kind cluster where swap-coredns.sh installed kdns:
#   1. scale the coredns Deployment back up (to 2, kubeadm's default, or $COREDNS_REPLICAS)
#      and wait until it is ready; the kube-dns Service then balances over both again;
#   2. delete kdns's Deployment, PodDisruptionBudget, RBAC (with the pods role of
#      deploy/kdns-pods-verified.yaml, if it was applied) and ServiceAccount. The ConfigMap
#      coredns and the Service kube-dns were never changed by the swap and stay as they are.
# Idempotent: objects already gone are skipped.
#
# Usage: deploy/kind/restore-coredns.sh [CLUSTER_NAME]   (default: kind; needs kubectl)
set -euo pipefail

CLUSTER="${1:-kind}"
REPLICAS="${COREDNS_REPLICAS:-2}"
CONTEXT="kind-${CLUSTER}"
KUBECTL=(kubectl --context "$CONTEXT")

say() { printf 'restore-coredns: %s\n' "$*"; }

command -v kubectl >/dev/null || { say "kubectl is not on PATH"; exit 1; }

say "scaling coredns to $REPLICAS"
"${KUBECTL[@]}" -n kube-system scale deployment/coredns --replicas="$REPLICAS"
"${KUBECTL[@]}" -n kube-system rollout status deployment/coredns --timeout=180s

say "removing kdns (the ConfigMap coredns and the Service kube-dns stay)"
"${KUBECTL[@]}" -n kube-system delete deployment/kdns poddisruptionbudget/kdns \
  serviceaccount/kdns --ignore-not-found
"${KUBECTL[@]}" delete clusterrolebinding/system:kdns clusterrole/system:kdns \
  clusterrolebinding/system:kdns:pods clusterrole/system:kdns:pods --ignore-not-found
say "done: CoreDNS serves cluster DNS again"
