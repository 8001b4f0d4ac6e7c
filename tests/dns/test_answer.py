"""Answers of the cluster zone and the reverse trees, case by case against docs/rules.md.

Every case's id starts with the spec ids it checks. Expected records are zone-file lines
written from the spec and RFCs. The table runs twice: against `StaticView` and against a
real `kdns.cluster.index.Index` fed the same objects, so the two views must agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.cluster.index import Index
from kdns.cluster.model import ClusterObject, Kind, Namespace, Replace
from kdns.config.settings import PodMode
from kdns.dns.answer import AnswerConfig, answer, served_zone
from kdns.dns.records import Question, Rcode, Reply, RType
from kdns.dns.view import ClusterView
from tests.builders import StaticView, ep, eps, pod, replace_events, svc

ZONE = "cluster.local."
TTL = 5
CONFIG = AnswerConfig(zone="cluster.local", ttl=TTL, pods=PodMode.INSECURE)

SOA = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
SOA4 = "in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
SOA6 = "ip6.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"

# RFC 3596 §2.5 nibble name of fd00:10::3 (fd00:0010:0000:...:0003), written out by hand.
DUAL_V6_PTR = "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa."


def nibbles(address: str) -> str:
    return ip_address(address).reverse_pointer + "."


CLUSTER: list[ClusterObject] = [
    Namespace("testns"),
    Namespace("kube-system"),
    Namespace("default"),
    Namespace("empty-ns"),
    # E1
    svc("kubernetes", "default", ips=["10.96.0.1"], ports=["https/tcp/443"]),
    # NS glue (D7)
    svc(
        "kube-dns",
        "kube-system",
        ips=["10.96.0.10"],
        ports=["dns/udp/53", "dns-tcp/tcp/53", "metrics/tcp/9153"],
    ),
    # ClusterIP with endpoints (N6, N7)
    svc("svc1", ips=["10.0.0.1"], ports=["http/tcp/80"]),
    eps(
        "svc1-abc",
        "svc1",
        endpoints=[ep("10.244.0.5"), ep("10.244.0.6", hostname="named")],
        ports=["http/tcp/8080"],
    ),
    svc("svc2", ips=["10.0.0.2"], ports=["http/tcp/80"]),
    eps("svc2-abc", "svc2", endpoints=[ep("10.244.0.5")], ports=["http/tcp/8080"]),
    # Dual-stack, IPv6-only, several ports, no ports
    svc("dual", ips=["10.0.0.3", "fd00:10::3"], ports=["http/tcp/80"]),
    svc("v6only", ips=["fd00:10::4"], ports=["dns/udp/53"]),
    svc(
        "multi", ips=["10.0.0.5"], ports=["http/tcp/80", "https/tcp/443", "dns/udp/53", "/tcp/8080"]
    ),
    svc("noports", ips=["10.0.0.7"]),
    # Headless over three slices: a duplicate address across slices, a not-ready endpoint,
    # two addresses sharing one hostname, an IPv6 slice; endpoint ports differ (Conflict 2).
    svc("hdls", headless=True, ports=["http/tcp/80", "/tcp/9000"]),
    eps(
        "hdls-a",
        "hdls",
        endpoints=[
            ep("172.0.0.2"),
            ep("172.0.0.3", ready=False),
            ep("172.0.0.4", hostname="dup"),
            ep("172.0.0.5", hostname="dup"),
        ],
        ports=["http/tcp/8080", "/tcp/9090"],
    ),
    eps(
        "hdls-b",
        "hdls",
        endpoints=[ep("172.0.0.2"), ep("172.0.0.6", hostname="web-0")],
        ports=["http/tcp/8080", "/tcp/9090"],
    ),
    eps("hdls-v6", "hdls", endpoints=[ep("fd00:244::2")], ports=["http/tcp/8080", "/tcp/9090"]),
    svc("hdls-v4", headless=True, ports=["http/tcp/80"]),
    eps(
        "hdls-v4-a",
        "hdls-v4",
        endpoints=[ep("172.0.1.1", hostname="only")],
        ports=["http/tcp/8080"],
    ),
    svc("hdls-none", headless=True, ports=["http/tcp/80"]),
    eps(
        "hdls-none-a",
        "hdls-none",
        endpoints=[ep("172.0.2.1", ready=False)],
        ports=["http/tcp/8080"],
    ),
    svc("hdls-empty", headless=True, ports=["http/tcp/80"]),
    svc("hdls-noports", headless=True),
    eps("hdls-noports-a", "hdls-noports", endpoints=[ep("172.0.3.1")]),
    # Headless whose slice lists no ports: R22 falls back to the Service's port.
    svc("hdls-portless-slice", headless=True, ports=["http/tcp/80"]),
    eps("hdls-portless-slice-a", "hdls-portless-slice", endpoints=[ep("172.0.4.1")]),
    # ExternalName (R26, R27, D5)
    svc("ext", external="ext.interwebs.test"),
    svc("ext-in", external="svc1.testns.svc.cluster.local"),
    svc("ext-chain", external="ext-in.testns.svc.cluster.local"),
    svc("ext-loop", external="ext-loop.testns.svc.cluster.local"),
    svc("ext-missing", external="nosvc.testns.svc.cluster.local"),
    svc("ext-ip", external="1.2.3.4"),
    # E2, E3, E4
    svc("dns-test-service", headless=True, ports=["http/tcp/80"]),
    eps(
        "dns-test-service-x",
        "dns-test-service",
        endpoints=[ep("10.244.1.10")],
        ports=["http/tcp/80"],
    ),
    svc("test-service-2", ips=["10.0.0.20"], ports=["http/tcp/80"]),
    svc("dns-test-service-2", headless=True, ports=["http/tcp/80"]),
    eps(
        "dns-test-service-2-x",
        "dns-test-service-2",
        endpoints=[ep("10.244.1.11", hostname="dns-querier-2")],
        ports=["http/tcp/80"],
    ),
    # An endpoint slice whose Service is gone: no PTR points at a missing Service.
    eps("orphan-x", "orphan", endpoints=[ep("10.244.9.9")], ports=["http/tcp/80"]),
    pod("pod-a", ips=["10.244.0.5"]),
]


@dataclass(frozen=True)
class Case:
    id: str
    qname: str
    qtype: str
    rcode: str = "NOERROR"
    answer: Sequence[str] = ()
    authority: Sequence[str] = ()
    additional: Sequence[str] | None = None  # None: not checked
    fallthrough: bool = False
    chase: str | None = None


def nx(id: str, qname: str, qtype: str = "A", soa: str = SOA, **kw: object) -> Case:
    return Case(id, qname, qtype, "NXDOMAIN", authority=[soa], **kw)  # type: ignore[arg-type]


def nodata(id: str, qname: str, qtype: str = "A", soa: str = SOA) -> Case:
    return Case(id, qname, qtype, authority=[soa])


S = "testns.svc.cluster.local."

CASES = [
    # ---- R2 dns-version
    Case(
        "R2 dns-version TXT",
        "dns-version.cluster.local.",
        "TXT",
        answer=['dns-version.cluster.local. 28800 IN TXT "1.1.0"'],
    ),
    nodata("R2 D1 dns-version A is NODATA (Conflict 5)", "dns-version.cluster.local."),
    nx("D1 below dns-version", "x.dns-version.cluster.local.", "TXT"),
    # ---- R8 R9 ClusterIP
    Case(
        "R8 E1 clusterip A",
        "kubernetes.default.svc.cluster.local.",
        "A",
        answer=["kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"],
    ),
    Case("R8 clusterip A", f"svc1.{S}", "A", answer=[f"svc1.{S} 5 IN A 10.0.0.1"]),
    nodata("R8 D1 v4-only clusterip AAAA is NODATA", f"svc1.{S}", "AAAA"),
    Case(
        "R9 ipv6 clusterip AAAA", f"v6only.{S}", "AAAA", answer=[f"v6only.{S} 5 IN AAAA fd00:10::4"]
    ),
    nodata("R9 D1 v6-only clusterip A is NODATA", f"v6only.{S}", "A"),
    Case("R9 N12 dual-stack A", f"dual.{S}", "A", answer=[f"dual.{S} 5 IN A 10.0.0.3"]),
    Case("R9 N12 dual-stack AAAA", f"dual.{S}", "AAAA", answer=[f"dual.{S} 5 IN AAAA fd00:10::3"]),
    Case("R8 no ports still has A", f"noports.{S}", "A", answer=[f"noports.{S} 5 IN A 10.0.0.7"]),
    nodata("D1 clusterip TXT is NODATA", f"svc1.{S}", "TXT"),
    nodata("D1 clusterip MX is NODATA", f"svc1.{S}", "MX"),
    nodata("D1 clusterip CNAME is NODATA", f"svc1.{S}", "CNAME"),
    nodata("D1 clusterip PTR is NODATA", f"svc1.{S}", "PTR"),
    nodata("D1 NS below the apex is NODATA", f"svc1.{S}", "NS"),
    nodata("D1 SOA below the apex is NODATA", f"svc1.{S}", "SOA"),
    nx("D1 unknown service", f"nosvc.{S}"),
    nx("D1 unknown namespace", "svc1.nons.svc.cluster.local."),
    # ---- R5 D4 case-insensitivity (owner names may be lower-case)
    Case(
        "R5 D4 mixed-case clusterip A",
        "SVC1.TestNS.Svc.Cluster.Local.",
        "A",
        answer=[f"svc1.{S} 5 IN A 10.0.0.1"],
    ),
    Case(
        "R5 mixed-case SRV",
        f"_HTTP._TCP.svc1.{S}",
        "SRV",
        answer=[f"_http._tcp.svc1.{S} 5 IN SRV 0 100 80 svc1.{S}"],
    ),
    # ---- R10 R11 R12 R13 SRV, ClusterIP
    Case(
        "R10 R13 E2 clusterip SRV",
        f"_http._tcp.test-service-2.{S}",
        "SRV",
        answer=[f"_http._tcp.test-service-2.{S} 5 IN SRV 0 100 80 test-service-2.{S}"],
        additional=[f"test-service-2.{S} 5 IN A 10.0.0.20"],
    ),
    Case(
        "R10 R13 dual-stack SRV has A and AAAA glue",
        f"_http._tcp.dual.{S}",
        "SRV",
        answer=[f"_http._tcp.dual.{S} 5 IN SRV 0 100 80 dual.{S}"],
        additional=[f"dual.{S} 5 IN A 10.0.0.3", f"dual.{S} 5 IN AAAA fd00:10::3"],
    ),
    Case(
        "R10 udp port SRV",
        f"_dns._udp.multi.{S}",
        "SRV",
        answer=[f"_dns._udp.multi.{S} 5 IN SRV 0 100 53 multi.{S}"],
        additional=[f"multi.{S} 5 IN A 10.0.0.5"],
    ),
    Case(
        "R10 kube-dns dns-tcp SRV",
        "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local.",
        "SRV",
        answer=[
            "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 100 53 "
            "kube-dns.kube-system.svc.cluster.local."
        ],
    ),
    nx("R10 wrong protocol", f"_http._udp.svc1.{S}", "SRV"),
    nx("R10 unknown port name", f"_nope._tcp.svc1.{S}", "SRV"),
    nx("R12 unnamed ports have no SRV name", f"_._tcp.multi.{S}", "SRV"),
    nodata("D1 Conflict 5 SRV name asked A is NODATA, not the ClusterIP", f"_http._tcp.svc1.{S}"),
    nodata("D3 Conflict 5 _tcp is an empty non-terminal", f"_tcp.svc1.{S}", "SRV"),
    nodata("D3 _udp under multi", f"_udp.multi.{S}", "A"),
    nx("D3 _udp has nothing below on svc1", f"_udp.svc1.{S}", "SRV"),
    nx("D3 no SRV below a service without ports", f"_tcp.noports.{S}", "SRV"),
    nx("D1 port without underscore", f"http._tcp.svc1.{S}", "SRV"),
    nx("D1 proto without underscore", f"_http.tcp.svc1.{S}", "SRV"),
    nx("D1 extra label above SRV name", f"x._http._tcp.svc1.{S}", "SRV"),
    Case(
        "N5 bare SRV: one per port, unnamed included",
        f"multi.{S}",
        "SRV",
        answer=[
            f"multi.{S} 5 IN SRV 0 25 80 multi.{S}",
            f"multi.{S} 5 IN SRV 0 25 443 multi.{S}",
            f"multi.{S} 5 IN SRV 0 25 53 multi.{S}",
            f"multi.{S} 5 IN SRV 0 25 8080 multi.{S}",
        ],
        additional=[f"multi.{S} 5 IN A 10.0.0.5"],
    ),
    nodata("N5 services without ports: SRV is NODATA", f"noports.{S}", "SRV"),
    # ---- R16-R19 headless A/AAAA
    Case(
        "R17 R6 headless A: ready only, merged over slices, deduped",
        f"hdls.{S}",
        "A",
        answer=[
            f"hdls.{S} 5 IN A 172.0.0.2",
            f"hdls.{S} 5 IN A 172.0.0.4",
            f"hdls.{S} 5 IN A 172.0.0.5",
            f"hdls.{S} 5 IN A 172.0.0.6",
        ],
    ),
    Case(
        "R18 N12 headless AAAA from the IPv6 slice",
        f"hdls.{S}",
        "AAAA",
        answer=[f"hdls.{S} 5 IN AAAA fd00:244::2"],
    ),
    Case(
        "R17 E2 headless A",
        f"dns-test-service.{S}",
        "A",
        answer=[f"dns-test-service.{S} 5 IN A 10.244.1.10"],
    ),
    Case(
        "R17 E4 headless A",
        f"dns-test-service-2.{S}",
        "A",
        answer=[f"dns-test-service-2.{S} 5 IN A 10.244.1.11"],
    ),
    nodata("R19 D1 ready IPv4 only: AAAA is NODATA", f"hdls-v4.{S}", "AAAA"),
    nx("R19 R6 no ready endpoint: NXDOMAIN", f"hdls-none.{S}"),
    nx("R19 no ready endpoint: AAAA NXDOMAIN too", f"hdls-none.{S}", "AAAA"),
    nx("R19 no ready endpoint: SRV NXDOMAIN", f"_http._tcp.hdls-none.{S}", "SRV"),
    nx("R19 no ready endpoint: _tcp NXDOMAIN", f"_tcp.hdls-none.{S}", "SRV"),
    nx("R19 no slices at all: NXDOMAIN", f"hdls-empty.{S}"),
    nx("R19 nothing below: endpoint label NXDOMAIN", f"172-0-2-1.hdls-none.{S}"),
    # ---- R7 R20 R21 endpoint names
    Case(
        "R20 R7 dashed-IP label",
        f"172-0-0-2.hdls.{S}",
        "A",
        answer=[f"172-0-0-2.hdls.{S} 5 IN A 172.0.0.2"],
    ),
    Case(
        "R20 addresses sharing a hostname get one A each",
        f"dup.hdls.{S}",
        "A",
        answer=[f"dup.hdls.{S} 5 IN A 172.0.0.4", f"dup.hdls.{S} 5 IN A 172.0.0.5"],
    ),
    Case(
        "R20 hostname label from the second slice",
        f"web-0.hdls.{S}",
        "A",
        answer=[f"web-0.hdls.{S} 5 IN A 172.0.0.6"],
    ),
    Case(
        "R20 E3 pod hostname+subdomain",
        f"dns-querier-2.dns-test-service-2.{S}",
        "A",
        answer=[f"dns-querier-2.dns-test-service-2.{S} 5 IN A 10.244.1.11"],
    ),
    Case(
        "R21 R7 IPv6 dashed label",
        f"fd00-244--2.hdls.{S}",
        "AAAA",
        answer=[f"fd00-244--2.hdls.{S} 5 IN AAAA fd00:244::2"],
    ),
    nodata("R21 D1 IPv4 endpoint asked AAAA", f"web-0.hdls.{S}", "AAAA"),
    nx("R6 not-ready endpoint has no name", f"172-0-0-3.hdls.{S}"),
    nx("R20 unknown label", f"nobody.hdls.{S}"),
    Case(
        "R5 mixed-case endpoint label",
        f"WEB-0.Hdls.{S}",
        "A",
        answer=[f"web-0.hdls.{S} 5 IN A 172.0.0.6"],
    ),
    Case(
        "N6 endpoint name of a ClusterIP service",
        f"10-244-0-5.svc1.{S}",
        "A",
        answer=[f"10-244-0-5.svc1.{S} 5 IN A 10.244.0.5"],
    ),
    Case(
        "N6 hostname endpoint of a ClusterIP service",
        f"named.svc1.{S}",
        "A",
        answer=[f"named.svc1.{S} 5 IN A 10.244.0.6"],
    ),
    nx("D1 extra labels below an endpoint name", f"a.web-0.hdls.{S}"),
    # ---- R22 R23 headless SRV (Conflict 2: the endpoint port)
    Case(
        "R22 R23 Conflict 2 headless SRV, deduped, glue per target",
        f"_http._tcp.hdls.{S}",
        "SRV",
        answer=[
            f"_http._tcp.hdls.{S} 5 IN SRV 0 25 8080 172-0-0-2.hdls.{S}",
            f"_http._tcp.hdls.{S} 5 IN SRV 0 25 8080 dup.hdls.{S}",
            f"_http._tcp.hdls.{S} 5 IN SRV 0 25 8080 web-0.hdls.{S}",
            f"_http._tcp.hdls.{S} 5 IN SRV 0 25 8080 fd00-244--2.hdls.{S}",
        ],
        additional=[
            f"172-0-0-2.hdls.{S} 5 IN A 172.0.0.2",
            f"dup.hdls.{S} 5 IN A 172.0.0.4",
            f"dup.hdls.{S} 5 IN A 172.0.0.5",
            f"web-0.hdls.{S} 5 IN A 172.0.0.6",
            f"fd00-244--2.hdls.{S} 5 IN AAAA fd00:244::2",
        ],
    ),
    Case(
        "R22 E2 headless SRV",
        f"_http._tcp.dns-test-service.{S}",
        "SRV",
        answer=[
            f"_http._tcp.dns-test-service.{S} 5 IN SRV 0 100 80 10-244-1-10.dns-test-service.{S}"
        ],
        additional=[f"10-244-1-10.dns-test-service.{S} 5 IN A 10.244.1.10"],
    ),
    Case(
        "R22 slice without ports: the Service port",
        f"_http._tcp.hdls-portless-slice.{S}",
        "SRV",
        answer=[
            f"_http._tcp.hdls-portless-slice.{S} 5 IN SRV 0 100 80 "
            f"172-0-4-1.hdls-portless-slice.{S}"
        ],
    ),
    Case(
        "N5 bare headless SRV: endpoints x ports, unnamed included",
        f"hdls-v4.{S}",
        "SRV",
        answer=[f"hdls-v4.{S} 5 IN SRV 0 100 8080 only.hdls-v4.{S}"],
        additional=[f"only.hdls-v4.{S} 5 IN A 172.0.1.1"],
    ),
    Case(
        "N5 bare headless SRV over two ports",
        f"hdls.{S}",
        "SRV",
        answer=[
            f"hdls.{S} 5 IN SRV 0 12 {p} {t}.hdls.{S}"
            for p in (8080, 9090)
            for t in ("172-0-0-2", "dup", "web-0", "fd00-244--2")
        ],
    ),
    nodata("N5 headless without ports: SRV NODATA", f"hdls-noports.{S}", "SRV"),
    Case(
        "R17 headless without ports still has A",
        f"hdls-noports.{S}",
        "A",
        answer=[f"hdls-noports.{S} 5 IN A 172.0.3.1"],
    ),
    nx("R12 headless without ports has no _tcp", f"_tcp.hdls-noports.{S}", "SRV"),
    # ---- R26 R27 D5 ExternalName
    Case(
        "R26 E5 ExternalName CNAME",
        f"ext.{S}",
        "CNAME",
        answer=[f"ext.{S} 5 IN CNAME ext.interwebs.test."],
    ),
    Case(
        "R26 R27 ExternalName A: CNAME, target chased upstream",
        f"ext.{S}",
        "A",
        answer=[f"ext.{S} 5 IN CNAME ext.interwebs.test."],
        chase="ext.interwebs.test.",
    ),
    Case(
        "D5 N11 ExternalName SRV answers the CNAME (Conflict 5)",
        f"ext.{S}",
        "SRV",
        answer=[f"ext.{S} 5 IN CNAME ext.interwebs.test."],
        chase="ext.interwebs.test.",
    ),
    Case(
        "D5 N11 ExternalName TXT answers the CNAME",
        f"ext.{S}",
        "TXT",
        answer=[f"ext.{S} 5 IN CNAME ext.interwebs.test."],
        chase="ext.interwebs.test.",
    ),
    Case(
        "D5 in-zone target followed",
        f"ext-in.{S}",
        "A",
        answer=[f"ext-in.{S} 5 IN CNAME svc1.{S}", f"svc1.{S} 5 IN A 10.0.0.1"],
    ),
    Case(
        "D5 Conflict 5 in-zone target without AAAA keeps the CNAME (NODATA)",
        f"ext-in.{S}",
        "AAAA",
        answer=[f"ext-in.{S} 5 IN CNAME svc1.{S}"],
        authority=[SOA],
    ),
    Case(
        "D5 chain of two CNAMEs",
        f"ext-chain.{S}",
        "A",
        answer=[
            f"ext-chain.{S} 5 IN CNAME ext-in.{S}",
            f"ext-in.{S} 5 IN CNAME svc1.{S}",
            f"svc1.{S} 5 IN A 10.0.0.1",
        ],
    ),
    Case(
        "D5 CNAME query is not followed",
        f"ext-chain.{S}",
        "CNAME",
        answer=[f"ext-chain.{S} 5 IN CNAME ext-in.{S}"],
    ),
    Case(
        "D5 self loop stops", f"ext-loop.{S}", "A", answer=[f"ext-loop.{S} 5 IN CNAME ext-loop.{S}"]
    ),
    Case(
        "D5 RFC 6604 in-zone target missing: NXDOMAIN with the CNAME",
        f"ext-missing.{S}",
        "A",
        "NXDOMAIN",
        answer=[f"ext-missing.{S} 5 IN CNAME nosvc.{S}"],
        authority=[SOA],
    ),
    nx("N11 IP-looking ExternalName: NXDOMAIN (CoreDNS)", f"ext-ip.{S}"),
    nx("N11 names below an ExternalName", f"x.ext.{S}"),
    nx("N11 SRV names below an ExternalName", f"_http._tcp.ext.{S}", "SRV"),
    nx("N11 _tcp below an ExternalName", f"_tcp.ext.{S}", "SRV"),
    # ---- D3 empty non-terminals, apex, NS, SOA (D7)
    nodata("D3 svc.<zone>", "svc.cluster.local."),
    nodata("D3 <ns>.svc.<zone> with Services", S, "A"),
    nx("D3 namespace without Services", "empty-ns.svc.cluster.local."),
    nx("D3 unknown namespace", "nons.svc.cluster.local."),
    nodata("D3 dns.<zone>", "dns.cluster.local."),
    nodata("D7 apex A is NODATA", "cluster.local."),
    nodata("D7 apex TXT is NODATA (Conflict 5)", "cluster.local.", "TXT"),
    Case("D7 apex SOA", "cluster.local.", "SOA", answer=[SOA]),
    Case(
        "D7 apex NS with kube-dns glue",
        "cluster.local.",
        "NS",
        answer=["cluster.local. 5 IN NS ns.dns.cluster.local."],
        additional=["ns.dns.cluster.local. 5 IN A 10.96.0.10"],
    ),
    Case(
        "D7 ns.dns A",
        "ns.dns.cluster.local.",
        "A",
        answer=["ns.dns.cluster.local. 5 IN A 10.96.0.10"],
    ),
    nodata("D7 ns.dns AAAA without IPv6", "ns.dns.cluster.local.", "AAAA"),
    nx("D1 unknown second-level label", "foo.cluster.local."),
    nx("D1 unknown label under dns", "x.dns.cluster.local."),
    nx("D1 empty label", f"svc1..{S}"),
    nx("D1 wildcards are not supported", f"*.{S}"),
    nx("D1 any-wildcard is not supported", "any.any.svc.cluster.local."),
    # ---- E7 wrong search expansions
    nx("E7 <svc>.<ns>.<ns>.svc", "dns-test-service.testns.testns.svc.cluster.local."),
    nx("E7 <svc>.<ns>.svc.<ns>.svc", f"dns-test-service.testns.svc.{S}"),
    nx("E7 <svc>.svc.<zone>", "dns-test-service.svc.cluster.local."),
    nx("E7 <svc>.<zone>", "dns-test-service.cluster.local."),
    nx("E7 <svc>.<ns>.<zone>", "dns-test-service.testns.cluster.local."),
    nx(
        "E7 _http._tcp.<svc>.<ns>.svc.<ns>.svc",
        f"_http._tcp.dns-test-service.testns.svc.{S}",
        "SRV",
    ),
    # ---- PTR R14 R15 R24 R25 N7
    Case(
        "R14 E2 ClusterIP PTR",
        "20.0.0.10.in-addr.arpa.",
        "PTR",
        answer=[f"20.0.0.10.in-addr.arpa. 5 IN PTR test-service-2.{S}"],
    ),
    Case(
        "R14 ClusterIP PTR",
        "1.0.0.10.in-addr.arpa.",
        "PTR",
        answer=[f"1.0.0.10.in-addr.arpa. 5 IN PTR svc1.{S}"],
    ),
    Case("R15 IPv6 ClusterIP PTR", DUAL_V6_PTR, "PTR", answer=[f"{DUAL_V6_PTR} 5 IN PTR dual.{S}"]),
    Case(
        "R24 headless hostname PTR",
        "4.0.0.172.in-addr.arpa.",
        "PTR",
        answer=[f"4.0.0.172.in-addr.arpa. 5 IN PTR dup.hdls.{S}"],
    ),
    Case(
        "R24 Conflict 3 PTR of an endpoint without hostname",
        "2.0.0.172.in-addr.arpa.",
        "PTR",
        answer=[f"2.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-2.hdls.{S}"],
    ),
    Case(
        "R25 IPv6 endpoint PTR",
        nibbles("fd00:244::2"),
        "PTR",
        answer=[f"{nibbles('fd00:244::2')} 5 IN PTR fd00-244--2.hdls.{S}"],
    ),
    Case(
        "N7 endpoint of two services: one PTR each",
        "5.0.244.10.in-addr.arpa.",
        "PTR",
        answer=[
            f"5.0.244.10.in-addr.arpa. 5 IN PTR 10-244-0-5.svc1.{S}",
            f"5.0.244.10.in-addr.arpa. 5 IN PTR 10-244-0-5.svc2.{S}",
        ],
    ),
    Case(
        "R5 upper-case ip6.arpa nibbles",
        DUAL_V6_PTR.upper(),
        "PTR",
        answer=[f"{DUAL_V6_PTR} 5 IN PTR dual.{S}"],
    ),
    nodata("D1 known address asked A is NODATA", "1.0.0.10.in-addr.arpa.", "A", SOA4),
    nx(
        "R6 not-ready endpoint has no PTR", "3.0.0.172.in-addr.arpa.", "PTR", SOA4, fallthrough=True
    ),
    nx("N7 unknown address falls through", "9.9.9.9.in-addr.arpa.", "PTR", SOA4, fallthrough=True),
    nx(
        "N7 no PTR to a Service that is gone",
        "9.9.244.10.in-addr.arpa.",
        "PTR",
        SOA4,
        fallthrough=True,
    ),
    nx("N7 unknown IPv6 address", nibbles("fd00::99"), "PTR", SOA6, fallthrough=True),
    nodata("D3 partial IPv4 reverse name with addresses below", "0.10.in-addr.arpa.", "PTR", SOA4),
    nodata("D3 one-octet reverse name", "172.in-addr.arpa.", "PTR", SOA4),
    nodata("D3 three-octet reverse name", "0.0.172.in-addr.arpa.", "PTR", SOA4),
    nx(
        "D3 partial reverse name with nothing below",
        "99.in-addr.arpa.",
        "PTR",
        SOA4,
        fallthrough=True,
    ),
    nodata("D3 partial IPv6 reverse name", "d.f.ip6.arpa.", "PTR", SOA6),
    nodata("D3 31-nibble IPv6 reverse name", DUAL_V6_PTR[2:], "PTR", SOA6),
    nx("D3 partial IPv6 with nothing below", "1.ip6.arpa.", "PTR", SOA6, fallthrough=True),
    nx("D1 leading zero octet", "01.0.0.10.in-addr.arpa.", "PTR", SOA4, fallthrough=True),
    nx("D1 octet above 255", "256.0.0.10.in-addr.arpa.", "PTR", SOA4, fallthrough=True),
    nx("D1 non-decimal octet", "a.0.0.10.in-addr.arpa.", "PTR", SOA4, fallthrough=True),
    nx(
        "D1 five labels under in-addr.arpa",
        "1.1.0.0.10.in-addr.arpa.",
        "PTR",
        SOA4,
        fallthrough=True,
    ),
    nx("D1 RFC 2317 style label", "0/25.0.0.10.in-addr.arpa.", "PTR", SOA4, fallthrough=True),
    nx("D1 two-character nibble", "10.ip6.arpa.", "PTR", SOA6, fallthrough=True),
    nx("D1 non-hex nibble", "g.ip6.arpa.", "PTR", SOA6, fallthrough=True),
    nx("D1 33 nibbles", "0." + DUAL_V6_PTR, "PTR", SOA6, fallthrough=True),
    Case("D7 in-addr.arpa SOA", "in-addr.arpa.", "SOA", answer=[SOA4]),
    Case("D7 ip6.arpa SOA", "ip6.arpa.", "SOA", answer=[SOA6]),
    Case(
        "D7 in-addr.arpa NS",
        "in-addr.arpa.",
        "NS",
        answer=["in-addr.arpa. 5 IN NS ns.dns.cluster.local."],
        additional=["ns.dns.cluster.local. 5 IN A 10.96.0.10"],
    ),
    nodata("D7 reverse apex PTR", "in-addr.arpa.", "PTR", SOA4),
    # ---- P1 E6 pods (insecure, the default)
    Case(
        "P1 E6 pod A",
        "10-244-0-99.testns.pod.cluster.local.",
        "A",
        answer=["10-244-0-99.testns.pod.cluster.local. 5 IN A 10.244.0.99"],
    ),
    Case(
        "P1 E6 pod A in a namespace without services",
        "1-2-3-4.empty-ns.pod.cluster.local.",
        "A",
        answer=["1-2-3-4.empty-ns.pod.cluster.local. 5 IN A 1.2.3.4"],
    ),
    Case(
        "P1 E6 IPv6 pod AAAA",
        "fd00-244--5.testns.pod.cluster.local.",
        "AAAA",
        answer=["fd00-244--5.testns.pod.cluster.local. 5 IN AAAA fd00:244::5"],
    ),
    Case(
        "P1 IPv6 pod with trailing 0 label",
        "fd00--0.testns.pod.cluster.local.",
        "AAAA",
        answer=["fd00--0.testns.pod.cluster.local. 5 IN AAAA fd00::"],
    ),
    nodata("P1 D1 IPv4 pod asked AAAA", "10-244-0-99.testns.pod.cluster.local.", "AAAA"),
    nx("P1 unknown namespace", "10-244-0-99.nons.pod.cluster.local."),
    nx("P1 label that is no IP", "foo.testns.pod.cluster.local."),
    nx("P1 octet above 255", "10-244-0-256.testns.pod.cluster.local."),
    nx("P1 two dashes is neither family", "10-244-0.testns.pod.cluster.local."),
    nx("P1 extra labels below a pod name", "x.10-244-0-99.testns.pod.cluster.local."),
    nodata("P1 D3 <ns>.pod.<zone>", "testns.pod.cluster.local."),
    nx("P1 D3 unknown namespace under pod", "nons.pod.cluster.local."),
    nodata("P1 D3 pod.<zone>", "pod.cluster.local."),
    # ---- N10 other types
    nodata("N10 HINFO on a service", f"svc1.{S}", "HINFO"),
    nx("N10 HINFO on a missing name", f"nosvc.{S}", "HINFO"),
]


def _reply_lines(reply: Reply) -> tuple[list[str], list[str], list[str]]:
    return (
        sorted(map(str, reply.answer)),
        sorted(map(str, reply.authority)),
        sorted(map(str, reply.additional)),
    )


def static_view(objects: list[ClusterObject] = CLUSTER) -> StaticView:
    return StaticView(objects)


def index_view(objects: list[ClusterObject] = CLUSTER) -> Index:
    index = Index(required=(Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE), clock=lambda: 1.0)
    for event in replace_events(objects):
        index.apply(event)
    return index


VIEWS: dict[str, Callable[[], ClusterView]] = {"static": static_view, "index": index_view}


@pytest.fixture(params=sorted(VIEWS))
def view(request: pytest.FixtureRequest) -> ClusterView:
    view: ClusterView = VIEWS[request.param]()
    return view


def ask(view: ClusterView, qname: str, qtype: str, config: AnswerConfig = CONFIG) -> Reply:
    return answer(Question(qname, RType[qtype]), view, config=config)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_answer(case: Case, view: ClusterView) -> None:
    reply = ask(view, case.qname, case.qtype)
    answers, authority, additional = _reply_lines(reply)
    assert reply.rcode == Rcode[case.rcode]
    assert answers == sorted(case.answer)
    assert authority == sorted(case.authority)
    if case.additional is not None:
        assert additional == sorted(case.additional)
    assert reply.authoritative
    assert reply.fallthrough == case.fallthrough
    assert reply.chase == case.chase


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# ---- ordering, TTLs and flags beyond the table --------------------------------------------


def test_cname_comes_before_the_target_records(view: ClusterView) -> None:
    """D5: the CNAME precedes its target's records; chains keep their order."""
    reply = ask(view, f"ext-chain.{S}", "A")
    assert [r.rtype.name for r in reply.answer] == ["CNAME", "CNAME", "A"]
    assert str(reply.answer[0]).startswith(f"ext-chain.{S}")


