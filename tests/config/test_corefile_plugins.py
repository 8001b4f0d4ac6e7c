"""Each plugin's syntax, options and defaults as its CoreDNS README and setup.go give
them; what kdns does not implement is refused by name, with what it takes instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.config.model import (
    COMBINED_LOG_FORMAT,
    COMMON_LOG_FORMAT,
    CacheConfig,
    Consolidate,
    ErrorsConfig,
    FileConfig,
    ForwardConfig,
    HealthConfig,
    KubernetesConfig,
    LoadbalanceConfig,
    LogClass,
    LogConfig,
    LogRule,
    LoopConfig,
    Origin,
    PluginConfig,
    PrometheusConfig,
    ReadyConfig,
    ReloadConfig,
    Upstream,
)
from kdns.config.settings import HostPort, PodMode
from tests.config.corefiles import block, load, problems

O2 = Origin("Corefile", 2)


def plugin(name: str, *lines: str, key: str = ".:53") -> PluginConfig:
    return load(block(*lines, key=key)).blocks[0].plugins[name]


def refused(*lines: str, key: str = ".:53") -> list[str]:
    return problems(block(*lines, key=key))


def up(host: str, port: int = 53) -> Upstream:
    return Upstream(HostPort(host, port))


# ---- accepted: plugin lines -> config ---------------------------------------------------

ACCEPTED: list[tuple[tuple[str, ...], str, PluginConfig]] = [
    (("errors",), ".:53", ErrorsConfig(origin=O2)),
    (("errors stdout",), ".:53", ErrorsConfig(origin=O2)),
    (
        ("errors {", '  consolidate 5m ".* i/o timeout$" warning',
         '  consolidate 30s "^Failed"', "}"),
        ".:53",
        ErrorsConfig(
            consolidate=(
                Consolidate(300.0, ".* i/o timeout$", "warning"),
                Consolidate(30.0, "^Failed", "error"),
            ),
            origin=O2,
        ),
    ),
    (("health",), ".:53", HealthConfig(addr=HostPort("", 8080), lameduck=0.0, origin=O2)),
    (("health localhost:8091",), ".:53", HealthConfig(addr=HostPort("127.0.0.1", 8091), origin=O2)),
    (
        ("health [::1]:8080 {", "  lameduck 1m30s", "}"),
        ".:53",
        HealthConfig(addr=HostPort("::1", 8080), lameduck=90.0, origin=O2),
    ),
    (("ready",), ".:53", ReadyConfig(addr=HostPort("", 8181), origin=O2)),
    (("ready 127.0.0.1:8181",), ".:53", ReadyConfig(addr=HostPort("127.0.0.1", 8181), origin=O2)),
    (("prometheus",), ".:53", PrometheusConfig(addr=HostPort("127.0.0.1", 9153), origin=O2)),
    (("prometheus 0.0.0.0:9153",), ".:53",
     PrometheusConfig(addr=HostPort("0.0.0.0", 9153), origin=O2)),
    (("reload",), ".:53", ReloadConfig(30.0, 15.0, origin=O2)),
    (("reload 10s",), ".:53", ReloadConfig(10.0, 5.0, origin=O2)),  # jitter cut to half
    (("reload 1m 0s",), ".:53", ReloadConfig(60.0, 0.0, origin=O2)),
    (("reload 2s 1s",), ".:53", ReloadConfig(2.0, 1.0, origin=O2)),
    (("loop",), ".:53", LoopConfig(origin=O2)),
    (("loadbalance",), ".:53", LoadbalanceConfig(origin=O2)),
    (("loadbalance round_robin",), ".:53", LoadbalanceConfig(origin=O2)),
    (("log",), ".:53", LogConfig(rules=(LogRule(),), origin=O2)),
    (("log Example.ORG",), ".:53", LogConfig((LogRule(names=("example.org.",)),), origin=O2)),
    (
        ("log . {combined}",),
        ".:53",
        LogConfig((LogRule(format=COMBINED_LOG_FORMAT),), origin=O2),
    ),
    (
        ('log . "{proto} Request: {name} {type} {>id}"',),
        ".:53",
        LogConfig((LogRule(format="{proto} Request: {name} {type} {>id}"),), origin=O2),
    ),
    (
        ("log a.org b.org {common} {", "  class denial error", "  class success", "}"),
        ".:53",
        LogConfig(
            tuple(
                LogRule(
                    names=(name,),
                    format=COMMON_LOG_FORMAT,
                    classes=frozenset({LogClass.DENIAL, LogClass.ERROR, LogClass.SUCCESS}),
                )
                for name in ("a.org.", "b.org.")
            ),
            origin=O2,
        ),
    ),
    (
        ("log example.org {", "  class denial", "}", "log"),
        ".:53",
        LogConfig(
            (
                LogRule(names=("example.org.",), classes=frozenset({LogClass.DENIAL})),
                LogRule(),
            ),
            origin=O2,
        ),
    ),
    (("cache",), ".:53", CacheConfig(zones=(".",), origin=O2)),
    (("cache",), "a.org b.org", CacheConfig(zones=("a.org.", "b.org."), origin=O2)),
    (("cache 300 example.org",), ".:53", CacheConfig(zones=("example.org.",), success_ttl=300,
                                                     denial_ttl=300, origin=O2)),
    (
        ("cache {", "  success 5000", "  denial 2500 60 10", "  servfail 0", "}"),
        "example.org",
        CacheConfig(
            zones=("example.org.",),
            success_capacity=4864,  # rounded down to 256 shards, as in CoreDNS
            denial_capacity=2304,
            denial_ttl=60,
            denial_min_ttl=10,
            servfail_ttl=0,
            origin=O2,
        ),
    ),
    (
        ("cache 30 {", "  success 100 600 0", "}"),
        ".:53",
        CacheConfig(zones=(".",), success_capacity=1024, success_ttl=600, success_min_ttl=0,
                    denial_ttl=30, origin=O2),
    ),
    (
        ("cache {", "  disable denial", "  disable success sub.example.org other.org", "}"),
        ".:53",
        CacheConfig(zones=(".",), disable_denial=(".",),
                    disable_success=("sub.example.org.", "other.org."), origin=O2),
    ),
    (
        ("kubernetes",),
        "cluster.local",
        KubernetesConfig(zones=("cluster.local.",), pods=PodMode.DISABLED, ttl=5, origin=O2),
    ),
    (
        ("kubernetes cluster.local 10.0.0.0/8 {", "  pods verified", "  ttl 0", "  fallthrough",
         "  kubeconfig /etc/kube/config admin@prod", "}"),
        ".:53",
        KubernetesConfig(zones=("cluster.local.", "10.in-addr.arpa."), pods=PodMode.VERIFIED,
                         ttl=0, fallthrough=(), kubeconfig=Path("/etc/kube/config"),
                         context="admin@prod", origin=O2),
    ),
    (
        ("kubernetes cluster.local {", "  endpoint https://10.0.0.1:6443", "  ttl 3600", "}"),
        ".:53",
        KubernetesConfig(zones=("cluster.local.",), ttl=3600,
                         endpoint="https://10.0.0.1:6443", origin=O2),
    ),
    (
        ("forward . 10.0.0.1 10.0.0.2:5353 [fd00::53]:53 fd00::54 dns://10.0.0.3",),
        ".:53",
        ForwardConfig(
            from_zone=".",
            to=(up("10.0.0.1"), up("10.0.0.2", 5353), up("fd00::53"), up("fd00::54"),
                up("10.0.0.3")),
            to_text=("10.0.0.1", "10.0.0.2:5353", "[fd00::53]:53", "fd00::54", "dns://10.0.0.3"),
            origin=O2,
        ),
    ),
    (
        ("forward example.org /etc/resolv.conf 10.96.0.1 {", "  max_concurrent 100", "}"),
        ".:53",
        ForwardConfig(
            from_zone="example.org.",
            to=(up("10.96.0.1"), up("fd00::1")),  # duplicates dropped, first one kept
            to_text=("/etc/resolv.conf", "10.96.0.1"),
            max_concurrent=100,
            origin=O2,
        ),
    ),
    (
        ("forward . 10.0.0.10",),
        "corp.example",  # FROM "." covers the block's zone
        ForwardConfig(from_zone=".", to=(up("10.0.0.10"),), to_text=("10.0.0.10",), origin=O2),
    ),
    (
        ("file db.example.org",),
        "example.org",
        FileConfig(paths=(Path("db.example.org"),), zones=("example.org.",), origin=O2),
    ),
    (
        ("file /zones/signed example.org example.net {", "  reload 0", "}"),
        ".:53",
        FileConfig(paths=(Path("/zones/signed"),), zones=("example.org.", "example.net."),
                   reload=0.0, origin=O2),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "key", "expected"), ACCEPTED, ids=lambda v: str(v)[:60])
def test_accepted(lines: tuple[str, ...], key: str, expected: PluginConfig) -> None:
    name = lines[0].split()[0]
    assert plugin(name, *lines, key=key) == expected


def test_bind_adds_up_every_line_less_its_excepts() -> None:
    (server,) = load(block("bind 127.0.0.1", "bind ::1 127.0.0.2 {", "  except 127.0.0.2", "}",
                           "errors")).blocks  # fmt: skip
    assert server.bind == ("127.0.0.1", "::1")
    assert "bind" not in server.plugins
    assert server.chain_names() == ["bind", "errors"]


# ---- refused: plugin lines -> the problem lines -----------------------------------------

SUPPORTED = (
    "kdns supports errors, health, ready, prometheus, reload, loadbalance, log, cache, "
    "autopath, kubernetes, forward, loop, file, bind, import, hosts, rewrite, template, any and "
    "bufsize"
)

K8S_TAKES = (
    "`pods disabled|insecure|verified`, `ttl SECONDS`, `fallthrough [ZONES...]`, `kubeconfig "
    "FILE [CONTEXT]`, `endpoint URL`, `namespaces NAMESPACE...`, `namespace_labels SELECTOR`, "
    "`labels SELECTOR`, `endpoint_pod_names`, `noendpoints` and `ignore empty_service`"
)

REFUSED: list[tuple[tuple[str, ...], list[str]]] = [
    # plugins
    (("chaos CoreDNS-1.12",),
     [f"Corefile:2: plugin chaos is not supported by kdns (not implemented); {SUPPORTED}"]),
    (("metrics :9153",),
     ["Corefile:2: unknown plugin 'metrics' (not a CoreDNS plugin; did you mean prometheus?); "
      f"{SUPPORTED}"]),
    (("kubernets cluster.local",),
     ["Corefile:2: unknown plugin 'kubernets' (not a CoreDNS plugin; did you mean "
      f"kubernetes?); {SUPPORTED}"]),
    (("k8s_gateway example.com",),
     [f"Corefile:2: unknown plugin 'k8s_gateway' (not a CoreDNS plugin); {SUPPORTED}"]),
    # once per block
    (("errors", "errors"),
     ["Corefile:3: errors is given twice in this server block (first at Corefile:2); CoreDNS "
      "allows it once: keep one"]),
    (("cache 30", "cache 60"),
     ["Corefile:3: cache is given twice in this server block (first at Corefile:2); CoreDNS "
      "allows it once: keep one"]),
    (("forward . 10.0.0.1", "forward lab.example 10.0.0.2"),
     ["Corefile:3: forward is given twice in this server block (first at Corefile:2); kdns "
      "takes one forward per server block: give `forward lab.example ...` a server block of "
      "its own, e.g. `example.org { forward . 10.0.0.10 }`"]),
    # errors
    (("errors stderr",),
     ["Corefile:2: errors: the only output is stdout: write `errors` (or `errors stdout`)"]),
    (("errors {", "  stacktrace", "}"),
     ["Corefile:3: errors: option stacktrace is not implemented in kdns yet; errors takes "
      "`consolidate DURATION REGEXP [LEVEL]`"]),
    (("errors {", "  consolidate 5m .* critical", "}"),
     ["Corefile:3: errors: consolidate LEVEL 'critical' is not one of warning, error, info, "
      "debug"]),
    (("errors {", "  consolidate 5m .* warning show_first", "}"),
     ["Corefile:3: errors: consolidate's show_first is not implemented in kdns yet; errors "
      "takes `consolidate DURATION REGEXP [LEVEL]`"]),
    (("errors {", "  consolidate 5 .*", "}"),
     ["Corefile:3: errors: consolidate: '5' has no unit: write e.g. 5s"]),
    (("errors {", "  consolidate 5s (unclosed", "}"),
     ["Corefile:3: errors: consolidate REGEXP '(unclosed' is not a valid regular expression: "
      "missing ), unterminated subpattern at position 0"]),
    # health, ready, prometheus
    (("health :8080 :8081",), ["Corefile:2: health takes one address at most: `health [ADDRESS]`"]),
    (("health 8080",), ["Corefile:2: health: '8080' has no port: write HOST:PORT or :PORT"]),
    (("health :http",), ["Corefile:2: health: port 'http' is not a number from 0 to 65535"]),
    (("health eth0:8080",),
     ["Corefile:2: health: the host of a listen address must be an IP address, not 'eth0'"]),
    (("health ::1:8080",),
     ["Corefile:2: health: '::1:8080' is not HOST:PORT: write an IPv6 address as [IPV6]:PORT"]),
    (("health {", "  lameduck 5", "}"),
     ["Corefile:3: health: lameduck: '5' has no unit: write e.g. 5s"]),
    (("health {", "  lameduck five", "}"),
     ["Corefile:3: health: lameduck: 'five' is not a duration: write e.g. 5s, 1m30s or 500ms"]),
    (("health {", "  lameduck -5s", "}"),
     ["Corefile:3: health: the lameduck DURATION cannot be negative"]),
    (("health {", "  lameduck 5s", "  lameduck 10s", "}"),
     ["Corefile:4: health: option lameduck is given twice (first at Corefile:3); keep one"]),
    (("health {", "  path /healthz", "}"),
     ["Corefile:3: health: unknown option 'path'; health takes `lameduck DURATION`"]),
    (("ready {", "  monitor continuously", "}"),
     ["Corefile:3: ready: option monitor is not implemented in kdns yet; ready takes only an "
      "address (`ready [ADDRESS]`)"]),
    (("prometheus :9153 {", "  runtime_metrics", "}"),
     ["Corefile:3: prometheus: option runtime_metrics is not implemented in kdns yet; "
      "prometheus takes only an address (`prometheus [ADDRESS]`)"]),
    # reload, loop, loadbalance
    (("reload 1s",), ["Corefile:2: reload: INTERVAL must be at least 2s, not 1s"]),
    (("reload 30s 500ms",), ["Corefile:2: reload: JITTER must be 0 or at least 1s, not 500ms"]),
    (("reload 30s 15s 5s",),
     ["Corefile:2: reload takes `reload [INTERVAL [JITTER]]`, e.g. `reload 30s 15s`"]),
    (("loop 5",), ["Corefile:2: loop takes no arguments: write `loop`"]),
    (("loop {", "}"), ["Corefile:2: loop takes no { } block"]),
    (("loadbalance weighted /etc/weights",),
     ["Corefile:2: loadbalance: the weighted policy is not implemented in kdns yet; kdns takes "
      "`loadbalance [round_robin]`"]),
    (("loadbalance random",),
     ["Corefile:2: loadbalance: unknown policy 'random'; kdns takes `loadbalance [round_robin]`"]),
    (("loadbalance {", "  prefer 10.0.0.0/8", "}"),
     ["Corefile:3: loadbalance: option prefer is not implemented in kdns yet; loadbalance takes "
      "`loadbalance [round_robin]`"]),
    # log
    (("log {combined}",),
     ["Corefile:2: log: with one argument CoreDNS takes '{combined}' as a NAME, not a FORMAT; "
      "write `log . {combined}`"]),
    (("log . {", "  class denial nxdomain", "}"),
     ["Corefile:3: log: unknown class 'nxdomain'; the classes are all, denial, error and "
      "success"]),
    (("log . {", "  format json", "}"), ["Corefile:3: log: unknown option 'format'; log takes "
     "`class CLASSES...`"]),
    # cache
    (("cache 30s",),
     ["Corefile:2: cache: TTL is a number of seconds without a unit (CoreDNS would take '30s' "
      "as a zone name): write e.g. `cache 30`"]),
    (("cache 0",), ["Corefile:2: cache: TTL must be above 0, not 0"]),
    (("cache {", "  success many", "}"),
     ["Corefile:3: cache: success CAPACITY must be a whole number, not 'many'"]),
    (("cache {", "  denial 9984 0", "}"), ["Corefile:3: cache: denial TTL must be above 0, not 0"]),
    (("cache {", "  disable everything", "}"),
     ["Corefile:3: cache: disable takes `disable success|denial [ZONES...]`"]),
    (("cache {", "  disable success a.org", "  disable success b.org", "}"),
     ["Corefile:4: cache: `disable success` is given twice; list all its zones on one line"]),
    (("cache {", "  servfail 10m", "}"),
     ["Corefile:3: cache: servfail must be from 0s to 5m (RFC 2308 §7.1)"]),
    # kubernetes
    (("kubernetes in-addr.arpa ip6.arpa",),
     ["Corefile:2: kubernetes needs a zone that is not a reverse zone, e.g. `kubernetes "
      "cluster.local in-addr.arpa ip6.arpa`"]),
    (("kubernetes cluster.local {", "  pods enabled", "}"),
     ["Corefile:3: kubernetes: pods takes one of disabled, insecure, verified"]),
    (("kubernetes cluster.local {", "  ttl 3601", "}"),
     ["Corefile:3: kubernetes: ttl must be from 0 to 3600, not 3601"]),
    (("kubernetes cluster.local {", "  ttl 30s", "}"),
     ["Corefile:3: kubernetes: ttl must be a whole number, not '30s'"]),
    (("kubernetes cluster.local {", "  endpoint https://a:6443 https://b:6443", "}"),
     ["Corefile:3: kubernetes: endpoint takes one URL (CoreDNS uses only the first of several)"]),
    (("kubernetes cluster.local {", "  zonal", "}"),
     [f"Corefile:3: kubernetes: option zonal is not implemented in kdns yet; kubernetes takes "
      f"{K8S_TAKES}"]),
    (("kubernetes cluster.local {", "  upstream", "}"),
     [f"Corefile:3: kubernetes: option upstream was removed from CoreDNS; kubernetes takes "
      f"{K8S_TAKES}"]),
    (("kubernetes cluster.local {", "  ttl 5", "  ttl 30", "}"),
     ["Corefile:4: kubernetes: option ttl is given twice (first at Corefile:3); keep one"]),
    # forward
    (("forward .",),
     ["Corefile:2: forward takes FROM and at least one TO, e.g. `forward . /etc/resolv.conf`"]),
    (("forward . grpc://10.0.0.1",),
     ["Corefile:2: forward: grpc:// is not a forward protocol; write IP, IP:PORT, "
      "[IPV6]:PORT, dns://IP, tls://IP[%NAME][:PORT] or a file"]),
    (("forward . dns.google",),
     ["Corefile:2: forward: TO 'dns.google' is a host name; kdns does not resolve upstream "
      "names at start-up: give its IP address"]),
    (("forward . /etc/missing.conf",),
     ["Corefile:2: forward: TO '/etc/missing.conf' is not an IP address, and it cannot be "
      "read as a resolv.conf file: No such file or directory"]),
    (("forward . /etc/empty-resolv.conf",),
     ["Corefile:2: forward: no upstream address: /etc/empty-resolv.conf lists no nameserver"]),
    (("forward . 10.0.0.1:0",), ["Corefile:2: forward: TO '10.0.0.1:0': port 0 is not a port "
     "an upstream listens on"]),
    (("forward . 10.0.0.1:65536",),
     ["Corefile:2: forward: TO '10.0.0.1:65536': port '65536' is not a number from 0 to 65535"]),
    (("forward . " + " ".join(f"10.0.0.{i}" for i in range(1, 17)),),
     ["Corefile:2: forward: 16 TOs; CoreDNS takes 15 at most"]),
    (("forward 10.0.0.0/15 10.0.0.1",),
     ["Corefile:2: forward: FROM 10.0.0.0/15 stands for 2 reverse zones; forward takes one "
      "zone: use a CIDR on an octet boundary"]),
    (("forward . 10.0.0.1 {", "  max_concurrent -1", "}"),
     ["Corefile:3: forward: max_concurrent cannot be negative"]),
    (("forward . 10.0.0.1 {", "  bogus", "}"),
     ["Corefile:3: forward: unknown option 'bogus'; forward takes `except NAMES...`, "
      "`force_tcp`, `prefer_udp`, `expire DURATION`, `max_fails N`, `health_check DURATION "
      "[no_rec] [domain FQDN]`, `tls [CERT KEY] [CA]`, `tls_servername NAME`, `policy "
      "random|round_robin|sequential`, `read_timeout DURATION` and `max_concurrent N`"]),
    # file
    (("file",), ["Corefile:2: file takes DBFILE [ZONES...], e.g. `file db.example.org`"]),
    (("file db.a a.org", "file db.b b.org"),
     ["Corefile:3: file is given twice in this server block (first at Corefile:2); kdns takes "
      "one file per server block; give each zone file a server block of its own"]),
    (("file db.a a.org {", "  reload_by_mtime", "}"),
     ["Corefile:3: file: option reload_by_mtime is not implemented in kdns yet; file takes "
      "`reload DURATION`"]),
    # bind
    (("bind",), ["Corefile:2: bind takes one or more IP addresses, e.g. `bind 127.0.0.1`"]),
    (("bind lo",),
     ["Corefile:2: bind: 'lo' is not an IP address; kdns binds IP addresses only (CoreDNS also "
      "takes interface names): write the interface's address"]),
    (("bind 127.0.0.1 {", "  except 127.0.0.1", "}"),
     ["Corefile:2: bind: except leaves no address to listen on"]),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "expected"), REFUSED, ids=lambda v: str(v)[:60])
def test_refused(lines: tuple[str, ...], expected: list[str]) -> None:
    assert refused(*lines) == expected


@pytest.mark.parametrize(
    ("key", "lines", "expected"),
    [
        ("example.org", ("kubernetes cluster.local",),
         "Corefile:2: kubernetes: zone cluster.local. is outside this server block's zones "
         "(example.org.); list zones inside them, or add a server block for it"),
        ("example.org", ("forward other.org 10.0.0.1",),
         "Corefile:2: forward: other.org. matches no query of this server block (its zones "
         "are example.org.); use a zone inside them, or add a server block for other.org."),
        ("example.org", ("cache 30 other.org",),
         "Corefile:2: cache: other.org. matches no query of this server block (its zones are "
         "example.org.); use a zone inside them, or add a server block for other.org."),
        ("example.org", ("file db.other other.org",),
         "Corefile:2: file: zone other.org. is outside this server block's zones "
         "(example.org.); list zones inside them, or add a server block for it"),
    ],
)  # fmt: skip
def test_plugin_zones_must_reach_the_blocks_zones(
    key: str, lines: tuple[str, ...], expected: str
) -> None:
    assert refused(*lines, key=key) == [expected]


def test_forward_from_inside_or_above_the_block_zone_is_fine() -> None:
    assert isinstance(plugin("forward", "forward lab.example.org 10.0.0.1", key="example.org"),
                      ForwardConfig)  # fmt: skip
    assert isinstance(plugin("forward", "forward org 10.0.0.1", key="example.org"), ForwardConfig)
