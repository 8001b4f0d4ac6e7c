"""The kubectl-like table and the start-up summary."""

from __future__ import annotations

from pathlib import Path

from kdns.sources.manifests import (
    render_endpoints,
)
from tests.sources.manifests.helpers import (
    SEED,
    list_objects,
    load,
    services_yaml,
    write,
)


def test_seed_summary_shows_kubectl_like_endpoints() -> None:
    text = render_endpoints(load(SEED))
    lines = {line.split()[1]: line for line in text.splitlines()[1:]}
    assert "10/10" in lines["svc-test"]
    assert lines["svc-test"].endswith(" + 7 more...")  # kubectl shows three, then the rest
    assert lines["svc-test"].count(":8080") == 3
    assert "NodePort" in lines["svc-test"]
    assert "LoadBalancer" in lines["cloud-lb"]


def test_summary_counts_and_caps_the_table(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", services_yaml([f"s{i}" for i in range(30)]))
    lines = load(tmp_path).summary_lines(max_services=5)
    assert lines[0].startswith("manifests: 1 files, 31 services, 0 endpointslices")
    assert lines[1].split()[:2] == ["NAMESPACE", "NAME"]
    assert len(lines) == 1 + 1 + 5 + 1
    assert lines[-1] == "... and 26 more services"


def test_summary_renders_only_the_printed_rows_with_exact_totals(tmp_path: Path) -> None:
    import json

    objs = list_objects(60, 40)  # 60 Services x 40 endpoints, one not ready per slice
    long_name = "a-service-name-longer-than-any-other-one"
    objs.append({"kind": "Service", "metadata": {"name": long_name, "namespace": "zz"}})
    write(tmp_path, "list.json", json.dumps({"kind": "List", "items": objs}))
    data = load(tmp_path)
    lines = data.summary_lines(max_services=5)
    assert lines[0].startswith(
        f"manifests: 1 files, {60 + 2} services, 60 endpointslices ({60 * 39} ready endpoints)"
    )
    assert len(lines) == 1 + 1 + 5 + 1
    assert lines[-1] == f"... and {62 - 5} more services"
    # The rows printed are those of the full table, padded for every Service (the long
    # name beyond the cut widens the NAME column).
    assert lines[1:7] == render_endpoints(data).splitlines()[:6]
    first = lines[2].split()
    assert first[:5] == ["big", "svc-000", "ClusterIP", "None", "39/40"]
    assert first[5:] == ["10.0.0.1:80,10.0.0.3:80,10.0.0.4:80", "+", "36", "more..."]
    assert lines[2].index("ClusterIP") == lines[1].index("TYPE") > len(long_name)
