"""deploy/: the manifests that run kdns as a cluster's DNS with least privilege, checked three
ways: structure in Python (kubeadm's CoreDNS Deployment facts: the `coredns` ConfigMap
mounted at /etc/coredns, probes on :8080/:8181, metrics on :9153, resources, placement; and
read-only RBAC with Pods only in the separate `pods verified` file), the OpenAPI schemas of
kubernetes-validate (when installed), and kubectl's client-side dry run against a small
discovery-only API server on loopback (when kubectl is installed). Also the Dockerfile and
the kind scripts, statically.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# What deploys kdns; the Pods role applied only with `pods verified`; kubeadm's ConfigMap and
# Service for a cluster without CoreDNS. (deploy/examples/ holds sample cluster objects for
# --manifests.)
KDNS_MANIFESTS = [DEPLOY / "kdns.yaml"]
PODS_VERIFIED = DEPLOY / "kdns-pods-verified.yaml"
CLUSTER_DNS = DEPLOY / "cluster-dns.yaml"
ALL_MANIFESTS = [*KDNS_MANIFESTS, PODS_VERIFIED, CLUSTER_DNS]
COREFILE = "/etc/coredns/Corefile"  # where kubeadm's CoreDNS Deployment mounts it
K8S_VERSION = "1.32"  # kind's current node images; kubeadm v1.32 ships CoreDNS 1.11.3

Obj = dict[str, Any]


def all_yaml_files() -> list[Path]:
    return sorted(p for ext in ("*.yaml", "*.yml") for p in DEPLOY.rglob(ext))


def load(path: Path) -> list[Obj]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def objects(paths: list[Path] = KDNS_MANIFESTS) -> list[Obj]:
    return [obj for path in paths for obj in load(path)]


def the(kind: str, name: str | None = None, *, paths: list[Path] = KDNS_MANIFESTS) -> Obj:
    found = [
        o
        for o in objects(paths)
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container() -> Obj:
    containers = the("Deployment", "kdns")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Obj = containers[0]
    return result


# ---- every YAML parses; every object is well-formed -------------------------------------


@pytest.mark.parametrize("path", all_yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_in_deploy_parses_into_kubernetes_objects(path: Path) -> None:
    docs = load(path)
    assert docs, f"{path} holds no documents"
    for doc in docs:
        assert isinstance(doc, dict)
        assert {"apiVersion", "kind", "metadata"} <= doc.keys()
        assert doc["metadata"].get("name")


def test_the_kdns_manifests_hold_exactly_the_objects_a_swap_needs() -> None:
    """kdns brings its own workload and RBAC, and reuses the cluster's DNS configuration:
    no ConfigMap and no Service, so applying it over kubeadm's objects changes neither."""
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects())
    assert kinds == [
        ("ClusterRole", "system:kdns"),
        ("ClusterRoleBinding", "system:kdns"),
        ("Deployment", "kdns"),
        ("PodDisruptionBudget", "kdns"),
        ("ServiceAccount", "kdns"),
    ]
    for obj in objects():
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == "kube-system", obj["kind"]


def test_kubeadm_configuration_file_holds_only_the_coredns_configmap_and_kube_dns() -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects([CLUSTER_DNS]))
    assert kinds == [("ConfigMap", "coredns"), ("Service", "kube-dns")]
    for obj in objects([CLUSTER_DNS]):
        assert obj["metadata"]["namespace"] == "kube-system", obj["kind"]


# ---- RBAC: list/watch only, on exactly what kdns reads -----------------------------------


def grants_of(role: Obj) -> set[tuple[str, str]]:
    """(apiGroup, resource) pairs a read-only role grants; fails on anything but list/watch."""
    grants = set()
    for rule in role["rules"]:
        assert sorted(rule["verbs"]) == ["list", "watch"]
        assert "resourceNames" not in rule
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.add((group, resource))
    return grants


def test_default_cluster_role_grants_list_and_watch_on_the_three_kinds_and_no_pods() -> None:
    assert grants_of(the("ClusterRole")) == {
        ("", "services"),
        ("", "namespaces"),
        ("discovery.k8s.io", "endpointslices"),
    }