def test_records_use_the_configured_ttl_and_soa_the_capped_one(view: ClusterView) -> None:
    """N1 TTL rules: records carry the configured ttl; SOA TTL min(ttl, 300), MINIMUM ttl."""
    config = AnswerConfig(zone=ZONE, ttl=600, pods=PodMode.INSECURE)
    assert str(ask(view, f"svc1.{S}", "A", config).answer[0]) == f"svc1.{S} 600 IN A 10.0.0.1"
    soa = ask(view, "cluster.local.", "SOA", config).answer[0]
    assert str(soa) == (
        "cluster.local. 300 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
        "1 7200 1800 86400 600"
    )
    txt = ask(view, "dns-version.cluster.local.", "TXT", config).answer[0]
    assert txt.ttl == 28800


def test_soa_serial_is_the_view_serial() -> None:
    reply = ask(StaticView(CLUSTER, serial=1700000000), "cluster.local.", "SOA")
    assert str(reply.answer[0]).split()[6] == "1700000000"


def test_srv_weight_is_at_least_one() -> None:
    """R11 (CoreDNS): weight floor(100/N), minimum 1, with N = 101 records."""
    objects: list[ClusterObject] = [
        svc("big", headless=True, ports=["http/tcp/80"]),
        eps(
            "big-a",
            "big",
            endpoints=[ep(f"10.1.{i // 200}.{i % 200 + 1}") for i in range(101)],
            ports=["http/tcp/80"],
        ),
    ]
    reply = ask(StaticView(objects), f"_http._tcp.big.{S}", "SRV")
    assert len(reply.answer) == 101
    assert {str(r).split()[5] for r in reply.answer} == {"1"}


