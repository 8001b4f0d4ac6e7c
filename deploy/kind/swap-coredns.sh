#!/usr/bin/env bash
# Replace CoreDNS with kdns in an existing kind cluster, without a DNS outage. It swaps the
# image, not the configuration: kdns reads the cluster's own Corefile (ConfigMap
# kube-system/coredns, key Corefile) and sits behind the cluster's own kube-dns Service; this
# script changes neither.
#   1. check that the ConfigMap coredns (with a Corefile) and the Service kube-dns (selecting
#      k8s-app=kube-dns) exist;
#   2. build the image kdns:dev from this repo (docker build) and load it into the kind nodes;
#   3. apply deploy/kdns.yaml (ServiceAccount, read-only RBAC, Deployment mounting the coredns
#      ConfigMap, PodDisruptionBudget), plus deploy/kdns-pods-verified.yaml when the Corefile
#      says `pods verified`; wait until both kdns replicas are ready; meanwhile the kube-dns
#      Service balances over CoreDNS and kdns pods (both carry k8s-app=kube-dns);
#   4. scale the coredns Deployment to 0, so only kdns answers at the kube-dns address;
#   5. check resolution from a throwaway busybox pod: a Service name must resolve; an external
#      name is tried too (a warning only, as the nodes may have no internet).
# Idempotent: running it again rebuilds, reloads and re-applies. Undo: restore-coredns.sh.
#
# Usage: deploy/kind/swap-coredns.sh [CLUSTER_NAME]   (default: kind; needs docker, kind, kubectl)
set -euo pipefail

CLUSTER="${1:-kind}"
IMAGE="${KDNS_IMAGE:-kdns:dev}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CONTEXT="kind-${CLUSTER}"
KUBECTL=(kubectl --context "$CONTEXT")

say() { printf 'swap-coredns: %s\n' "$*"; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { say "$tool is not on PATH"; exit 1; }
done
kind get clusters | grep -qx "$CLUSTER" || { say "no kind cluster named $CLUSTER"; exit 1; }

corefile="$("${KUBECTL[@]}" -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}' 2>/dev/null || true)"
if [ -z "$corefile" ]; then
  say "no ConfigMap kube-system/coredns with a Corefile key: kdns reads the Corefile from it;"
  say "create it first (deploy/cluster-dns.yaml has kubeadm's) and run this again"
  exit 1
fi
selector="$("${KUBECTL[@]}" -n kube-system get service kube-dns -o jsonpath='{.spec.selector.k8s-app}' 2>/dev/null || true)"
if [ "$selector" != "kube-dns" ]; then
  say "the Service kube-system/kube-dns is missing or does not select k8s-app=kube-dns;"
  say "kdns pods carry that label: create the Service (deploy/cluster-dns.yaml) and run this again"
  exit 1
fi

say "building $IMAGE from $ROOT"
docker build -t "$IMAGE" "$ROOT"

say "loading $IMAGE into kind cluster $CLUSTER"
kind load docker-image "$IMAGE" --name "$CLUSTER"

say "applying deploy/kdns.yaml (the ConfigMap coredns and the Service kube-dns stay as they are)"
"${KUBECTL[@]}" apply -f "$ROOT/deploy/kdns.yaml"
if printf '%s\n' "$corefile" | grep -Eq '^[[:space:]]*pods[[:space:]]+verified([[:space:]]|$)'; then
  say "the Corefile says 'pods verified': applying deploy/kdns-pods-verified.yaml (list/watch pods)"
  "${KUBECTL[@]}" apply -f "$ROOT/deploy/kdns-pods-verified.yaml"
else  # least privilege: no Pod access left over from an earlier run
  "${KUBECTL[@]}" delete -f "$ROOT/deploy/kdns-pods-verified.yaml" --ignore-not-found
fi
# A rebuilt image under the same tag is only picked up by new pods.
"${KUBECTL[@]}" -n kube-system rollout restart deployment/kdns
say "waiting for kdns to be ready"
"${KUBECTL[@]}" -n kube-system rollout status deployment/kdns --timeout=180s

say "scaling coredns to 0 (restore-coredns.sh scales it back)"
"${KUBECTL[@]}" -n kube-system scale deployment/coredns --replicas=0
"${KUBECTL[@]}" -n kube-system rollout status deployment/coredns --timeout=120s

say "checking resolution from a busybox pod"
"${KUBECTL[@]}" -n default delete pod kdns-dns-check --ignore-not-found --wait=true >/dev/null
"${KUBECTL[@]}" -n default run kdns-dns-check --image=busybox:1.36 --restart=Never \
  --command -- sh -c 'nslookup kubernetes.default.svc.cluster.local &&
    { nslookup kubernetes.io || echo "external name failed: does the node reach the internet?"; }'
ok=0
for _ in $(seq 1 60); do
  phase="$("${KUBECTL[@]}" -n default get pod kdns-dns-check -o jsonpath='{.status.phase}')"
  case "$phase" in
    Succeeded) ok=1; break ;;
    Failed) break ;;
  esac
  sleep 2
done
"${KUBECTL[@]}" -n default logs kdns-dns-check || true
"${KUBECTL[@]}" -n default delete pod kdns-dns-check --ignore-not-found --wait=false >/dev/null
if [ "$ok" -ne 1 ]; then
  say "resolution check FAILED (pod phase: ${phase:-unknown}); CoreDNS stays at 0:"
  say "inspect with: kubectl --context $CONTEXT -n kube-system logs deploy/kdns"
  say "or put CoreDNS back with deploy/kind/restore-coredns.sh $CLUSTER"
  exit 1
fi
say "done: kdns serves cluster DNS at $("${KUBECTL[@]}" -n kube-system get svc kube-dns -o jsonpath='{.spec.clusterIP}')"
