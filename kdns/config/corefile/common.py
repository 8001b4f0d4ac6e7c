"""Checks the plugin readers share: a plugin given twice, an option with a block, zone
arguments, durations, `fallthrough [ZONES...]`. Each reports to the block's problems
and returns None (or False) after a problem, so a reader can carry on and report more.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kdns.config.corefile.parser import Line
from kdns.config.corefile.values import is_subdomain, parse_duration, parse_int, zones_from
from kdns.config.model import Origin


class BlockView(Protocol):
    """What a reader needs of its server block (`directives.Block`)."""

    zones: tuple[str, ...]

    def add(self, origin: Origin, message: str) -> None: ...

    def zone_list(self) -> str: ...


def once(lines: Sequence[Line], block: BlockView, *, why: str) -> Line:
    for extra in lines[1:]:
        block.add(
            extra.origin,
            f"{extra.name} is given twice in this server block (first at {lines[0].origin}); {why}",
        )
    return lines[0]


def no_block(line: Line, block: BlockView, *, plugin: str) -> bool:
    """False (and a problem) when an option line opens a { } block."""
    if line.block is not None:
        block.add(line.origin, f"{plugin}: option {line.name} takes no {{ }} block")
        return False
    return True


def twice(plugin: str, option: Line, seen: dict[str, Origin], block: BlockView) -> bool:
    """True (and a problem) when `option` was already given in this plugin's block."""
    if option.name in seen:
        block.add(
            option.origin,
            f"{plugin}: option {option.name} is given twice (first at "
            f"{seen[option.name]}); keep one",
        )
        return True
    seen[option.name] = option.origin
    return False


def zones(plugin: str, texts: Sequence[str], line: Line, block: BlockView) -> list[str] | None:
    """Zone arguments, normalized (CIDRs become reverse zones); None after a problem."""
    found: list[str] = []
    for text in texts:
        try:
            found.extend(zones_from(text))
        except ValueError as exc:
            block.add(line.origin, f"{plugin}: {exc}")
            return None
    return list(dict.fromkeys(found))


def zones_or_block(
    plugin: str, texts: Sequence[str], line: Line, block: BlockView
) -> list[str] | None:
    """ZONES when given, else the block's zones (CoreDNS's OriginsFromArgsOrServerBlock);
    given zones must lie inside the block's, or no query of the block reaches them."""
    if not texts:
        return list(block.zones)
    found = zones(plugin, texts, line, block)
    if found is None:
        return None
    outside = [z for z in found if not any(is_subdomain(z, b) for b in block.zones)]
    if outside and block.zones:
        block.add(
            line.origin,
            f"{plugin}: zone {' '.join(outside)} is outside this server "
            f"block's zones ({block.zone_list()}); list zones inside them, or add a "
            "server block for it",
        )
        return None
    return found


def fallthrough(plugin: str, option: Line, block: BlockView) -> tuple[str, ...] | None:
    """`fallthrough [ZONES...]`: () for every zone, else the zones; None after a problem."""
    found = zones(f"{plugin}: fallthrough", option.args, option, block)
    if found is None:
        return None
    return () if not found or "." in found else tuple(found)


def duration(plugin: str, option: Line, block: BlockView, *, example: str) -> float | None:
    """One non-negative Go duration argument."""
    if len(option.args) != 1:
        block.add(option.origin, f"{plugin}: {option.name} takes one DURATION, e.g. {example}")
        return None
    try:
        value = parse_duration(option.args[0])
    except ValueError as exc:
        block.add(option.origin, f"{plugin}: {option.name}: {exc}")
        return None
    if value < 0:
        block.add(option.origin, f"{plugin}: the {option.name} DURATION cannot be negative")
        return None
    return value


def integer(plugin: str, option: Line, block: BlockView, *, lo: int, hi: int) -> int | None:
    """One whole-number argument from `lo` to `hi`."""
    what = f"{plugin}: {option.name}"
    if len(option.args) != 1:
        block.add(option.origin, f"{what} takes one number from {lo} to {hi}")
        return None
    try:
        value = parse_int(option.args[0], what=what)
    except ValueError as exc:
        block.add(option.origin, str(exc))
        return None
    if not lo <= value <= hi:
        block.add(option.origin, f"{what} must be from {lo} to {hi}, not {value}")
        return None
    return value


def in_zones(name: str, zones: Sequence[str]) -> bool:
    return any(is_subdomain(name, z) for z in zones)


__all__ = [
    "BlockView",
    "duration",
    "fallthrough",
    "in_zones",
    "integer",
    "no_block",
    "once",
    "twice",
    "zones",
    "zones_or_block",
]