def test_srv_weight_for_two_and_six_records() -> None:
    """R11 (CoreDNS): 2 records -> 50, 6 -> 16."""
    for n, weight in ((2, "50"), (6, "16")):
        ports = [f"p{i}/tcp/{1000 + i}" for i in range(n)]
        reply = ask(StaticView([svc("w", ips=["10.0.0.1"], ports=ports)]), f"w.{S}", "SRV")
        assert {str(r).split()[5] for r in reply.answer} == {weight}


def test_ns_glue_falls_back_to_own_addresses_without_kube_dns() -> None:
    """D7: `ns.dns.<zone>` names kube-system/kube-dns, else the server's own addresses."""
    config = AnswerConfig(
        zone=ZONE,
        ttl=TTL,
        pods=PodMode.INSECURE,
        self_addresses=(ip_address("127.0.0.1"), ip_address("::1")),
    )
    view = StaticView([svc("svc1", ips=["10.0.0.1"])])
    reply = ask(view, "cluster.local.", "NS", config)
    assert sorted(map(str, reply.additional)) == [
        "ns.dns.cluster.local. 5 IN A 127.0.0.1",
        "ns.dns.cluster.local. 5 IN AAAA ::1",
    ]
    assert [str(r) for r in ask(view, "ns.dns.cluster.local.", "AAAA", config).answer] == [
        "ns.dns.cluster.local. 5 IN AAAA ::1"
    ]


