"""The kubernetes plugin's options that choose what is served (namespaces, namespace_labels,
labels, endpoint_pod_names, noendpoints, ignore empty_service) and `autopath`, as their
CoreDNS READMEs and setup.go read them, and how `kdns corefile` reports them."""

from __future__ import annotations

import pytest

from kdns.config.corefile import render
from kdns.config.model import AutopathConfig, KubernetesConfig, Origin, PluginConfig
from kdns.config.selector import parse_selector
from kdns.config.settings import PodMode
from tests.config.corefiles import RESOLV_CONF, block, load, problems

O2 = Origin("Corefile", 2)
ZONES = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")


def plugin(name: str, *lines: str, key: str = ".:53") -> PluginConfig:
    return load(block(*lines, key=key)).blocks[0].plugins[name]


def kubernetes(*options: str) -> KubernetesConfig:
    config = plugin("kubernetes", "kubernetes cluster.local in-addr.arpa ip6.arpa {", *options, "}")
    assert isinstance(config, KubernetesConfig)
    return config


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("  namespaces default Kube-System default",),
         KubernetesConfig(zones=ZONES, namespaces=("default", "kube-system"), origin=O2)),
        (("  namespace_labels istio-injection=enabled",),
         KubernetesConfig(zones=ZONES, namespace_labels=parse_selector("istio-injection=enabled"),
                          origin=O2)),
        # the README's example: the selector's words are joined again with spaces
        (("  labels environment in (staging, qa),application=nginx",),
         KubernetesConfig(
             zones=ZONES,
             labels=parse_selector("application=nginx,environment in (qa,staging)"),
             origin=O2)),
        (("  endpoint_pod_names",),
         KubernetesConfig(zones=ZONES, endpoint_pod_names=True, origin=O2)),
        (("  noendpoints",), KubernetesConfig(zones=ZONES, noendpoints=True, origin=O2)),
        (("  ignore empty_service",),
         KubernetesConfig(zones=ZONES, ignore_empty_service=True, origin=O2)),
        (("  labels app", "  namespaces prod", "  pods verified"),
         KubernetesConfig(zones=ZONES, labels=parse_selector("app"), namespaces=("prod",),
                          pods=PodMode.VERIFIED, origin=O2)),
    ],
)  # fmt: skip
def test_filter_options_are_read(options: tuple[str, ...], expected: KubernetesConfig) -> None:
    assert kubernetes(*options) == expected


K8S = "kubernetes cluster.local {"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((K8S, "  namespaces", "}"),
         ["Corefile:3: kubernetes: namespaces takes at least one NAMESPACE"]),
        ((K8S, "  namespaces default,kube-system", "}"),
         ["Corefile:3: kubernetes: namespaces: 'default,kube-system' is not a namespace name (a "
          "DNS label); separate namespaces with spaces, e.g. `namespaces default kube-system`"]),
        ((K8S, "  labels", "}"), ["Corefile:3: kubernetes: labels takes a label SELECTOR, e.g. "
                                  "app=web"]),
        ((K8S, "  labels app > 3", "}"),
         ["Corefile:3: kubernetes: labels 'app > 3': app >: numeric comparisons are not allowed "
          "in label selectors; use =, !=, in or notin"]),
        ((K8S, "  namespace_labels env in (a", "}"),
         ["Corefile:3: kubernetes: namespace_labels 'env in (a': found the end in the values of "
          "env in"]),
        ((K8S, "  namespaces a", "  namespace_labels env=prod", "}"),
         ["Corefile:4: kubernetes: namespaces and namespace_labels cannot both be set (as in "
          "CoreDNS); keep one, e.g. `namespace_labels kubernetes.io/metadata.name in (a, b)`"]),
        ((K8S, "  endpoint_pod_names yes", "}"),
         ["Corefile:3: kubernetes: endpoint_pod_names takes no arguments"]),
        ((K8S, "  noendpoints please", "}"), ["Corefile:3: kubernetes: noendpoints takes no "
                                              "arguments"]),
        ((K8S, "  ignore", "}"),
         ["Corefile:3: kubernetes: ignore takes one value: `ignore empty_service`"]),
        ((K8S, "  ignore empty_services", "}"),
         ["Corefile:3: kubernetes: ignore takes one value: `ignore empty_service`"]),
        ((K8S, "  labels a=b", "  labels c=d", "}"),
         ["Corefile:4: kubernetes: option labels is given twice (first at Corefile:3); keep "
          "one"]),
    ],
)  # fmt: skip
def test_bad_filter_options_are_refused(lines: tuple[str, ...], expected: list[str]) -> None:
    assert problems(block(*lines)) == expected


# ---- autopath ---------------------------------------------------------------------------

VERIFIED = ("kubernetes cluster.local in-addr.arpa ip6.arpa {", "  pods verified", "}")


def test_autopath_at_kubernetes_takes_the_hosts_search_domains() -> None:
    config = plugin("autopath", "autopath @kubernetes", *VERIFIED)
    # tests.config.corefiles' /etc/resolv.conf: `search example.internal`
    assert config == AutopathConfig(
        zones=(".",), plugin="kubernetes", search=("example.internal.",), origin=O2
    )


