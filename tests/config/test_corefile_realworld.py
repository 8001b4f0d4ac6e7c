"""Corefiles as clusters ship them (kubeadm, EKS, RKE2, k3s, OpenShift, minikube,
NodeLocal DNSCache) and as people write them (stub domains, Consul, rewrites, DoT
upstreams): each loads, or is refused with FILE:LINE and the plugin or option it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.config.corefile import CorefileError, parse_corefile_text
from kdns.config.model import (
    AnswerRule,
    Config,
    ForwardConfig,
    HostsConfig,
    KubernetesConfig,
    LogConfig,
    NameMatch,
    Origin,
    RewriteConfig,
    RewriteMatch,
    RewriteName,
    Upstream,
)
from kdns.config.settings import HostPort
from tests.config.corefiles import read_resolv_conf

DATA = Path(__file__).parent.parent / "data" / "corefiles"

LOADS = [
    "kubeadm-1.31.Corefile",
    "kubeadm-1.32.Corefile",
    "eks.Corefile",
    "rke2.Corefile",
    "gke-stub-domains.Corefile",
    "consul.Corefile",
    "reverse-cidr.Corefile",
    "k3s.Corefile",
    "rewrite.Corefile",
    "minikube-hosts.Corefile",
    "autopath.Corefile",
    "nodelocaldns.Corefile",
    "dot-upstream.Corefile",
]

# file -> the (line, word the message must name) of every problem, in order
REFUSED = {
    "openshift.Corefile": [(26, "plugin chaos")],
}


def read(name: str) -> Config:
    path = DATA / name
    return parse_corefile_text(
        path.read_text(), source=str(path), environ={}, read_resolv_conf=read_resolv_conf
    )


def test_every_data_file_is_covered() -> None:
    assert sorted(p.name for p in DATA.glob("*.Corefile")) == sorted([*LOADS, *REFUSED])


@pytest.mark.parametrize("name", LOADS)
def test_loads(name: str) -> None:
    config = read(name)
    assert config.blocks
    assert all(b.origin.source == str(DATA / name) for b in config.blocks)


@pytest.mark.parametrize(("name", "expected"), REFUSED.items())
def test_refused_with_file_line_and_name(name: str, expected: list[tuple[int, str]]) -> None:
    with pytest.raises(CorefileError) as caught:
        read(name)
    found = caught.value.problems
    assert [p.origin.line for p in found] == [line for line, _ in expected]
    for problem, (line, word) in zip(found, expected, strict=True):
        assert str(problem).startswith(f"{DATA / name}:{line}: ")
        assert word in problem.message


def test_rke2_lists_cluster_local_twice_and_serves_it_once() -> None:
    kubernetes = read("rke2.Corefile").blocks[0].plugins["kubernetes"]
    assert isinstance(kubernetes, KubernetesConfig)
    assert kubernetes.zones == ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")


def test_stub_domains_each_get_their_own_upstreams() -> None:
    config = read("gke-stub-domains.Corefile")
    forwards = {b.zones: b.plugins["forward"] for b in config.blocks}
    assert {zones: [str(u.addr) for u in f.to] for zones, f in forwards.items()
            if isinstance(f, ForwardConfig)} == {
        (".",): ["8.8.8.8:53", "8.8.4.4:53"],
        ("corp.example.",): ["10.150.0.1:53"],
        ("acme.local.",): ["10.150.0.2:5353", "[fd00::53]:53"],
    }  # fmt: skip


def test_reverse_cidr_keys_and_log_names() -> None:
    (server,) = read("reverse-cidr.Corefile").blocks
    assert (server.zones, server.port) == (("example.org.", "10.in-addr.arpa."), 1053)
    log = server.plugins["log"]
    assert isinstance(log, LogConfig)
    assert [r.names for r in log.rules] == [("10.in-addr.arpa.",), ("example.org.",)]


def test_k3s_node_hosts_file_with_its_ttl_reload_and_fallthrough() -> None:
    (server,) = read("k3s.Corefile").blocks
    assert server.plugins["hosts"] == HostsConfig(
        path=Path("/etc/coredns/NodeHosts"),
        zones=(".",),
        ttl=60,
        reload=15.0,
        fallthrough=(),
        origin=Origin(str(DATA / "k3s.Corefile"), 9),
    )


def test_minikube_host_entry_is_an_inline_hosts_line() -> None:
    (server,) = read("minikube-hosts.Corefile").blocks
    hosts = server.plugins["hosts"]
    assert isinstance(hosts, HostsConfig)
    assert (hosts.path, hosts.inline, hosts.fallthrough) == (
        Path("/etc/hosts"),
        ("192.168.49.1 host.minikube.internal",),
        (),
    )


def test_rewrite_rules_in_line_and_block_form_keep_their_order() -> None:
    (server,) = read("rewrite.Corefile").blocks
    rewrite = server.plugins["rewrite"]
    assert isinstance(rewrite, RewriteConfig)
    first, second = (rule.action for rule in rewrite.rules)
    assert first == RewriteName(
        NameMatch(RewriteMatch.REGEX, r"(.*)\.mycompany\.internal"),
        "{1}.default.svc.cluster.local.",
    )
    assert second == RewriteName(
        NameMatch(RewriteMatch.EXACT, "api.example.com."),
        "api.default.svc.cluster.local.",
        auto=True,
        answers=(AnswerRule("name", "api.default.svc.cluster.local", "api.example.com."),),
    )


def test_nodelocaldns_forwards_the_cluster_zones_over_tcp() -> None:
    forwards = {b.zones: b.plugins["forward"] for b in read("nodelocaldns.Corefile").blocks}
    tcp = {zones: f.force_tcp for zones, f in forwards.items() if isinstance(f, ForwardConfig)}
    assert tcp == {("cluster.local.",): True, ("in-addr.arpa.",): True, (".",): False}


def test_dns_over_tls_upstreams_with_one_server_name() -> None:
    (server,) = read("dot-upstream.Corefile").blocks
    forward = server.plugins["forward"]
    assert isinstance(forward, ForwardConfig)
    assert forward.to == (
        Upstream(HostPort("1.1.1.1", 853), tls=True),  # RFC 7858: port 853 by default
        Upstream(HostPort("1.0.0.1", 853), tls=True),
    )
    assert (forward.tls_servername, forward.health_check) == ("cloudflare-dns.com", 5.0)
