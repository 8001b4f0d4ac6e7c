"""The flags front end of the kubernetes plugin's filters and of autopath: the same Config a
Corefile with those options builds, and one-line errors naming the flag."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from kdns.app import PlanError, source_plan
from kdns.cli import build_parser, serve_settings
from kdns.cluster.model import Kind
from kdns.config.flags import config_from_settings
from kdns.config.model import AutopathConfig, KubernetesConfig
from kdns.config.options import UsageError
from kdns.config.selector import parse_selector
from kdns.config.settings import PodMode, Settings
from kdns.sources.convert import SourceFilter
from tests.config.corefiles import block, load

SEED = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "seed"


def settings(*argv: str) -> Settings:
    ns = build_parser().parse_args(["serve", "--manifests", str(SEED), *argv])
    return serve_settings(ns, os.environ)


def test_filter_flags_reach_the_kubernetes_plugin() -> None:
    s = settings(
        "--namespaces", "default", "--namespaces", "Prod",
        "--labels", "environment in (staging, qa),app=nginx",
        "--endpoint-pod-names", "true",
        "--pods", "verified", "--autopath", "true",
    )  # fmt: skip
    assert s.namespaces == ("default", "prod")
    assert s.labels == parse_selector("app=nginx,environment in (qa,staging)")
    assert s.endpoint_pod_names
    assert s.autopath
    config = config_from_settings(replace(s, upstreams=()), host_search=("corp.example.",))
    plugins = config.blocks[0].plugins
    kubernetes = plugins["kubernetes"]
    assert isinstance(kubernetes, KubernetesConfig)
    assert kubernetes.namespaces == ("default", "prod")
    assert kubernetes.labels == s.labels
    assert kubernetes.endpoint_pod_names
    assert plugins["autopath"] == AutopathConfig(
        zones=("cluster.local.",), plugin="kubernetes", search=("corp.example.",)
    )
    assert config.blocks[0].chain_names().index("autopath") < config.blocks[0].chain_names().index(
        "kubernetes"
    )


def test_environment_twins_take_a_selector_with_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDNS_NAMESPACE_LABELS", "team in (a,b),tier")
    monkeypatch.setenv("KDNS_NAMESPACES", "")
    assert settings().namespace_labels == parse_selector("team in (a, b), tier")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--namespaces", "a,b"), "--namespaces: 'a,b' is not a namespace name"),
        (("--labels", "app >"), "--labels: 'app >': app >: numeric comparisons"),
        (("--namespace-labels", ""), "--namespace-labels: '': is empty"),
        (("--endpoint-pod-names", "yes"), "--endpoint-pod-names: 'yes' is not true or false"),
        (("--autopath", "true"), "--autopath needs --pods verified"),
        (("--namespaces", "a", "--namespace-labels", "x=y"), "cannot both be given"),
    ],
)
def test_bad_filter_flags_say_which_and_why(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        settings(*argv)
    assert message in str(caught.value)


def test_the_corefile_replaces_the_filter_flags(tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n}\n")
    ns = build_parser().parse_args(["serve", "--corefile", str(corefile), "--labels", "a=b"])
    with pytest.raises(UsageError, match=r"write `kubernetes \{ labels SELECTOR \}` instead"):
        serve_settings(ns, {})


# ---- what the source is asked for ----------------------------------------------------------


def test_the_source_plan_carries_the_filters() -> None:
    config = load(block("kubernetes cluster.local {", "  labels app=web", "  noendpoints",
                        "  endpoint_pod_names", "  namespace_labels team=a", "}"))  # fmt: skip
    api = source_plan(Settings(), config)
    assert api.kinds == (Kind.SERVICE, Kind.NAMESPACE)  # no EndpointSlice watch
    assert api.filters == SourceFilter(
        labels=parse_selector("app=web"),
        namespace_labels=parse_selector("team=a"),
        endpoints=False,
        pod_names=True,
    )
    manifests = source_plan(Settings(manifests=(SEED,)), config)
    assert manifests.filters == api.filters


def test_blocks_must_agree_on_what_the_one_index_holds() -> None:
    same = block("kubernetes cluster.local {", "  labels app=web", "  pods verified", "}")
    config = load(same + block("kubernetes cluster.local {", "  labels app=web", "}",
                               key="cluster.local:54"))  # fmt: skip
    assert source_plan(Settings(), config).kinds[-1] is Kind.POD
    other = load(same + block("kubernetes cluster.local {", "  labels app=db", "}",
                              key="cluster.local:54"))  # fmt: skip
    with pytest.raises(PlanError) as caught:
        source_plan(Settings(), other)
    assert str(caught.value) == (
        "Corefile:8: kubernetes: kdns keeps one index for every server block, so its "
        "labels, namespace_labels, noendpoints and endpoint_pod_names must be those of the "
        "kubernetes plugin at Corefile:2"
    )


def test_pods_verified_is_what_autopath_needs_from_the_flags() -> None:
    s = settings("--pods", "verified", "--autopath", "true")
    assert s.pods is PodMode.VERIFIED
    config = config_from_settings(replace(s, upstreams=()))
    assert Kind.POD in source_plan(Settings(), config).kinds
