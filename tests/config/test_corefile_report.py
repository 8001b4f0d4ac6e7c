"""`kdns corefile PATH`: each server block's zones, listeners, and plugins in execution
order (plugin.cfg), never in the order they were written."""

from __future__ import annotations

from pathlib import Path

from kdns.config.corefile import render
from tests.config.corefiles import block, load

KUBEADM = (
    Path(__file__).parent.parent / "data" / "corefiles" / "kubeadm-1.32.Corefile"
).read_text()


def plugin_column(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.startswith("    ") and
            not line.startswith("     ")]  # fmt: skip


def test_plugins_are_listed_in_execution_order() -> None:
    text = render(load(KUBEADM))
    assert plugin_column(text) == [
        "reload", "ready", "health", "prometheus", "errors", "loadbalance", "cache",
        "kubernetes", "loop", "forward",
    ]  # fmt: skip


def test_the_kubeadm_report() -> None:
    config = load(KUBEADM)
    assert render(config) == (
        f"sha512 {config.digest}\n"
        "\n"
        "server block 1 (Corefile:1)\n"
        "  zones   .\n"
        "  listen  :53 (UDP and TCP)\n"
        "  plugins, in the order a query meets them:\n"
        "    reload       re-read the Corefile every 30s ± 15s  (Corefile:21)\n"
        "    ready        /ready on :8181  (Corefile:6)\n"
        "    health       /health on :8080, lameduck 5s  (Corefile:3)\n"
        "    prometheus   /metrics on :9153  (Corefile:12)\n"
        "    errors       log errors  (Corefile:2)\n"
        "    loadbalance  shuffle A, AAAA and MX records (round_robin)  (Corefile:22)\n"
        "    cache        zones .  (Corefile:16)\n"
        "                 success: 9984 entries, TTL 5..30s\n"
        "                 denial: 9984 entries, TTL 5..30s\n"
        "                 SERVFAIL: 5s\n"
        "                 no success caching under cluster.local.\n"
        "                 no denial caching under cluster.local.\n"
        "    kubernetes   zones cluster.local. in-addr.arpa. ip6.arpa.  (Corefile:7)\n"
        "                 pods insecure, ttl 30\n"
        "                 fallthrough in-addr.arpa. ip6.arpa.\n"
        "                 API in-cluster (service account)\n"
        "    loop         stop if a probe query comes back (a forwarding loop)  (Corefile:20)\n"
        "    forward      . -> 10.96.0.1:53 [fd00::1]:53  (Corefile:13)\n"
        "                 (from /etc/resolv.conf)\n"
        "                 policy random, the client's protocol, read timeout 2s, connections "
        "reused for 10s\n"
        "                 down after 2 failed health checks in a row, checked every 500ms "
        "(. NS)\n"
        "                 max_concurrent 1000"
    )


def test_bind_listeners_and_blocks_without_plugins() -> None:
    text = render(load(block("bind 127.0.0.1 ::1", key=".:1053") + "example.org {\n}\n"))
    assert "  listen  127.0.0.1:1053, [::1]:1053 (UDP and TCP)\n" in text
    assert "    bind         127.0.0.1 ::1\n" in text
    assert "server block 2 (Corefile:4)\n  zones   example.org.\n" in text
    assert text.endswith("  plugins none: every query gets SERVFAIL")


def test_rendering_is_stable() -> None:
    assert render(load(KUBEADM)) == render(load(KUBEADM))
