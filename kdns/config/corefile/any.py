"""`any` (CoreDNS's README and setup.go): no arguments, no options.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdns.config.corefile.common import BlockView, once
from kdns.config.corefile.parser import Line
from kdns.config.model import AnyConfig


def read_any(lines: Sequence[Line], block: BlockView) -> AnyConfig | None:
    line = once(lines, block, why="keep one")
    ok = True
    if line.args:
        block.add(line.origin, "any takes no arguments: write `any`")
        ok = False
    for option in line.block or ():
        block.add(option.origin, f"any: unknown option {option.name!r}; any takes no options")
        ok = False
    return AnyConfig(origin=line.origin) if ok else None
