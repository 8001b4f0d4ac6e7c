"""What one load may read and build: bounds that keep a hostile or mistaken manifest from
eating the machine (a Deployment with `replicas: 100000000000000000000`, a YAML
"billion laughs", a selector matching every Pod for every Service). Each is far above
what a real cluster has; passing one is an error naming the file, document and field.
"""

from __future__ import annotations

MIB = 1024 * 1024


def size_text(n: int | float) -> str:
    """A size for a message: "256 MiB", "4.5 MiB", "900 KiB", "12 bytes"."""
    for unit, scale in (("MiB", MIB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n:.0f} bytes"


MAX_FILE_BYTES = 256 * MIB
"""A manifest file is refused above this size, before it is read. A JSON `List` is read
item by item (1M endpoints are ~90 MB); split bigger sets over several files."""

MAX_YAML_DOCUMENT_BYTES = 4 * MIB
"""One YAML document (between `---` lines) is parsed whole, at 70-150 bytes of memory per
byte of YAML (PyYAML's nodes): a 4 MiB document of 25k Services already takes ~270 MB.
Write one document per object, or a JSON List, instead."""

MAX_ALIAS_VALUES = 1_000_000
"""Values that YAML aliases (`*name`) and merge keys (`<<`) may repeat in one file. PyYAML
shares an aliased value instead of copying it, but everything that walks the document
(and merge keys, which PyYAML does copy) sees every repetition: a few hundred bytes of
nested aliases stand for 10**9 values."""

MAX_PODS = 200_000
"""Pods in all: a workload whose Pods would bring the count (bare Pods included) above it
is refused. A real cluster holds at most 150,000 Pods (Kubernetes' scalability limits)."""

MAX_SELECTED_ENDPOINTS = 2_000_000
"""Endpoints computed for selector Services, in all (each Pod once per Service selecting it
and per IP family)."""

MAX_SELECTOR_CANDIDATES = 20_000_000
"""Pods examined while matching Service selectors, in all: a Service is matched against
the Pods carrying its rarest selector label."""