def test_zone_spelling_is_normalised() -> None:
    """The configured zone may come with or without the dot, in any case."""
    config = AnswerConfig(zone="Cluster.Local", ttl=TTL, pods=PodMode.INSECURE)
    assert config.zone == "cluster.local."
    reply = ask(static_view(), f"svc1.{S}", "A", config)
    assert [str(r) for r in reply.answer] == [f"svc1.{S} 5 IN A 10.0.0.1"]


def test_other_zone_name_is_served_too() -> None:
    config = AnswerConfig(zone="k8s.example", ttl=TTL, pods=PodMode.INSECURE)
    view = StaticView([svc("svc1", ips=["10.0.0.1"])])
    reply = ask(view, "svc1.testns.svc.k8s.example.", "A", config)
    assert [str(r) for r in reply.answer] == ["svc1.testns.svc.k8s.example. 5 IN A 10.0.0.1"]
    assert ask(view, f"svc1.{S}", "A", config).rcode == Rcode.REFUSED  # D6: not ours


# ---- zone transfers, ANY, names outside the zones ------------------------------------------


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
@pytest.mark.parametrize("qname", ["cluster.local.", "in-addr.arpa.", f"svc1.{S}"])
def test_zone_transfers_are_refused(qtype: str, qname: str) -> None:
    """D8: REFUSED is a valid reply to AXFR/IXFR."""
    reply = ask(static_view(), qname, qtype)
    assert reply.rcode == Rcode.REFUSED
    assert reply.answer == ()


