#!/usr/bin/env bash
# Exercise kdns's Kubernetes source against a REAL API server in a kind cluster: what the
# fake API in tests/fakes/kubeapi.py cannot prove (see README.md next to this file).
#
# NOT RUN in the kdns development environment: it has no Docker engine, so no kind. Run it
# on a machine with docker, kind, kubectl, dig and python3 (for the out-of-cluster phase:
# the repo's .venv or an installed `kdns`).
#
# Usage: deploy/kind/try-in-kind.sh [PHASE...]     (default: all phases, in order)
#   setup   create the kind cluster (if absent) and swap CoreDNS for kdns (swap-coredns.sh);
#           kdns must answer with the TTL of the cluster's Corefile (kubeadm: ttl 30)
#   churn   create/scale/delete Services and Deployments; answers must follow within ~1 s
#   gone    ask the real apiserver for a compacted RV: a real "410 Gone" (ERROR event)
#   pause   run kdns out of cluster (--kubeconfig), SIGSTOP it > 6 min while churning 200
#           Services, SIGCONT: it must relist (410) and converge
#   rbac    remove kdns's ClusterRoleBinding: kdns logs 403 and keeps serving its cache
#   restart docker restart the control plane: kdns backs off and recovers
# Env: CLUSTER (default kdns), PAUSE_SECONDS (default 400), KDNS (default: .venv/bin/kdns).
set -euo pipefail

CLUSTER="${CLUSTER:-kdns}"
CONTEXT="kind-${CLUSTER}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
KDNS="${KDNS:-$ROOT/.venv/bin/kdns}"
PAUSE_SECONDS="${PAUSE_SECONDS:-400}"
K=(kubectl --context "$CONTEXT")
WORK="$(mktemp -d)"
LOCAL_DNS_PORT=15353
LOCAL_PID=""

