"""`bufsize [SIZE]` (CoreDNS's README and setup.go): SIZE from 512 to 4096, 1232 when left
out; once per server block; no options.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdns.config.corefile.common import BlockView, once
from kdns.config.corefile.parser import Line
from kdns.config.corefile.values import parse_int
from kdns.config.model import BufsizeConfig

MIN_SIZE = 512  # RFC 6891 §6.2.5
MAX_SIZE = 4096


def read_bufsize(lines: Sequence[Line], block: BlockView) -> BufsizeConfig | None:
    line = once(lines, block, why="CoreDNS reads only the first: keep one")
    if line.block is not None:
        block.add(line.origin, "bufsize takes no { } block: write `bufsize [SIZE]`")
        return None
    if len(line.args) > 1:
        block.add(line.origin, "bufsize takes one SIZE at most: `bufsize [SIZE]`, e.g. 1232")
        return None
    if not line.args:
        return BufsizeConfig(origin=line.origin)
    try:
        size = parse_int(line.args[0], what="bufsize: SIZE")
    except ValueError as exc:
        block.add(line.origin, str(exc))
        return None
    if not MIN_SIZE <= size <= MAX_SIZE:
        block.add(line.origin, f"bufsize: SIZE must be from {MIN_SIZE} to {MAX_SIZE}, not {size}")
        return None
    return BufsizeConfig(size=size, origin=line.origin)
