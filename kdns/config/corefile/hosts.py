"""`hosts [FILE [ZONES...]] { ... }` (CoreDNS's README and setup.go).

FILE defaults to /etc/hosts; ZONES to the block's. Options: `ttl SECONDS` (1..65535,
default 3600), `no_reverse`, `reload DURATION` (default 5s, 0 = never), `fallthrough
[ZONES...]`, `fallthrough_unsupported` (needs `fallthrough`). Any other line of the block
before `fallthrough` is an inline hosts line, `IP NAME...`; after it, CoreDNS refuses
unknown lines, and so does kdns.

Stricter than CoreDNS, which skips what it cannot use: an inline line that is not
`IP NAME...`, or that names a host outside the plugin's zones, is refused (it would never
be served). The file itself is read when serving starts, not here.

No I/O here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

from kdns.config.corefile import common
from kdns.config.corefile.common import BlockView
from kdns.config.corefile.parser import Line
from kdns.config.corefile.values import normalize_zone
from kdns.config.model import HostsConfig, Origin

_TAKES = (
    "inline `IP NAME...` lines, `ttl SECONDS`, `no_reverse`, `reload DURATION`, "
    "`fallthrough [ZONES...]` and `fallthrough_unsupported`"
)
_OPTIONS = ("ttl", "no_reverse", "reload", "fallthrough", "fallthrough_unsupported")


def read_hosts(lines: Sequence[Line], block: BlockView) -> HostsConfig | None:
    line = common.once(lines, block, why="CoreDNS allows hosts once per server block: keep one")
    args = line.args
    path = Path(args[0]) if args else Path("/etc/hosts")
    zones = common.zones_or_block("hosts", args[1:], line, block)
    if zones is None:
        return None
    values: dict[str, object] = {}
    inline: list[str] = []
    seen: dict[str, Origin] = {}
    ok = True
    for option in line.block or ():
        if option.name not in _OPTIONS:
            if "fallthrough" in seen:
                block.add(
                    option.origin,
                    f"hosts: unknown option {option.name!r} (after fallthrough, lines are "
                    f"options, not hosts lines); hosts takes {_TAKES}",
                )
                ok = False
            else:
                entry = _inline(option, zones, block)
                ok = ok and entry is not None
                if entry is not None:
                    inline.append(entry)
            continue
        if not common.no_block(option, block, plugin="hosts") or common.twice(
            "hosts", option, seen, block
        ):
            ok = False
            continue
        ok = _option(option, block, values) and ok
    if "fallthrough_unsupported" in values and "fallthrough" not in values:
        block.add(
            seen["fallthrough_unsupported"],
            "hosts: fallthrough_unsupported requires fallthrough; add `fallthrough`",
        )
        ok = False
    if not ok:
        return None
    return HostsConfig(
        path=path,
        zones=tuple(zones),
        inline=tuple(inline),
        origin=line.origin,
        **values,  # type: ignore[arg-type]
    )


def _option(option: Line, block: BlockView, values: dict[str, object]) -> bool:
    name = option.name
    if name in ("no_reverse", "fallthrough_unsupported"):
        if option.args:
            block.add(option.origin, f"hosts: {name} takes no arguments")
            return False
        values["reverse" if name == "no_reverse" else name] = name != "no_reverse"
    elif name == "ttl":
        ttl = common.integer("hosts", option, block, lo=1, hi=65535)
        if ttl is None:
            return False
        values["ttl"] = ttl
    elif name == "reload":
        reload = common.duration("hosts", option, block, example="`reload 10s` (0 = never)")
        if reload is None:
            return False
        values["reload"] = reload
    else:  # fallthrough
        zones = common.fallthrough("hosts", option, block)
        if zones is None:
            return False
        values["fallthrough"] = zones
    return True


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A hosts-file address as Go's net.ParseIP reads it, an IPv6 zone (`%eth0`) dropped;
    an IPv4-mapped IPv6 address is the IPv4 address."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _inline(option: Line, zones: Sequence[str], block: BlockView) -> str | None:
    """An inline hosts line, `IP NAME...`, checked as the plugin will read it."""
    text = " ".join((option.name, *option.args))
    if option.block is not None or parse_address(option.name) is None or not option.args:
        block.add(
            option.origin,
            f"hosts: {text!r} is neither an option nor a hosts line (`IP NAME...`); hosts "
            f"takes {_TAKES}",
        )
        return None
    for host in option.args:
        try:
            name = normalize_zone(host)
        except ValueError as exc:
            block.add(option.origin, f"hosts: {exc.args[0].replace('zone name', 'host name')}")
            return None
        if not common.in_zones(name, zones):
            block.add(
                option.origin,
                f"hosts: {host} is outside the zones hosts serves ({' '.join(zones)}), so it "
                "would never be answered; list it under a zone of this plugin",
            )
            return None
    return text