def test_names_outside_the_zones_are_refused() -> None:
    """D6: never answer other names from cluster data (the handler routes them)."""
    reply = ask(static_view(), "example.com.", "A")
    assert reply.rcode == Rcode.REFUSED
    assert not reply.authoritative


def test_any_returns_every_record_of_the_name(view: ClusterView) -> None:
    """RFC 8482: our choice is the full (small) set of the name's records."""
    reply = ask(view, f"dual.{S}", "ANY")
    assert sorted(map(str, reply.answer)) == sorted(
        [
            f"dual.{S} 5 IN A 10.0.0.3",
            f"dual.{S} 5 IN AAAA fd00:10::3",
            f"dual.{S} 5 IN SRV 0 100 80 dual.{S}",
        ]
    )
    apex = ask(view, "cluster.local.", "ANY")
    assert sorted(r.rtype.name for r in apex.answer) == ["NS", "SOA"]


def test_any_on_special_names(view: ClusterView) -> None:
    ext = ask(view, f"ext-in.{S}", "ANY")
    assert [str(r) for r in ext.answer] == [f"ext-in.{S} 5 IN CNAME svc1.{S}"]
    assert ext.chase is None
    missing = ask(view, f"nosvc.{S}", "ANY")
    assert (missing.rcode, [str(r) for r in missing.authority]) == (Rcode.NXDOMAIN, [SOA])
    ent = ask(view, "svc.cluster.local.", "ANY")
    assert (ent.rcode, ent.answer, [str(r) for r in ent.authority]) == (Rcode.NOERROR, (), [SOA])