def test_autopath_zones_and_a_resolv_conf_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        RESOLV_CONF, "/etc/search.conf", "domain old.example\nsearch A.example b.example.\n"
    )
    config = plugin(
        "autopath", "autopath example.org /etc/search.conf", key="example.org cluster.local"
    )
    assert config == AutopathConfig(
        zones=("example.org.",),
        plugin=None,
        search=("a.example.", "b.example."),
        resolv_conf="/etc/search.conf",
        origin=O2,
    )


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (("autopath", *VERIFIED),
         ["Corefile:2: autopath: no RESOLV-CONF given; write `autopath [ZONES...] @kubernetes` "
          "or `autopath [ZONES...] RESOLV-CONF`"]),
        (("autopath @forward", *VERIFIED),
         ["Corefile:2: autopath: @forward cannot give a search path; only the kubernetes plugin "
          "can (write `autopath [ZONES...] @kubernetes` or `autopath [ZONES...] RESOLV-CONF`)"]),
        (("autopath /etc/missing.conf",),
         ["Corefile:2: autopath: cannot read /etc/missing.conf: No such file or directory; "
          "`autopath [ZONES...] @kubernetes` or `autopath [ZONES...] RESOLV-CONF`"]),
        (("autopath /etc/empty-resolv.conf",),
         ["Corefile:2: autopath: /etc/empty-resolv.conf has no `search` line, so there is no "
          "search path to complete; add one, or write `autopath @kubernetes`"]),
        (("autopath @kubernetes",),
         ["Corefile:2: autopath: @kubernetes needs the kubernetes plugin in this server block, "
          "e.g. `kubernetes cluster.local in-addr.arpa ip6.arpa { pods verified }`"]),
        (("autopath @kubernetes", "kubernetes cluster.local"),
         ["Corefile:2: autopath: @kubernetes needs `pods verified` in the kubernetes plugin at "
          "Corefile:3 (the asking pod is found by its IP; with pods disabled CoreDNS does no "
          "autopath at all)"]),
        (("autopath @kubernetes", "autopath @kubernetes", *VERIFIED),
         ["Corefile:3: autopath is given twice in this server block (first at Corefile:2); "
          "CoreDNS allows it once: keep one"]),
        (("autopath @kubernetes {", "}", *VERIFIED),
         ["Corefile:2: autopath takes no { } block"]),
    ],
)  # fmt: skip
def test_bad_autopath_is_refused(lines: tuple[str, ...], expected: list[str]) -> None:
    assert problems(block(*lines)) == expected


def test_autopath_zones_must_lie_in_the_block() -> None:
    lines = ("autopath example.org @kubernetes", "kubernetes {", "  pods verified", "}")
    assert problems(block(*lines, key="cluster.local")) == [
        "Corefile:2: autopath: zone example.org. is outside this server block's zones "
        "(cluster.local.); list zones inside them, or add a server block for it"
    ]


def test_autopath_runs_where_plugin_cfg_puts_it_before_cache() -> None:
    # CoreDNS's plugin.cfg: ... rewrite, autopath, acl, cache, ... kubernetes ... forward.
    config = load(block("kubernetes cluster.local {", "  pods verified", "}", "cache 30",
                        "forward . 10.0.0.1", "autopath @kubernetes"))  # fmt: skip
    assert config.blocks[0].chain_names() == ["autopath", "cache", "kubernetes", "forward"]


def test_the_report_says_what_is_filtered_and_completed() -> None:
    text = render(
        load(
            block(
                "autopath @kubernetes",
                "kubernetes cluster.local {",
                "  pods verified",
                "  namespaces default prod",
                "  labels app=web",
                "  endpoint_pod_names",
                "  noendpoints",
                "  ignore empty_service",
                "}",
            )
        )
    )
    assert (
        "    autopath     complete the search path of the asking pod under .  (Corefile:2)\n"
        "                 then the host's search domains: example.internal.\n"
        "    kubernetes   zones cluster.local.  (Corefile:3)\n"
        "                 pods verified, ttl 5\n"
        "                 no fallthrough\n"
        "                 API in-cluster (service account)\n"
        "                 only namespaces default prod\n"
        "                 only Services, EndpointSlices and Pods labelled app=web\n"
        "                 endpoints without a hostname are named by their pod\n"
        "                 no endpoints: endpoint and headless names are NXDOMAIN\n"
        "                 Services without ready endpoints are NXDOMAIN (ignore empty_service)"
    ) in text


def test_the_report_of_namespace_labels_and_a_static_search_path() -> None:
    text = render(
        load(
            block(
                "autopath /etc/resolv.conf",
                "kubernetes cluster.local {",
                "  namespace_labels team in (a, b)",
                "}",
            )
        )
    )
    assert "    autopath     complete the search path example.internal. under ." in text
    assert text.endswith("\n                 only namespaces labelled team in (a,b)")