def test_pods_verified_file_adds_only_list_and_watch_on_pods() -> None:
    role = the("ClusterRole", paths=[PODS_VERIFIED])
    assert grants_of(role) == {("", "pods")}
    # Its own names: applying or deleting it never touches the default role or binding.
    assert role["metadata"]["name"] != the("ClusterRole")["metadata"]["name"]
    binding = the("ClusterRoleBinding", paths=[PODS_VERIFIED])
    assert binding["metadata"]["name"] != the("ClusterRoleBinding")["metadata"]["name"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == the("ClusterRoleBinding")["subjects"]
    assert len(objects([PODS_VERIFIED])) == 2


def test_binding_gives_the_role_to_the_kdns_service_account_only() -> None:
    binding = the("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": the("ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kdns", "namespace": "kube-system"}
    ]
    pod = the("Deployment", "kdns")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kdns"


# ---- the pod: least privilege, CoreDNS's probes and resources ---------------------------


def test_pod_runs_non_root_read_only_with_only_net_bind_service() -> None:
    pod = the("Deployment", "kdns")["spec"]["template"]["spec"]
    ctx = container()["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert ctx.get("privileged", False) is False
    assert not pod.get("hostNetwork", False)
    # Only the namespaced sysctl that lets port 53 be bound without root, if any.
    assert [s["name"] for s in pod["securityContext"].get("sysctls", [])] in (
        [],
        ["net.ipv4.ip_unprivileged_port_start"],
    )
    # The only volume is the Corefile's ConfigMap, read-only: no secret but the service
    # account token, and no host path.
    assert [v["name"] for v in pod["volumes"]] == ["config-volume"]
    assert set(pod["volumes"][0]) == {"name", "configMap"}
    assert all(m.get("readOnly") is True for m in container()["volumeMounts"])
    # No environment from the kubelet's service links (kdns reads KDNS_* variables).
    assert pod["enableServiceLinks"] is False
    assert not container().get("env")
    assert not container().get("envFrom")


def test_kdns_reads_the_clusters_own_corefile_from_the_coredns_configmap() -> None:
    pod = the("Deployment", "kdns")["spec"]["template"]["spec"]
    c = container()
    assert c["args"] == ["serve", "--corefile", COREFILE]
    (volume,) = pod["volumes"]
    assert volume["configMap"] == {
        "name": "coredns",
        "items": [{"key": "Corefile", "path": "Corefile"}],
    }
    (mount,) = c["volumeMounts"]
    assert mount["name"] == volume["name"]
    # A directory mount (no subPath): the kubelet updates the file when the ConfigMap changes.
    assert "subPath" not in mount
    assert f"{mount['mountPath']}/{volume['configMap']['items'][0]['path']}" == COREFILE


def test_probes_are_coredns_ports_and_paths() -> None:
    c = container()
    live, ready = c["livenessProbe"], c["readinessProbe"]
    assert live["httpGet"]["path"] == "/health"
    assert live["httpGet"]["port"] == 8080
    # kubeadm: initialDelaySeconds 60, timeoutSeconds 5, failureThreshold 5.
    assert (live["initialDelaySeconds"], live["timeoutSeconds"], live["failureThreshold"]) == (
        60,
        5,
        5,
    )
    assert ready["httpGet"]["path"] == "/ready"
    assert ready["httpGet"]["port"] == 8181
    # The ports come from the Corefile now, not from flags: no flag may override them.
    assert not [a for a in c["args"] if a.startswith("--") and a != "--corefile"]


def test_kubeadm_corefile_serves_what_the_pod_declares() -> None:
    """kubeadm's Corefile (as in deploy/cluster-dns.yaml): `.:53`, `health` on its default
    :8080, `ready` on :8181, `prometheus :9153`, so the probes and ports above match it."""
    corefile = the("ConfigMap", "coredns", paths=[CLUSTER_DNS])["data"]["Corefile"]
    directives = [line.split() for line in corefile.splitlines() if line.strip()]
    assert directives[0] == [".:53", "{"]
    assert ["health", "{"] in directives
    assert ["ready"] in directives
    assert ["prometheus", ":9153"] in directives
    assert ["kubernetes", "cluster.local", "in-addr.arpa", "ip6.arpa", "{"] in directives
    assert ["pods", "insecure"] in directives  # so the default role needs no Pods
    declared = {(p["containerPort"], p["protocol"]) for p in container()["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (8080, "TCP"), (8181, "TCP"), (9153, "TCP")} <= declared


def test_deployment_is_placed_and_sized_like_coredns() -> None:
    deployment = the("Deployment", "kdns")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["priorityClassName"] == "system-cluster-critical"
    # dnsPolicy Default: upstreams from the node, never the cluster DNS itself (a loop).
    assert pod["dnsPolicy"] == "Default"
    tolerations = {(t["key"], t.get("effect")) for t in pod["tolerations"]}
    assert ("CriticalAddonsOnly", None) in tolerations
    assert ("node-role.kubernetes.io/control-plane", "NoSchedule") in tolerations
    anti = pod["affinity"]["podAntiAffinity"]
    terms = [
        t.get("podAffinityTerm", t)
        for key in (
            "preferredDuringSchedulingIgnoredDuringExecution",
            "requiredDuringSchedulingIgnoredDuringExecution",
        )
        for t in anti.get(key, [])
    ]
    assert [t["topologyKey"] for t in terms] == ["kubernetes.io/hostname"]
    own = deployment["spec"]["selector"]["matchLabels"]
    assert terms[0]["labelSelector"]["matchLabels"] == own
    c = container()
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "70Mi"},
        "limits": {"memory": "170Mi"},
    }
    assert (c["image"], c["imagePullPolicy"]) == ("kdns:dev", "IfNotPresent")
    assert {(p["containerPort"], p["protocol"]) for p in c["ports"]} >= {
        (53, "UDP"),
        (53, "TCP"),
        (9153, "TCP"),
    }


def test_pods_match_their_selectors_and_the_kube_dns_service() -> None:
    deployment = the("Deployment", "kdns")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    own = deployment["spec"]["selector"]["matchLabels"]
    assert own.items() <= labels.items()
    # kubeadm's Service selects this label; kdns pods carry it, so the swap needs no patch.
    service = the("Service", "kube-dns", paths=[CLUSTER_DNS])
    assert service["spec"]["selector"] == {"k8s-app": "kube-dns"}
    assert labels["k8s-app"] == "kube-dns"
    # ...but the Deployment must not select CoreDNS's pods (they lack this label).
    assert "k8s-app" not in own
    pdb = the("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == own


def test_service_is_kind_cluster_dns_address_with_coredns_ports() -> None:
    svc = the("Service", "kube-dns", paths=[CLUSTER_DNS])
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert svc["metadata"]["labels"]["k8s-app"] == "kube-dns"
    assert svc["metadata"]["annotations"] == {
        "prometheus.io/port": "9153",
        "prometheus.io/scrape": "true",
    }
    ports = {(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]}
    assert ports == {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}
    # Every targetPort is a port the container declares.
    declared = {(p["containerPort"], p["protocol"]) for p in container()["ports"]}
    for p in svc["spec"]["ports"]:
        assert (p.get("targetPort", p["port"]), p["protocol"]) in declared


# ---- OpenAPI schemas, offline (kubernetes-validate) --------------------------------------


@pytest.mark.parametrize("path", ALL_MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_openapi_schemas(path: Path) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    for obj in load(path):
        kv.validate(obj, K8S_VERSION, strict=True)


def test_schema_check_rejects_a_misspelt_field() -> None:
    """The schema check above can fail: an unknown field in the securityContext is caught."""
    kv = pytest.importorskip("kubernetes_validate")
    broken = copy.deepcopy(the("Deployment", "kdns"))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSION, strict=True)


# ---- kubectl's client-side dry run against a discovery-only API on loopback --------------

# The API groups and resources the manifests use, as discovery documents describe them.
DISCOVERY: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
        ("namespaces", "Namespace", False),
        ("pods", "Pod", True),
        ("configmaps", "ConfigMap", True),
    ],
    "rbac.authorization.k8s.io/v1": [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
}


def _not_found() -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "NotFound",
        "code": 404,
        "message": "not found",
    }
    return web.json_response(body, status=404)


async def _discovery(request: web.Request) -> web.Response:
    """Serve /api, /apis and the resource lists; everything else is 404 (nothing exists)."""
    path = request.path.rstrip("/")
    if path == "/api":
        return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
    if path == "/apis":
        groups = []
        for gv in DISCOVERY:
            if "/" in gv:
                group, version = gv.split("/")
                v = {"groupVersion": gv, "version": version}
                groups.append({"name": group, "versions": [v], "preferredVersion": v})
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    for gv, resources in DISCOVERY.items():
        if path == ("/api/v1" if gv == "v1" else f"/apis/{gv}"):
            listed = [
                {
                    "name": plural,
                    "singularName": kind.lower(),
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": ["create", "get", "list", "patch", "update", "watch"],
                }
                for plural, kind, namespaced in resources
            ]
            return web.json_response(
                {"kind": "APIResourceList", "groupVersion": gv, "resources": listed}
            )
    return _not_found()


@pytest.fixture
async def discovery_api(tmp_path: Path) -> AsyncIterator[Path]:
    """A loopback API that knows the kinds but holds no objects; yields a kubeconfig."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _discovery)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    try:
        yield kubeconfig
    finally:
        await runner.cleanup()


async def _kubectl(kubeconfig: Path, *args: str) -> tuple[int, str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["HOME"] = str(kubeconfig.parent)  # no writes to the real ~/.kube
    proc = await asyncio.create_subprocess_exec(
        kubectl,
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(kubeconfig.parent / "cache"),
        "--request-timeout=10s",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.parametrize("path", ALL_MANIFESTS, ids=lambda p: p.name)
async def test_kubectl_client_dry_run_accepts_the_manifests(
    discovery_api: Path, path: Path
) -> None:
    code, out = await _kubectl(
        discovery_api, "apply", "--dry-run=client", "--validate=false", "-f", str(path)
    )
    assert code == 0, out
    created = set(re.findall(r"^(\S+) created \(dry run\)$", out, re.MULTILINE))
    want = {
        f"{o['kind'].lower()}.{group}/{o['metadata']['name']}".replace("./", "/")
        for o in load(path)
        for group in [o["apiVersion"].rpartition("/")[0]]
    }
    assert created == want, out


async def test_kubectl_dry_run_rejects_an_unknown_kind(discovery_api: Path, tmp_path: Path) -> None:
    """The dry run above can fail: a kind the API does not serve is an error."""
    bogus = tmp_path / "bogus.yaml"
    bogus.write_text("apiVersion: apps/v1\nkind: Deplyment\nmetadata:\n  name: x\n")
    code, out = await _kubectl(
        discovery_api, "apply", "--dry-run=client", "--validate=false", "-f", str(bogus)
    )
    assert code != 0, out


# ---- Dockerfile and kind scripts, statically (no Docker engine or kind here) --------------


def dockerfile_instructions() -> Iterator[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            yield word.upper(), rest.strip()


def test_dockerfile_runs_kdns_as_non_root_with_a_healthcheck() -> None:
    steps = list(dockerfile_instructions())
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms
    assert all(f.startswith("python:3.11-slim") for f in froms)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users
    assert users[-1].split(":")[0] == "65532"
    assert any(w == "ENV" and "PYTHONDONTWRITEBYTECODE=1" in r for w, r in final)
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(health) == 1
    assert "urllib" in health[0]
    assert "/health" in health[0]
    assert "curl" not in health[0]
    entry = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in final if word == "CMD"]
    assert entry[-1] + cmd[-1] == ["kdns", "serve"]
    run = " ".join(rest for word, rest in final if word == "RUN")
    assert "cap_net_bind_service=+ep" in run
    assert "[dev]" not in run
    build = " ".join(rest for word, rest in steps[: len(steps) - len(final)] if word == "RUN")
    assert "KDNS_COMPILE=1 pip wheel" in build  # the wheel carries the compiled modules


def test_dockerignore_keeps_the_build_context_to_the_package() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert lines[lines.index("*")] == "*"
    assert "!kdns/" in lines
    assert "!pyproject.toml" in lines
    assert "!setup.py" in lines  # it builds the compiled modules (kdns/native.py)
    assert "**/*.so" in lines  # and the image compiles its own, never a local build


@pytest.mark.parametrize("script", ["swap-coredns.sh", "restore-coredns.sh", "try-in-kind.sh"])
def test_kind_scripts_are_strict_bash_that_parses(script: str) -> None:
    path = DEPLOY / "kind" / script
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(path, os.X_OK)
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# kubectl verbs that write; a script swapping images must use none on the DNS configuration.
_WRITES = re.compile(r"\b(apply|create|replace|patch|edit|delete|set|label|annotate)\b")


def kubectl_commands(script: str) -> list[str]:
    """Every kubectl command of a kind script, continuation lines joined."""
    text = (DEPLOY / "kind" / script).read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        line.strip()
        for line in text.splitlines()
        if "KUBECTL[@]}" in line and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("script", ["swap-coredns.sh", "restore-coredns.sh"])
def test_swap_scripts_never_write_the_coredns_configmap_or_the_kube_dns_service(
    script: str,
) -> None:
    commands = kubectl_commands(script)
    assert commands
    for command in commands:
        if _WRITES.search(command):
            lowered = command.lower()
            assert "configmap" not in lowered, command
            assert "cluster-dns.yaml" not in lowered, command
            assert not re.search(r"\b(svc|service)/kube-dns\b", lowered), command
    # What swap-coredns.sh applies: kdns's own objects and, for `pods verified`, the Pods role.
    applied = {
        Path(f).name
        for command in commands
        for f in re.findall(r"apply -f \"\$ROOT/([^\"]+)\"", command)
    }
    assert applied <= {"kdns.yaml", "kdns-pods-verified.yaml"}
    if script == "swap-coredns.sh":
        assert applied == {"kdns.yaml", "kdns-pods-verified.yaml"}