def test_served_zone() -> None:
    assert served_zone("svc1.testns.svc.cluster.local.", zone="cluster.local") == ZONE
    assert served_zone("cluster.local.", zone="cluster.local.") == ZONE
    assert served_zone("1.0.0.10.in-addr.arpa.", zone="cluster.local") == "in-addr.arpa."
    assert served_zone("ip6.arpa.", zone="cluster.local") == "ip6.arpa."
    assert served_zone("example.com.", zone="cluster.local") is None
    assert served_zone("xcluster.local.", zone="cluster.local") is None
    assert served_zone("arpa.", zone="cluster.local") is None


# ---- pods: modes (P1, Conflict 4) ------------------------------------------------------------

POD_NAME = "10-244-0-5.testns.pod.cluster.local."
POD_A = "10-244-0-5.testns.pod.cluster.local. 5 IN A 10.244.0.5"


@pytest.mark.parametrize(
    ("mode", "qname", "rcode", "answer"),
    [
        pytest.param(PodMode.DISABLED, POD_NAME, "NXDOMAIN", [], id="P1 disabled: NXDOMAIN"),
        pytest.param(
            PodMode.DISABLED,
            "testns.pod.cluster.local.",
            "NXDOMAIN",
            [],
            id="P1 disabled: <ns>.pod",
        ),
        pytest.param(PodMode.DISABLED, "pod.cluster.local.", "NXDOMAIN", [], id="P1 disabled: pod"),
        pytest.param(PodMode.INSECURE, POD_NAME, "NOERROR", [POD_A], id="P1 insecure"),
        pytest.param(PodMode.VERIFIED, POD_NAME, "NOERROR", [POD_A], id="P1 verified, pod exists"),
        pytest.param(
            PodMode.VERIFIED,
            "10-244-0-99.testns.pod.cluster.local.",
            "NXDOMAIN",
            [],
            id="P1 verified, no pod with that IP",
        ),
        pytest.param(
            PodMode.VERIFIED,
            "10-244-0-5.kube-system.pod.cluster.local.",
            "NXDOMAIN",
            [],
            id="P1 verified, pod in another namespace",
        ),
    ],
)
def test_pod_modes(
    mode: PodMode, qname: str, rcode: str, answer: list[str], view: ClusterView
) -> None:
    config = AnswerConfig(zone=ZONE, ttl=TTL, pods=mode)
    reply = ask(view, qname, "A", config)
    assert reply.rcode == Rcode[rcode]
    assert [str(r) for r in reply.answer] == answer
    assert [str(r) for r in reply.authority] == ([] if answer else [SOA])


