"""The manifests data source: a folder of YAML/JSON Kubernetes objects served as a cluster.

Reads manifests, turns workloads into Pods, allocates stable ClusterIPs and pod IPs,
computes EndpointSlices as the EndpointSlice controller would, and watches the files for
edits. Produces the same `kdns.cluster.model` events as the Kubernetes API source; must
not import that source, the DNS side or the `kubernetes` package. See
docs/architecture.md ("kdns/sources/") and docs/operations.md (`kdns manifests`).

One module per concern, in the order a load runs:

- `files`: finding the files and reading their documents (`yamldocs`: YAML, bounded;
  `jsonlist`: a JSON `List` item by item);
- `load`: the phases (parse, allocate, compute) and the kinds read; `services` and
  `workloads` parse Services and Pods (workloads expanded as their controllers would);
  `validate` checks fields as the API server does; `limits` bounds what a load builds;
  the kubernetes plugin's filters (`SourceFilter`) apply last, after allocation;
- `allocate`: stable ClusterIPs and pod IPs;
- `endpoints`: EndpointSlices computed for selector Services;
- `data`: the result and its events; `table`: the kubectl-like table;
- `poll`: the polling loop and its `ReloadStatus`.

The rules are fixed so answers are the same on every start; each module's docstring
states its own.
"""

from kdns.sources.manifests.data import ManifestData, digests, events
from kdns.sources.manifests.errors import ManifestError
from kdns.sources.manifests.files import manifest_files
from kdns.sources.manifests.load import load_manifests
from kdns.sources.manifests.poll import ReloadStatus, run_manifests
from kdns.sources.manifests.table import render_endpoints

__all__ = [
    "ManifestData",
    "ManifestError",
    "ReloadStatus",
    "digests",
    "events",
    "load_manifests",
    "manifest_files",
    "render_endpoints",
    "run_manifests",
]
