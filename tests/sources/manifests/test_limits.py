"""Hostile manifests: a load is bounded (kdns.sources.manifests.limits) and each bound passed
is one line naming the file, the document and the field, never a runaway or a traceback."""

from __future__ import annotations

import json
import os
import re
from ipaddress import ip_network
from pathlib import Path

import pytest

from kdns.sources.manifests import ManifestError, limits
from tests.sources.manifests.helpers import deployment, load, services_yaml, write


def load_error(*paths: Path, **kw: object) -> str:
    with pytest.raises(ManifestError) as info:
        load(*paths, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- counts ------------------------------------------------------------------------------


def test_replicas_within_int32_but_beyond_the_pod_bound_are_refused_before_any_pod_is_made(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "d.yaml", deployment("d", "{app: d}", replicas=2_000_000_000))
    message = load_error(path)
    assert message.startswith(f"{path}: document 1 (Deployment default/d): spec.replicas: ")
    assert "more than the 200000 Pods" in message
    assert message.endswith("; lower spec.replicas")


def test_the_pod_bound_counts_every_workload_and_names_the_one_that_passes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_PODS", 10)
    write(tmp_path, "a.yaml", deployment("a", "{app: a}", replicas=6))
    write(tmp_path, "b.yaml", deployment("b", "{app: b}", replicas=4))
    assert len(load(tmp_path).pods) == 10  # exactly at the bound
    write(
        tmp_path,
        "c.yaml",
        "kind: Job\nmetadata: {name: c}\nspec: {parallelism: 1, template: {spec: {}}}\n",
    )
    message = load_error(tmp_path)
    assert message.startswith(f"{tmp_path / 'c.yaml'}: document 1 (Job default/c): ")
    assert "spec.parallelism: 1 Pods would make more than the 10 Pods" in message
    assert "(10 before this Job" in message


def test_selectors_that_give_too_many_endpoints_name_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_SELECTED_ENDPOINTS", 25)
    services = "".join(
        f"---\nkind: Service\nmetadata: {{name: s{i}}}\nspec: {{selector: {{app: x}}}}\n"
        for i in range(3)
    )
    write(tmp_path, "m.yaml", deployment("x", "{app: x}", replicas=10) + services)
    message = load_error(tmp_path)
    assert "document 4 (Service default/s2): spec.selector: the Services' selectors give " in (
        message
    )
    assert "more than 25 endpoints in all (10 from this Service)" in message


def test_selectors_that_examine_too_many_pods_name_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every Service selects app=x AND its own label no Pod has: no endpoint at all, but
    # each Service examines every app=x Pod.
    monkeypatch.setattr(limits, "MAX_SELECTOR_CANDIDATES", 45)
    services = "".join(
        f"---\nkind: Service\nmetadata: {{name: s{i}}}\nspec: {{selector: {{app: x, common: y}}}}\n"
        for i in range(5)
    )
    write(tmp_path, "m.yaml", deployment("x", "{app: x, common: y}", replicas=10) + services)
    message = load_error(tmp_path)
    assert "(Service default/s4): spec.selector: matching the selectors examined more " in message


def test_a_full_pod_cidr_is_an_error_found_without_probing_every_address(
    tmp_path: Path,
) -> None:
    # 256 addresses, 3 never used (network, gateway, last): 253 pods fit, 254 do not.
    write(tmp_path, "d.yaml", deployment("d", "{app: d}", replicas=253))
    pods = load(tmp_path, pod_cidrs=[ip_network("10.244.0.0/24")]).pods
    assert len({p.ips[0] for p in pods}) == 253
    write(tmp_path, "d.yaml", deployment("d", "{app: d}", replicas=254))
    message = load_error(tmp_path, pod_cidrs=[ip_network("10.244.0.0/24")])
    assert "no free pod IP in 10.244.0.0/24" in message
    assert message.endswith("use a larger --pod-cidr")


# ---- YAML: aliases, merge keys, nesting, numbers -------------------------------------------


def laughs(levels: int, width: int = 10) -> str:
    """The "billion laughs": each level is `width` aliases of the one before."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def billion_laughs_deployment() -> str:
    # 9 levels of 10 aliases: 10**9 strings once expanded, in a 700-byte file. Any walk of
    # spec.replicas (even printing it in an error) would visit all of them.
    return (
        "kind: Deployment\nmetadata: {name: lol}\nlaughs:\n"
        + "".join(f"  {line}\n" for line in laughs(9).splitlines())
        + "spec: {replicas: *l8}\n"
    )


def test_a_billion_laughs_document_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "lol.yaml", billion_laughs_deployment())
    message = load_error(path)
    assert message.startswith(f"{path}: document 1: aliases (*name) repeat more than 1000000 ")
    assert message.endswith("write the repeated values out, or split the file")


def test_an_error_about_a_huge_value_does_not_walk_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_ALIAS_VALUES", 10**10)  # the laughs pass the bound
    path = write(tmp_path, "lol.yaml", billion_laughs_deployment())
    assert load_error(path) == (
        f"{path}: document 1 (Deployment default/lol): spec.replicas: a list of 10 items is "
        "not a count (an integer from 0 to 2147483647); use an integer 0 or more"
    )


def test_aliases_that_only_share_a_little_are_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        "kind: Service\nmetadata: {name: a}\nspec: {ports: &ports [{name: http, port: 80}]}\n"
        "---\nkind: Service\nmetadata: {name: b}\nspec: {ports: *ports}\n",
    )
    # Each document is parsed apart, so the second cannot see the first's anchor: YAML
    # says an alias refers to an anchor of its own document.
    assert "found undefined alias" in load_error(tmp_path)
    write(
        tmp_path,
        "a.yaml",
        "kind: List\nitems:\n"
        "- {kind: Service, metadata: {name: a}, spec: {ports: &ports [{name: http, port: 80}]}}\n"
        "- {kind: Service, metadata: {name: b}, spec: {ports: *ports}}\n",
    )
    services = {s.name: s for s in load(tmp_path).services}
    assert services["a"].ports == services["b"].ports
    assert services["b"].ports[0].port == 80


def test_merge_keys_that_copy_too_much_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_ALIAS_VALUES", 1000)
    base = ", ".join(f"k{i}: v" for i in range(100))
    merged = "\n".join(f"m{i}: {{<<: *base}}" for i in range(20))  # 20 x 100 pairs copied
    path = write(
        tmp_path,
        "m.yaml",
        f"kind: ConfigMap\nmetadata: {{name: m}}\nb: &base {{{base}}}\n{merged}\n",
    )
    message = load_error(path)
    assert re.match(
        rf"{re.escape(str(path))}: line \d+: merge keys \(<<\) copy more than 1000 ", message
    )


def test_merge_keys_keep_their_meaning(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.yaml",
        "kind: List\ndefaults: &svc {kind: Service, spec: {ports: [{port: 80}]}}\nitems:\n"
        "- {<<: *svc, metadata: {name: a}}\n"
        "- {<<: [{metadata: {name: b}}, *svc], spec: {ports: [{port: 81}]}}\n",
    )
    ports = {s.name: s.ports[0].port for s in load(tmp_path).services if s.name in "ab"}
    assert ports == {"a": 80, "b": 81}  # the mapping's own key wins over the merged one


def test_an_alias_loop_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "loop.yaml", "kind: ConfigMap\nmetadata: {name: l}\nx: &x [1, *x]\n")
    assert load_error(path).startswith(
        f"{path}: document 1: a YAML alias refers to a value that contains it"
    )


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("deep.yaml", "x: " + "[" * 100_000 + "]" * 100_000, "line 1 column "),
        ("deep.json", '{"kind": "List", "items": [' + "[" * 100_000 + "]" * 100_000 + "]}", ""),
        ("deep-object.json", "[" * 100_000 + "]" * 100_000, ""),
    ],
)
def test_deep_nesting_is_one_line_error(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = write(tmp_path, name, text)
    message = load_error(path)
    assert message.startswith(f"{path}: {expected}"), message
    assert "nest" in message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("n.yaml", "kind: Deployment\nmetadata: {name: d}\nspec: {replicas: " + "9" * 5000 + "}"),
        ("n.json", '{"kind": "Deployment", "spec": {"replicas": ' + "9" * 5000 + "}}"),
        ("l.json", '{"kind": "List", "items": [{"replicas": ' + "9" * 5000 + "}]}"),
    ],
)
def test_a_number_too_long_to_convert_is_one_line_error(
    tmp_path: Path, name: str, text: str
) -> None:
    path = write(tmp_path, name, text)
    assert load_error(path).startswith(f"{path}: a number too long to read")


def test_a_long_value_in_an_error_is_cut(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "kind: Service\nmetadata: {name: " + "x" * 100_000 + "}\n")
    message = load_error(path)
    assert len(message) < 1000
    assert '..." (100000 characters) is not a valid Service name' in message


# ---- sizes ---------------------------------------------------------------------------------


def test_a_file_over_the_size_bound_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:  # sparse: no disk is used, and nothing may read it
        f.truncate(limits.MAX_FILE_BYTES + 1)
    assert load_error(path) == (
        f"{path}: 256 MiB, more than the 256 MiB kdns reads from one file; "
        "split it into several files"
    )
    os.truncate(path, 0)  # at the bound it is read (empty here)
    assert load(path).services


def test_a_yaml_document_over_the_size_bound_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_YAML_DOCUMENT_BYTES", 2048)
    small = services_yaml([f"s{i}" for i in range(100)])  # 100 small documents, 6 KiB
    assert len(small) > 2048
    write(tmp_path, "small.yaml", small)
    assert len(load(tmp_path).services) == 101
    big = "kind: List\nitems:\n" + "".join(
        f"- {{kind: Service, metadata: {{name: b{i}}}}}\n" for i in range(100)
    )
    path = write(tmp_path, "big.yaml", small + "\n---\n" + big)
    message = load_error(path)
    line = small.count("\n") + 2  # the --- that starts it
    assert re.match(
        rf"{re.escape(str(path))}: line {line}: a YAML document of [\d.]+ KiB, more than the "
        "2 KiB kdns parses at once; ",
        message,
    )
    assert message.endswith("or a JSON List, which is read item by item")


def test_a_big_json_list_is_not_bound_by_the_yaml_document_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_YAML_DOCUMENT_BYTES", 2048)
    items = [{"kind": "Service", "metadata": {"name": f"s{i}"}} for i in range(100)]
    write(tmp_path, "l.json", json.dumps({"kind": "List", "items": items}))
    assert len(load(tmp_path).services) == 101