# ---- before the first sync -----------------------------------------------------------------


def unsynced_index() -> Index:
    index = Index(required=(Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE), clock=lambda: 1.0)
    index.apply(Replace(Kind.SERVICE, tuple(o for o in CLUSTER if o.kind is Kind.SERVICE)))
    return index


@pytest.mark.parametrize(
    "make_view",
    [lambda: StaticView(CLUSTER, synced=False), unsynced_index],
    ids=["static", "index"],
)
def test_before_sync_a_miss_is_servfail_not_nxdomain(make_view: Callable[[], ClusterView]) -> None:
    """CoreDNS handler.go, kubernetes/dns#186: no cacheable NXDOMAIN before the first list."""
    view = make_view()
    assert not view.synced
    miss = ask(view, f"nosvc.{S}", "A")
    assert miss.rcode == Rcode.SERVFAIL
    assert not miss.cacheable
    assert [str(r) for r in miss.authority] == [SOA]
    reverse_miss = ask(view, "9.9.9.9.in-addr.arpa.", "PTR")
    assert (reverse_miss.rcode, reverse_miss.fallthrough) == (Rcode.SERVFAIL, True)
    # Positive answers and NODATA are still given.
    hit = ask(view, f"svc1.{S}", "A")
    assert (hit.rcode, [str(r) for r in hit.answer]) == (
        Rcode.NOERROR,
        [f"svc1.{S} 5 IN A 10.0.0.1"],
    )
    assert hit.cacheable
    empty = ask(view, f"svc1.{S}", "AAAA")
    assert (empty.rcode, [str(r) for r in empty.authority]) == (Rcode.NOERROR, [SOA])
    chain = ask(view, f"ext-missing.{S}", "A")
    assert chain.rcode == Rcode.SERVFAIL


def test_replies_with_chase_are_not_cacheable(view: ClusterView) -> None:
    """The handler appends upstream records (R27): that reply depends on upstream."""
    reply = ask(view, f"ext.{S}", "A")
    assert reply.chase == "ext.interwebs.test."
    assert not reply.cacheable


def test_long_cname_chains_are_cut() -> None:
    """D5: in-zone chains are followed, but not forever."""
    objects: list[ClusterObject] = [
        svc(f"c{i}", external=f"c{i + 1}.testns.svc.cluster.local") for i in range(20)
    ]
    reply = ask(StaticView(objects), f"c0.{S}", "A")
    assert reply.rcode == Rcode.NOERROR
    assert 1 < len(reply.answer) < 20
    assert all(r.rtype.name == "CNAME" for r in reply.answer)


