"""Corefile -> Config: the stock kubeadm Corefiles, server block keys, and the rules
between blocks (CoreDNS's corefile(5) and core/dnsserver)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.config.corefile import CorefileError, Problem, corefile_digest, load_corefile
from kdns.config.model import (
    CacheConfig,
    ErrorsConfig,
    ForwardConfig,
    HealthConfig,
    KubernetesConfig,
    LoadbalanceConfig,
    LoopConfig,
    Origin,
    PrometheusConfig,
    ReadyConfig,
    ReloadConfig,
    Upstream,
)
from kdns.config.settings import HostPort, PodMode
from tests.config.corefiles import block, load, problems

DATA = Path(__file__).parent.parent / "data" / "corefiles"


def at(line: int, source: str = "Corefile") -> Origin:
    return Origin(source, line)


KUBEADM_1_31 = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""

KUBEADM_1_32 = KUBEADM_1_31.replace(
    "    cache 30\n",
    "    cache 30 {\n       disable success cluster.local\n       disable denial cluster.local\n"
    "    }\n",
)


def kubeadm_plugins(cache: CacheConfig, *, shift: int) -> dict[str, object]:
    return {
        "errors": ErrorsConfig(origin=at(2)),
        "health": HealthConfig(addr=HostPort("", 8080), lameduck=5.0, origin=at(3)),
        "ready": ReadyConfig(addr=HostPort("", 8181), origin=at(6)),
        "kubernetes": KubernetesConfig(
            zones=("cluster.local.", "in-addr.arpa.", "ip6.arpa."),
            pods=PodMode.INSECURE,
            ttl=30,
            fallthrough=("in-addr.arpa.", "ip6.arpa."),
            origin=at(7),
        ),
        "prometheus": PrometheusConfig(addr=HostPort("", 9153), origin=at(12)),
        "forward": ForwardConfig(
            from_zone=".",
            to=(Upstream(HostPort("10.96.0.1", 53)), Upstream(HostPort("fd00::1", 53))),
            to_text=("/etc/resolv.conf",),
            max_concurrent=1000,
            origin=at(13),
        ),
        "cache": cache,
        "loop": LoopConfig(origin=at(17 + shift)),
        "reload": ReloadConfig(interval=30.0, jitter=15.0, origin=at(18 + shift)),
        "loadbalance": LoadbalanceConfig(policy="round_robin", origin=at(19 + shift)),
    }


def test_kubeadm_corefile_before_1_32() -> None:
    config = load(KUBEADM_1_31)
    (server,) = config.blocks
    assert (server.zones, server.port, server.bind, server.origin) == ((".",), 53, (), at(1))
    cache = CacheConfig(zones=(".",), success_ttl=30, denial_ttl=30, origin=at(16))
    assert server.plugins == kubeadm_plugins(cache, shift=0)
    assert server.chain_names() == [
        "reload", "ready", "health", "prometheus", "errors", "loadbalance", "cache",
        "kubernetes", "loop", "forward",
    ]  # fmt: skip


def test_kubeadm_corefile_from_1_32_disables_caching_of_the_cluster_zone() -> None:
    (server,) = load(KUBEADM_1_32).blocks
    cache = CacheConfig(
        zones=(".",),
        success_ttl=30,
        denial_ttl=30,
        disable_success=("cluster.local.",),
        disable_denial=("cluster.local.",),
        origin=at(16),
    )
    assert server.plugins == kubeadm_plugins(cache, shift=3)


def test_cache_ttl_caps_both_caches_and_keeps_coredns_floors_and_capacities() -> None:
    (server,) = load(KUBEADM_1_31).blocks
    cache = server.plugins["cache"]
    assert isinstance(cache, CacheConfig)
    assert (cache.success_ttl, cache.denial_ttl) == (30, 30)
    assert (cache.success_min_ttl, cache.denial_min_ttl, cache.servfail_ttl) == (5, 5, 5)
    assert (cache.success_capacity, cache.denial_capacity) == (9984, 9984)
    assert (cache.disable_success, cache.disable_denial) == (None, None)


def test_load_corefile_sets_path_and_digest(tmp_path: Path) -> None:
    path = tmp_path / "Corefile"
    path.write_text(block("errors", "forward . 10.0.0.10"))
    config = load_corefile(path, environ={})
    assert config.corefile == path
    assert config.digest == corefile_digest(path, environ={})
    assert len(config.digest) == 128
    assert config.blocks[0].plugins["errors"].origin == Origin(str(path), 2)


def test_load_corefile_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(CorefileError) as caught:
        load_corefile(tmp_path / "missing")
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'missing'}: cannot read the Corefile: No such file or directory"
    ]


# ---- stub domains, several zones, keys --------------------------------------------------


def test_stub_domain_beside_the_root_block() -> None:
    config = load("corp.example:53 {\n    forward . 10.0.0.10\n}\n" + KUBEADM_1_31)
    stub, root = config.blocks
    assert (stub.zones, stub.port, root.zones, root.port) == (("corp.example.",), 53, (".",), 53)
    assert stub.plugins == {
        "forward": ForwardConfig(
            from_zone=".",
            to=(Upstream(HostPort("10.0.0.10", 53)),),
            to_text=("10.0.0.10",),
            origin=at(2),
        )
    }
    assert root.origin == at(4)


def test_several_zones_in_one_block_share_its_plugins() -> None:
    (server,) = load(block("kubernetes", "errors", key="cluster.local:53 Example.ORG:53")).blocks
    assert server.zones == ("cluster.local.", "example.org.")
    kubernetes = server.plugins["kubernetes"]
    assert isinstance(kubernetes, KubernetesConfig)
    assert kubernetes.zones == ("cluster.local.", "example.org.")


def test_keys_on_several_ports_become_one_block_per_port_with_the_same_plugins() -> None:
    config = load(block("errors", key="a.org:53 b.org:1053 c.org:53"))
    assert [(b.zones, b.port) for b in config.blocks] == [
        (("a.org.", "c.org."), 53),
        (("b.org.",), 1053),
    ]
    assert config.blocks[0].plugins == config.blocks[1].plugins


@pytest.mark.parametrize(
    ("key", "zones", "port"),
    [
        (".", (".",), 53),
        (".:53", (".",), 53),
        ("dns://.:1053", (".",), 1053),
        ("Example.Org.", ("example.org.",), 53),
        ("dns://example.org", ("example.org.",), 53),
        ("10.0.0.0/8", ("10.in-addr.arpa.",), 53),
        ("10.1.2.0/24:5353", ("2.1.10.in-addr.arpa.",), 5353),
        ("0.0.0.0/0", ("in-addr.arpa.",), 53),
        ("10.0.0.0/23", ("0.0.10.in-addr.arpa.", "1.0.10.in-addr.arpa."), 53),
        ("fd00::/8", ("d.f.ip6.arpa.",), 53),
        ("2001:db8::/32:53", ("8.b.d.0.1.0.0.2.ip6.arpa.",), 53),
        ("fd00::/7", ("c.f.ip6.arpa.", "d.f.ip6.arpa."), 53),
    ],
)
def test_server_block_keys(key: str, zones: tuple[str, ...], port: int) -> None:
    (server,) = load(block("errors", key=key)).blocks
    assert (server.zones, server.port) == (zones, port)


def test_a_key_without_port_takes_the_dns_port() -> None:
    config = load(block("errors", key="a.org b.org:53"), dns_port=1053)
    assert [(b.zones, b.port) for b in config.blocks] == [(("a.org.",), 1053), (("b.org.",), 53)]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("tls://.:853", "tls:// (DNS over TLS) is not supported by kdns, which serves plain DNS "
         "over UDP and TCP: write the key without a scheme, or with dns://"),
        ("https://.", "https:// (DNS over HTTPS) is not supported by kdns"),
        ("grpc://.", "grpc:// (DNS over gRPC) is not supported by kdns"),
        ("quic://.", "quic:// (DNS over QUIC) is not supported by kdns"),
        ("ftp://.", "unknown scheme ftp://"),
        (".:99999", "port '99999' is not a number from 0 to 65535"),
        ("example.org:dns", "port 'dns' is not a number from 0 to 65535"),
        ("example.org:", "nothing follows ':': write ZONE:PORT, e.g. .:53"),
        (":53", "no zone before the port: write .:53 for the root zone"),
        ("a..b", "'a..b' is not a valid zone name: it has an empty label"),
        ("bad!name.org", "label 'bad!name' must be 1 to 63 letters, digits, '-' or '_'"),
        ("10.0.0.0/33", "'10.0.0.0/33' is neither a zone name nor a CIDR (e.g. 10.0.0.0/8)"),
    ],
)  # fmt: skip
def test_bad_server_block_keys(key: str, message: str) -> None:
    (found,) = problems(block("errors", key=key))
    assert found.startswith(f"Corefile:1: server block key {key!r}: ")
    assert message in found


def test_the_same_zone_and_port_twice_is_refused_as_in_coredns() -> None:
    text = "example.org {\n  errors\n}\nEXAMPLE.org:53 {\n  log\n}\n"
    assert problems(text) == [
        "Corefile:4: zone example.org. on port 53 is already served by the server block at "
        "Corefile:1; CoreDNS refuses the same zone and port twice: merge the blocks or give "
        "one another port or bind address"
    ]


def test_the_same_zone_on_other_ports_or_bind_addresses_is_fine() -> None:
    text = (
        "example.org:53 {\n  bind 127.0.0.1\n}\n"
        "example.org:53 {\n  bind 127.0.0.2\n}\n"
        "example.org:1053 {\n  errors\n}\n"
    )
    assert [(b.port, b.bind) for b in load(text).blocks] == [
        (53, ("127.0.0.1",)),
        (53, ("127.0.0.2",)),
        (1053, ()),
    ]


def test_a_block_without_bind_overlaps_one_with_bind() -> None:
    text = "example.org {\n  bind 127.0.0.1\n}\nexample.org {\n  errors\n}\n"
    assert problems(text) == [
        "Corefile:4: zone example.org. on port 53 is already served by the server block at "
        "Corefile:1; CoreDNS refuses the same zone and port twice: merge the blocks or give "
        "one another port or bind address"
    ]


def test_a_block_without_plugins_is_kept() -> None:
    (server,) = load("example.org {\n}\n").blocks
    assert (server.zones, server.plugins) == (("example.org.",), {})


def test_an_empty_corefile_is_refused() -> None:
    assert problems("# nothing\n") == [
        "Corefile: the Corefile has no server block: write e.g. "
        "`.:53 { forward . /etc/resolv.conf }`"
    ]


# ---- process-wide plugins across blocks -------------------------------------------------


def test_health_ready_and_prometheus_may_repeat_with_the_same_settings() -> None:
    text = block("health :8080", "prometheus :9153", "ready") + block(
        "health :8080", "prometheus :9153", "ready", key="example.org"
    )
    config = load(text)
    assert [sorted(b.plugins) for b in config.blocks] == [["health", "prometheus", "ready"]] * 2


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("health :8080", "health :8081", "health: kdns runs one health for the whole process, "
         "but this block sets :8081 lameduck 0s and the block at Corefile:2 sets :8080 lameduck "
         "0s: make them the same"),
        ("ready", "ready 127.0.0.1:8181", "ready: kdns runs one ready for the whole process, "
         "but this block sets 127.0.0.1:8181 and the block at Corefile:2 sets :8181: make them "
         "the same"),
        ("prometheus", "prometheus :9153", "prometheus: kdns runs one prometheus for the whole "
         "process, but this block sets :9153 and the block at Corefile:2 sets 127.0.0.1:9153: "
         "make them the same"),
        ("reload", "reload 10s", "reload: kdns runs one reload for the whole process, but this "
         "block sets 10s 5s and the block at Corefile:2 sets 30s 15s: make them the same"),
    ],
)  # fmt: skip
def test_process_wide_plugins_must_agree_across_blocks(first: str, second: str, message: str):
    text = block(first) + block(second, key="example.org")
    assert problems(text) == [f"Corefile:5: {message}"]


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = block("chaos CoreDNS-1.12", "cache 30s", "forward . 10.0.0.1 {", "  failover ERR",
                 "}", "kubernetes cluster.local {", "  zonal", "}")  # fmt: skip
    found = problems(text)
    assert [p.split(": ", 1)[0] for p in found] == [
        "Corefile:2", "Corefile:3", "Corefile:5", "Corefile:8",
    ]  # fmt: skip


def test_server_block_listen_addresses_follow_bind() -> None:
    (server,) = load(block("bind 127.0.0.1 ::1", "errors", key=".:1053")).blocks
    assert server.listen() == (HostPort("127.0.0.1", 1053), HostPort("::1", 1053))


# ---- imports, snippets and environment through to the model ----------------------------


def test_problems_point_into_imported_files_and_snippets(tmp_path: Path) -> None:
    (tmp_path / "plugins.conf").write_text("# shared plugins\nerrors\nchaos CoreDNS-1.12\n")
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        "(k8s) {\n"  # 1
        "    kubernetes cluster.local {\n"  # 2
        "        zonal\n"  # 3
        "    }\n"  # 4
        "}\n"  # 5
        ".:{$DNS_PORT} {\n"  # 6
        "    import plugins.conf\n"  # 7
        "    import k8s\n"  # 8
        "    cache {$CACHE_TTL}\n"  # 9
        "}\n"
    )
    with pytest.raises(CorefileError) as caught:
        load_corefile(corefile, environ={"DNS_PORT": "1053", "CACHE_TTL": "0"})
    assert [str(p).split(": ", 1)[0] for p in caught.value.problems] == [
        f"{tmp_path / 'plugins.conf'}:3",  # chaos, written in the imported file
        f"{corefile}:3",  # zonal, written in the snippet
        f"{corefile}:9",  # cache {$CACHE_TTL} = cache 0
    ]


def test_an_imported_snippet_and_environment_build_the_model(tmp_path: Path) -> None:
    (tmp_path / "Corefile").write_text(
        "(common) {\n    errors\n    cache {$TTL}\n}\n"
        "{$ZONE}:{$PORT} {\n    import common\n    forward . {$UPSTREAM}\n}\n"
        "import stub-*.conf\n"
    )
    (tmp_path / "stub-corp.conf").write_text("corp.example {\n    import common\n}\n")
    env = {"TTL": "45", "ZONE": "example.org", "PORT": "1053", "UPSTREAM": "10.0.0.1:5353"}
    config = load_corefile(tmp_path / "Corefile", environ=env)
    main, stub = config.blocks
    assert (main.zones, main.port, stub.zones, stub.port) == (
        ("example.org.",), 1053, ("corp.example.",), 53,
    )  # fmt: skip
    assert main.plugins["cache"] == CacheConfig(
        zones=("example.org.",),
        success_ttl=45,
        denial_ttl=45,
        origin=Origin(str(tmp_path / "Corefile"), 3),
    )
    assert stub.plugins["errors"].origin == Origin(str(tmp_path / "Corefile"), 2)
    assert stub.origin == Origin(str(tmp_path / "stub-corp.conf"), 1)
    forward = main.plugins["forward"]
    assert isinstance(forward, ForwardConfig)
    assert forward.to == (Upstream(HostPort("10.0.0.1", 5353)),)


def test_the_public_surface() -> None:
    import kdns.config.corefile as corefile

    assert sorted(corefile.__all__) == [
        "CorefileError", "Problem", "corefile_digest", "load_corefile", "parse_corefile_text",
        "render",
    ]  # fmt: skip


# ---- any text: a Config or one-line problems, nothing else ------------------------------

_FRAGMENTS = [
    ".:53", "example.org", "{", "}", "\n", " ", "import s", "(s)", '"a\nb"', "#c", ",",
    "errors", "health :8080", "lameduck 5s", "kubernetes", "pods insecure", "ttl 30",
    "fallthrough", "forward .", "10.0.0.1", "/etc/resolv.conf", "max_concurrent 5", "cache 30",
    "disable success", "log", "{common}", "reload 2s", "bind 127.0.0.1", "tls://x", "{$A}",
    "10.0.0.0/13", "rewrite", "file db", ":99999",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=40))
def test_any_text_loads_or_gives_one_line_problems(fragments: list[str]) -> None:
    text = " ".join(fragments)
    found: tuple[Problem, ...] = ()
    try:
        load(text, A="x y")
    except CorefileError as exc:
        found = exc.problems
        assert found  # an error always says why
    for problem in found:
        assert problem.origin.source == "Corefile"
        assert 0 <= problem.origin.line <= text.count("\n") + 1
        assert "\n" not in str(problem)
