"""`autopath @kubernetes` as a pod sees it: glibc in a pod-like sandbox resolves through
kdns with the kubelet's resolv.conf (`search default.svc.cluster.local svc.cluster.local
cluster.local`, `options ndots:5`), from the address of a known pod, and kdns counts the
queries it receives (coredns_dns_requests_total) with and without autopath.

The pod's address: the sandbox's loopback holds the pod IP 10.244.0.5 and the kube-dns
address 10.96.0.10; the local route to 10.96.0.10 gets `src 10.244.0.5`, so glibc's
queries to its nameserver leave from the pod's address, as in a pod. kdns binds
10.96.0.10 (its replies come from the address glibc asked). The upstream is dnsmasq on
::1, authoritative for upstream.test, where example.upstream.test has an A record only."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.kdns_process import require_tool
from tests.e2e.sandbox import Sandbox, dnsmasq

pytestmark = pytest.mark.e2e

POD_IP = "10.244.0.5"
POD_IP6 = "fd00:244::5"
KUBE_DNS = "10.96.0.10"
UPSTREAM = "::1"
# An authoritative upstream for upstream.test: NODATA for the AAAA a name lacks, as real
# servers answer (dnsmasq's --address would say REFUSED).
UPSTREAM_ZONE = (
    "--auth-zone=upstream.test",
    "--auth-server=ns.upstream.test,::1",
    "--host-record=example.upstream.test,192.0.2.7",
)
RESOLV_CONF = (
    f"nameserver {KUBE_DNS}\n"
    "search default.svc.cluster.local svc.cluster.local cluster.local\n"
    "options ndots:5\n"
)
CLUSTER = f"""
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: default}}
spec: {{containers: [{{name: c, image: x}}]}}
status: {{phase: Running, podIP: {POD_IP}, podIPs: [{{ip: {POD_IP}}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: prod}}
spec: {{clusterIP: 10.96.5.5, ports: [{{name: http, port: 80}}]}}
"""


def corefile(autopath: bool) -> str:
    return (
        ".:53 {\n"
        f"    bind {KUBE_DNS}\n"
        "    errors\n"
        "    ready 127.0.0.1:8181\n"
        "    prometheus 127.0.0.1:9153\n"
        + ("    autopath @kubernetes\n" if autopath else "")
        + "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
        "        pods verified\n"
        "    }\n"
        f"    forward . [{UPSTREAM}]:53\n"
        "}\n"
    )


@dataclass
class Pod:
    box: Sandbox
    tmp: Path
    types: int  # query types glibc asks per name: A, or A and AAAA

    def requests(self) -> float:
        """coredns_dns_requests_total, summed over its labels."""
        _, text = self.box.http("http://127.0.0.1:9153/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("coredns_dns_requests_total{")
        )

    def metric(self, name: str) -> float:
        _, text = self.box.http("http://127.0.0.1:9153/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )

    def getent(self, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
        """Run getent in the pod; return its result and the queries kdns received."""
        before = self.requests()
        out = self.box.run(["getent", *args], timeout=30)
        time.sleep(0.2)  # glibc may still send a query after printing
        return out, self.requests() - before


@pytest.fixture(scope="module", params=["ipv4", "dual-stack"])
def pod(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """A pod with an IPv4 address only (glibc's getaddrinfo then asks A only: AI_ADDRCONFIG),
    or with an IPv6 one beside it (A and AAAA)."""
    require_tool("dnsmasq")
    require_tool("getent")
    tmp = tmp_path_factory.mktemp("autopath")
    addresses = [f"{KUBE_DNS}/32", f"{POD_IP}/32"]
    cluster = CLUSTER
    if request.param == "dual-stack":
        addresses.append(f"{POD_IP6}/128")
        cluster = cluster.replace(
            f"podIPs: [{{ip: {POD_IP}}}]", f"podIPs: [{{ip: {POD_IP}}}, {{ip: '{POD_IP6}'}}]"
        )
    (tmp / "cluster.yaml").write_text(cluster)
    route = (
        f"ip route replace local {KUBE_DNS} dev lo table local proto kernel scope host src {POD_IP}"
    )
    with (
        Sandbox(tmp, resolv_conf=RESOLV_CONF, addresses=addresses, commands=[route]) as box,
        dnsmasq(box, UPSTREAM, *UPSTREAM_ZONE),
    ):
        yield Pod(box, tmp, types=2 if request.param == "dual-stack" else 1)


@contextlib.contextmanager
def kdns(pod: Pod, *, autopath: bool) -> Iterator[None]:
    path = pod.tmp / f"Corefile-{autopath}"
    path.write_text(corefile(autopath))
    log = pod.tmp / f"kdns-{autopath}.log"
    proc = pod.box.start(
        [sys.executable, "-m", "kdns", "serve", "--corefile", str(path),
         "--manifests", str(pod.tmp / "cluster.yaml")],
        log=log,
    )  # fmt: skip
    try:
        pod.box.wait_http("http://127.0.0.1:8181/ready")
    except AssertionError:
        raise AssertionError(log.read_text()) from None
    try:
        yield
    finally:
        pod.box.stop(proc)


def test_queries_leave_from_the_pods_address(pod: Pod) -> None:
    route = pod.box.run(["ip", "route", "get", KUBE_DNS]).stdout
    assert f"src {POD_IP}" in route


def walk(pod: Pod) -> tuple[float, float, float]:
    """Queries kdns receives for: getent ahosts example.upstream.test (getaddrinfo), getent
    ahosts api.prod (a Service of another namespace, by its short name) and getent hosts
    example.upstream.test (gethostbyname: AAAA alone first, then A)."""
    out, external = pod.getent("ahosts", "example.upstream.test")
    assert out.returncode == 0, out.stderr
    assert "192.0.2.7" in out.stdout
    out, short = pod.getent("ahosts", "api.prod")
    assert "10.96.5.5" in out.stdout
    out, hosts = pod.getent("hosts", "example.upstream.test")
    assert "192.0.2.7" in out.stdout
    return external, short, hosts


def test_autopath_answers_the_first_search_domains_query(pod: Pod) -> None:
    with kdns(pod, autopath=False):
        external, short, hosts = walk(pod)
    # Each type for each of the three search domains, then for the name itself; the
    # Service is found under the second domain.
    assert (external, short) == (4 * pod.types, 2 * pod.types)
    with kdns(pod, autopath=True):
        external_ap, short_ap, hosts_ap = walk(pod)
        successes = pod.metric("coredns_autopath_success_total")
    # The first search domain's A query is answered with a CNAME to the name and its
    # address (its AAAA with the upstream's NODATA), and glibc stops there.
    assert (external_ap, short_ap) == (pod.types, pod.types)
    # gethostbyname's lone AAAA query gets NODATA, which sends glibc on down the search
    # path (CoreDNS's autopath README, Bugs); its A query then takes one.
    assert hosts_ap < hosts
    assert successes >= 2 * pod.types
    print(
        f"\n{'A' if pod.types == 1 else 'A+AAAA'}: queries kdns received without -> with "
        f"autopath: getent ahosts example.upstream.test {external:.0f} -> {external_ap:.0f}, "
        f"getent ahosts api.prod {short:.0f} -> {short_ap:.0f}, "
        f"getent hosts example.upstream.test {hosts:.0f} -> {hosts_ap:.0f}"
    )