say() { printf '\n== try-in-kind: %s\n' "$*"; }
fail() { printf 'try-in-kind: FAILED: %s\n' "$*" >&2; exit 1; }
cleanup() {
  if [[ -n "$LOCAL_PID" ]]; then kill -CONT "$LOCAL_PID" 2>/dev/null || true; kill "$LOCAL_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cluster_dns_ip() { "${K[@]}" -n kube-system get svc kube-dns -o jsonpath='{.spec.clusterIP}'; }

# Resolve NAME from inside the cluster (through the kube-dns Service, i.e. kdns).
in_cluster_lookup() {
  "${K[@]}" -n default run "q-$RANDOM" --rm -i --restart=Never --image=busybox:1.36 \
    --command -- nslookup "$1" "$(cluster_dns_ip)" 2>/dev/null || true
}

# Wait up to $2 seconds until `dig` at the local kdns gives status $3 for name $1.
local_expect() {
  local name=$1 within=$2 want=$3 deadline=$((SECONDS + $2)) got=""
  while ((SECONDS < deadline)); do
    got=$(dig +tries=1 +time=1 @127.0.0.1 -p "$LOCAL_DNS_PORT" "$name" A | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
    [[ "$got" == "$want" ]] && return 0
    sleep 0.2
  done
  fail "$name: wanted $want within ${within}s, last status $got"
}

phase_setup() {
  say "setup: kind cluster $CLUSTER, then swap CoreDNS for kdns"
  for tool in docker kind kubectl dig; do command -v "$tool" >/dev/null || fail "$tool missing"; done
  kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
  local before after
  before=$("${K[@]}" -n kube-system get configmap coredns -o jsonpath='{.metadata.resourceVersion}')
  "$ROOT/deploy/kind/swap-coredns.sh" "$CLUSTER"
  after=$("${K[@]}" -n kube-system get configmap coredns -o jsonpath='{.metadata.resourceVersion}')
  [[ "$before" == "$after" ]] || fail "the swap changed the ConfigMap coredns"
  in_cluster_lookup kubernetes.default.svc.cluster.local | grep -q "10.96.0.1" \
    || fail "kubernetes.default does not resolve through kdns"
  # kdns read the cluster's Corefile: its `ttl 30` shows in the answer (kdns's own default is 5).
  local ttl want
  want=$("${K[@]}" -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}' \
    | sed -nE 's/^[[:space:]]*ttl[[:space:]]+([0-9]+).*/\1/p' | head -1)
  ttl=$("${K[@]}" -n default run "q-$RANDOM" --rm -i --restart=Never \
    --image=registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7 --command -- \
    dig +noall +answer kubernetes.default.svc.cluster.local A 2>/dev/null | awk '$4 == "A" {print $2; exit}')
  want=${want:-5}  # no `ttl` in the Corefile: the kubernetes plugin's default
  [[ "$ttl" == "$want" ]] || fail "kubernetes.default answered with TTL '$ttl'; the Corefile says $want"
}

phase_churn() {
  say "churn: Services and endpoints appear, change and vanish; kdns follows"
  "${K[@]}" create deployment web --image=nginx:1.27 --replicas=3 --dry-run=client -o yaml | "${K[@]}" apply -f -
  "${K[@]}" expose deployment web --port 80 --dry-run=client -o yaml | "${K[@]}" apply -f -
  "${K[@]}" rollout status deployment/web --timeout=180s
  in_cluster_lookup web.default.svc.cluster.local | grep -q "Address" || fail "web does not resolve"
  "${K[@]}" scale deployment web --replicas=0
  "${K[@]}" scale deployment web --replicas=5
  "${K[@]}" rollout status deployment/web --timeout=180s
  "${K[@]}" delete service web
  sleep 1
  in_cluster_lookup web.default.svc.cluster.local | grep -q "NXDOMAIN" \
    || fail "web still resolves 1 s after deletion"
  "${K[@]}" -n kube-system logs deployment/kdns --tail=50 | grep -E "listed|watch" || true
}

phase_gone() {
  say "gone: a real apiserver's answer to a compacted resourceVersion"
  # Expect HTTP 200 and one line {"type":"ERROR","object":{"kind":"Status",...,"code":410}}
  # kdns turns the same event into a relist.
  "${K[@]}" get --raw '/api/v1/services?watch=1&resourceVersion=1&timeoutSeconds=5' | head -c 600
  echo
}

phase_pause() {
  say "pause: kdns out of cluster, SIGSTOP for ${PAUSE_SECONDS}s while 200 Services churn"
  kind get kubeconfig --name "$CLUSTER" >"$WORK/kubeconfig"
  "$KDNS" serve --kubeconfig "$WORK/kubeconfig" --dns-addr "127.0.0.1:$LOCAL_DNS_PORT" \
    --upstream none --health-addr 127.0.0.1:18080 --ready-addr 127.0.0.1:18181 \
    --metrics-addr 127.0.0.1:19153 >"$WORK/kdns.log" 2>&1 &
  LOCAL_PID=$!
  local_expect kubernetes.default.svc.cluster.local 30 NOERROR
  "${K[@]}" create namespace churn --dry-run=client -o yaml | "${K[@]}" apply -f -
  for i in $(seq 1 100); do "${K[@]}" -n churn create service clusterip "old$i" --tcp=80 >/dev/null; done
  local_expect old100.churn.svc.cluster.local 10 NOERROR
  kill -STOP "$LOCAL_PID"
  for i in $(seq 1 100); do "${K[@]}" -n churn delete service "old$i" --wait=false >/dev/null; done
  for i in $(seq 1 100); do "${K[@]}" -n churn create service clusterip "new$i" --tcp=80 >/dev/null; done
  say "pause: waiting ${PAUSE_SECONDS}s (etcd compacts every 5 min, so kdns's RV expires)"
  sleep "$PAUSE_SECONDS"
  kill -CONT "$LOCAL_PID"
  local_expect new100.churn.svc.cluster.local 60 NOERROR
  local_expect old1.churn.svc.cluster.local 60 NXDOMAIN
  grep -E "410|relisting|listed" "$WORK/kdns.log" || fail "no relist logged"
  curl -s http://127.0.0.1:19153/metrics | grep -E "kdns_(relists|watch_restarts|api_up)" || true
  "${K[@]}" delete namespace churn --wait=false
}

phase_rbac() {
  say "rbac: without its ClusterRoleBinding kdns gets 403, logs it, keeps its cache"
  "${K[@]}" delete clusterrolebinding system:kdns
  # Open watches are not cut by an RBAC change; the next re-watch (timeoutSeconds <= 300 s)
  # or a pod restart meets the 403. Restarting the API server would be quicker but noisier.
  local deadline=$((SECONDS + 330))
  until "${K[@]}" -n kube-system logs deployment/kdns --since=6m | grep -q "HTTP 403"; do
    ((SECONDS < deadline)) || fail "no 403 logged within 330 s"
    sleep 10
  done
  "${K[@]}" -n kube-system logs deployment/kdns --since=6m | grep "HTTP 403" | tail -3
  in_cluster_lookup kubernetes.default.svc.cluster.local | grep -q "10.96.0.1" \
    || fail "the cache was not kept after 403"
  "${K[@]}" apply -f "$ROOT/deploy/kdns.yaml"  # restores the binding (and nothing else)
}

phase_restart() {
  say "restart: the control plane goes away and comes back"
  docker restart "${CLUSTER}-control-plane"
  in_cluster_lookup kubernetes.default.svc.cluster.local | grep -q "10.96.0.1" \
    || fail "no answer while/after the API restarted"
  "${K[@]}" -n kube-system logs deployment/kdns --since=5m | grep -E "retrying|lost|connected" | tail -5
}

phases=("$@")
((${#phases[@]})) || phases=(setup churn gone pause rbac restart)
for phase in "${phases[@]}"; do
  case "$phase" in
    setup | churn | gone | pause | rbac | restart) "phase_$phase" ;;
    *) fail "unknown phase $phase" ;;
  esac
done
say "all requested phases passed"