def test_index_changes_are_seen_by_the_next_answer() -> None:
    """The Index and answer() agree across updates: a Service appears, then its endpoints."""
    from kdns.cluster.model import Delete, Upsert

    index = index_view([Namespace("testns")])
    assert ask(index, f"late.{S}", "A").rcode == Rcode.NXDOMAIN
    index.apply(Upsert(svc("late", headless=True, ports=["http/tcp/80"])))
    assert ask(index, f"late.{S}", "A").rcode == Rcode.NXDOMAIN  # R19: none ready yet
    index.apply(Upsert(eps("late-a", "late", endpoints=[ep("10.9.0.1")], ports=["http/tcp/81"])))
    assert [str(r) for r in ask(index, f"late.{S}", "A").answer] == [f"late.{S} 5 IN A 10.9.0.1"]
    assert [str(r) for r in ask(index, "1.0.9.10.in-addr.arpa.", "PTR").answer] == [
        f"1.0.9.10.in-addr.arpa. 5 IN PTR 10-9-0-1.late.{S}"
    ]
    index.apply(Delete(Kind.ENDPOINT_SLICE, "testns", "late-a"))
    assert ask(index, f"late.{S}", "A").rcode == Rcode.NXDOMAIN
    assert ask(index, "0.9.10.in-addr.arpa.", "PTR").rcode == Rcode.NXDOMAIN


# ---- RFC 8020 consistency over the whole fixture ---------------------------------------------


def _in_zone_names(reply: Reply) -> set[str]:
    """Owner names and in-zone targets (SRV, PTR, CNAME, NS) of a reply's records."""
    names: set[str] = set()
    for record in (*reply.answer, *reply.additional):
        names.add(record.name)
        target = getattr(record.rdata, "target", None)
        if isinstance(target, str) and served_zone(target, zone=ZONE) is not None:
            names.add(target)
    return names


def _ancestors(name: str) -> list[str]:
    apex = served_zone(name, zone=ZONE)
    assert apex is not None
    labels = name.split(".")
    out = []
    for i in range(1, len(labels)):
        parent = ".".join(labels[i:])
        if len(parent) < len(apex):
            break
        out.append(parent)
    return out


def test_every_ancestor_of_an_existing_name_exists(view: ClusterView) -> None:
    """D3 / RFC 8020: a name with descendants is never NXDOMAIN; every owner and every
    in-zone target the answers mention exists, and so do all their ancestors."""
    names: set[str] = set()
    for case in CASES:
        if case.rcode == "NOERROR":
            names.add(case.qname.lower())
            names |= _in_zone_names(ask(view, case.qname, case.qtype))
    assert len(names) > 50
    for name in sorted(names):
        for candidate in (name, *_ancestors(name)):
            reply = ask(view, candidate, "A")
            assert reply.rcode == Rcode.NOERROR, candidate


def test_nothing_exists_below_an_nxdomain(view: ClusterView) -> None:
    """D3 / RFC 8020: NXDOMAIN means nothing exists at the name or below it."""
    for case in CASES:
        if case.rcode == "NXDOMAIN" and not case.answer:
            for child in ("x.", "_http._tcp.", "1-2-3-4."):
                reply = ask(view, child + case.qname, "A")
                assert reply.rcode == Rcode.NXDOMAIN, child + case.qname


_LABELS = st.sampled_from(
    [
        "svc",
        "pod",
        "testns",
        "svc1",
        "hdls",
        "ext",
        "_http",
        "_tcp",
        "dns",
        "ns",
        "10",
        "0",
        "1-2-3-4",
        "fd00--1",
        "web-0",
        "dup",
        "dns-version",
        "X",
        "in-addr",
        "arpa",
        "ip6",
        "d",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    labels=st.lists(_LABELS, max_size=6),
    suffix=st.sampled_from(["cluster.local.", "in-addr.arpa.", "ip6.arpa."]),
    qtype=st.sampled_from(["A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "NS", "SOA", "ANY", "MX"]),
)
def test_any_name_gets_a_well_formed_reply(labels: list[str], suffix: str, qtype: str) -> None:
    """D1, D2: every in-zone question is answered NOERROR or NXDOMAIN; negative answers
    carry exactly the zone's SOA, and answers never hold the zone SOA by accident."""
    qname = ".".join([*labels, suffix]) if labels else suffix
    reply = ask(STATIC, qname, qtype)
    assert reply.rcode in (Rcode.NOERROR, Rcode.NXDOMAIN)
    assert reply.authoritative
    if reply.rcode == Rcode.NXDOMAIN or not reply.answer:
        assert [r.rtype for r in reply.authority] == [RType.SOA]
        assert reply.authority[0].name == served_zone(qname.lower(), zone=ZONE)
    else:
        assert reply.authority == ()


STATIC = StaticView(CLUSTER)


def test_empty_cluster_has_only_the_fixed_names() -> None:
    """D3 read strictly: `svc.<zone>` exists only while some Service does; the apex,
    dns-version, ns.dns and (pods enabled) pod.<zone> always exist."""
    view = StaticView([])
    assert ask(view, "svc.cluster.local.", "A").rcode == Rcode.NXDOMAIN
    assert ask(view, "cluster.local.", "SOA").answer != ()
    assert ask(view, "dns-version.cluster.local.", "TXT").answer != ()
    assert ask(view, "ns.dns.cluster.local.", "A").rcode == Rcode.NOERROR
    assert ask(view, "pod.cluster.local.", "A").rcode == Rcode.NOERROR
    assert ask(view, "in-addr.arpa.", "SOA").answer != ()
    assert ask(view, "10.in-addr.arpa.", "PTR").rcode == Rcode.NXDOMAIN


@pytest.mark.parametrize(
    ("qname", "fallthrough"),
    [
        ("99.99.96.10.in-addr.arpa.", False),  # inside the service CIDR: ours, final
        ("7.7.244.10.in-addr.arpa.", False),  # inside the pod CIDR
        ("9.9.9.9.in-addr.arpa.", True),  # elsewhere: an upstream may know it
        ("99.96.10.in-addr.arpa.", False),  # a partial name (10.96.99.0/24) inside it
        ("97.10.in-addr.arpa.", True),  # 10.97.0.0/16: outside
        ("10.in-addr.arpa.", True),  # wider than the cluster's ranges
        (nibbles("fd00:10:96::99"), False),
        (nibbles("2001:db8::1"), True),
    ],
)
def test_reverse_misses_inside_the_cluster_ranges_are_final(
    view: ClusterView, qname: str, fallthrough: bool
) -> None:
    from ipaddress import ip_network

    config = AnswerConfig(
        zone=ZONE,
        ttl=TTL,
        pods=PodMode.INSECURE,
        cluster_networks=(
            ip_network("10.96.0.0/16"),
            ip_network("10.244.0.0/16"),
            ip_network("fd00:10:96::/112"),
        ),
    )
    reply = ask(view, qname, "PTR", config)
    if reply.rcode == Rcode.NXDOMAIN:  # partial names with addresses below are NODATA
        assert reply.fallthrough == fallthrough
        assert [r.rtype for r in reply.authority] == [RType.SOA]  # D2
    else:
        assert not reply.fallthrough
