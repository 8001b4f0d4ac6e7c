"""Corefile -> `Config`: server block keys, each block's plugins, and the rules between
blocks, with every problem collected before one CorefileError is raised.

Keys are `[dns://]ZONE[:PORT]`, several per block. A key without a port takes `dns_port`
(CoreDNS's -dns.port). Zones are lower-case and fully qualified; a CIDR stands for its
reverse zones. A block whose keys name several ports becomes one `ServerBlock` per port,
sharing its plugins (CoreDNS makes one server per key and shares the block's plugins).

The only I/O is reading the Corefile, its imports and the files `forward` names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from kdns.config.corefile.autopath import check_autopath
from kdns.config.corefile.directives import READERS, Block, read_bind, refuse_unknown
from kdns.config.corefile.parser import BlockSyntax, Line, parse
from kdns.config.corefile.problems import CorefileError, Problem, Problems
from kdns.config.corefile.values import format_duration, parse_port, zones_from
from kdns.config.model import (
    Config,
    HealthConfig,
    Origin,
    PluginConfig,
    PrometheusConfig,
    ReadyConfig,
    ReloadConfig,
    ServerBlock,
)

# Schemes CoreDNS serves besides plain DNS, by what they are.
_OTHER_TRANSPORTS = {
    "tls": "DNS over TLS",
    "https": "DNS over HTTPS",
    "https3": "DNS over HTTP/3",
    "quic": "DNS over QUIC",
    "grpc": "DNS over gRPC",
    "unix": "DNS over a unix socket",
}


def load_corefile(
    path: Path, *, dns_port: int = 53, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the Corefile at `path`; raises CorefileError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = Problem(Origin(str(path)), f"cannot read the Corefile: {reason}")
        raise CorefileError([problem]) from None
    config = parse_corefile_text(text, source=str(path), dns_port=dns_port, environ=environ)
    return replace(config, corefile=path)


def parse_corefile_text(
    text: str,
    *,
    source: str = "Corefile",
    dns_port: int = 53,
    environ: Mapping[str, str] | None = None,
    read_resolv_conf: Callable[[Path], str] | None = None,
) -> Config:
    """Build the Config of Corefile `text` as if read from `source` (imports are relative
    to its folder). `read_resolv_conf` reads the files `forward` names (tests fake it)."""
    parsed = parse(text, source=source, environ=os.environ if environ is None else environ)
    problems = Problems()
    problems.items.extend(parsed.problems)
    blocks: list[ServerBlock] = []
    for syntax in parsed.blocks:
        blocks.extend(_server_blocks(syntax, dns_port, problems, read_resolv_conf))
    _check_listeners(blocks, problems)
    _check_process_wide(blocks, problems)
    if not blocks and not problems:
        problems.add(
            Origin(source),
            "the Corefile has no server block: write e.g. `.:53 { forward . /etc/resolv.conf }`",
        )
    problems.raise_if_any()
    return Config(blocks=tuple(blocks), digest=parsed.digest)


def corefile_digest(path: Path, *, environ: Mapping[str, str] | None = None) -> str:
    """SHA-512 (hex) of the Corefile at `path` as parsed: what `reload` compares.

    Like CoreDNS's reload, it covers imported files and environment values and ignores
    comments; it does not check the plugins. Raises CorefileError when the file cannot
    be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = Problem(Origin(str(path)), f"cannot read the Corefile: {reason}")
        raise CorefileError([problem]) from None
    parsed = parse(text, source=str(path), environ=os.environ if environ is None else environ)
    if parsed.problems:
        raise CorefileError(parsed.problems)
    return parsed.digest


# ---- one server block -------------------------------------------------------------------


def parse_key(text: str, *, dns_port: int) -> tuple[list[str], int]:
    """`[dns://]ZONE[:PORT]` -> its zones and port; raises ValueError."""
    rest = text
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme in _OTHER_TRANSPORTS:
            raise ValueError(
                f"{scheme}:// ({_OTHER_TRANSPORTS[scheme]}) is not supported by "
                "kdns, which serves plain DNS over UDP and TCP: write the key "
                "without a scheme, or with dns://"
            )
        if scheme != "dns":
            raise ValueError(
                f"unknown scheme {scheme}://: write the key without a scheme, or with dns://"
            )
    port = dns_port
    colon = rest.rfind(":")
    if colon >= 0 and "/" not in rest[colon:]:  # a CIDR's port follows its mask
        port_text = rest[colon + 1 :]
        if not port_text:
            raise ValueError("nothing follows ':': write ZONE:PORT, e.g. .:53")
        port = parse_port(port_text.lstrip("+"))
        rest = rest[:colon]
    if not rest:
        raise ValueError("no zone before the port: write .:53 for the root zone")
    return zones_from(rest), port


def _server_blocks(
    syntax: BlockSyntax,
    dns_port: int,
    problems: Problems,
    read_resolv_conf: Callable[[Path], str] | None,
) -> list[ServerBlock]:
    keys: list[tuple[str, int]] = []
    for key in syntax.keys:
        try:
            zones, port = parse_key(key.text, dns_port=dns_port)
        except ValueError as exc:
            problems.add(key.origin, f"server block key {key.text!r}: {exc}")
            continue
        keys.extend((zone, port) for zone in zones)
    block = Block(zones=tuple(dict.fromkeys(z for z, _ in keys)), problems=problems)
    if read_resolv_conf is not None:
        block.read_resolv_conf = read_resolv_conf

    by_name: dict[str, list[Line]] = {}
    for line in syntax.lines:
        by_name.setdefault(line.name, []).append(line)
    plugins: dict[str, PluginConfig] = {}
    bind: tuple[str, ...] = ()
    for name, lines in by_name.items():
        if name == "bind":
            bind = read_bind(lines, block) or ()
        elif name in READERS:
            if block.zones or name not in ("kubernetes", "cache", "file", "forward", "autopath"):
                config = READERS[name](lines, block)
                if config is not None:
                    plugins[name] = config
        else:
            for line in lines:
                refuse_unknown(line, block)
    if not check_autopath(plugins, block):
        plugins.pop("autopath")

    ports = list(dict.fromkeys(p for _, p in keys))
    return [
        ServerBlock(
            zones=tuple(dict.fromkeys(z for z, p in keys if p == port)),
            port=port,
            bind=bind,
            plugins=dict(plugins),
            origin=syntax.origin,
        )
        for port in ports
    ]


# ---- between server blocks --------------------------------------------------------------


def _check_listeners(blocks: list[ServerBlock], problems: Problems) -> None:
    """A zone and port is served once per address (CoreDNS: "already defined"); a block
    without `bind` listens everywhere, so it overlaps any block with one."""
    seen: dict[tuple[str, int], list[ServerBlock]] = {}
    for block in blocks:
        for zone in block.zones:
            others = seen.setdefault((zone, block.port), [])
            for other in others:
                shared = set(block.bind) & set(other.bind)
                if block.bind and other.bind and not shared:
                    continue
                where = f" on {', '.join(sorted(shared))}" if shared else ""
                same = " (in this same block)" if other is block else ""
                problems.add(
                    block.origin,
                    f"zone {zone} on port {block.port}{where} is "
                    f"already served by the server block at {other.origin}{same}; "
                    "CoreDNS refuses the same zone and port twice: merge the blocks "
                    "or give one another port or bind address",
                )
                break
            others.append(block)


def _check_process_wide(blocks: list[ServerBlock], problems: Problems) -> None:
    """`health`, `ready`, `prometheus` and `reload` run once per process in kdns: every
    block that enables one must configure it the same way."""
    first: dict[str, PluginConfig] = {}
    for block in blocks:
        for name in ("health", "ready", "prometheus", "reload"):
            config = block.plugins.get(name)
            if config is None:
                continue
            earlier = first.setdefault(name, config)
            if earlier is config or _settings(earlier) == _settings(config):
                continue
            problems.add(
                config.origin,
                f"{name}: kdns runs one {name} for the whole process, "
                f"but this block sets {_describe(config)} and the block at "
                f"{earlier.origin} sets {_describe(earlier)}: make them the "
                "same",
            )


def _settings(config: PluginConfig) -> PluginConfig:
    return replace(config, origin=Origin(""))


def _describe(config: PluginConfig) -> str:
    if isinstance(config, HealthConfig):
        return f"{config.addr} lameduck {format_duration(config.lameduck)}"
    if isinstance(config, ReadyConfig | PrometheusConfig):
        return str(config.addr)
    if isinstance(config, ReloadConfig):
        return f"{format_duration(config.interval)} {format_duration(config.jitter)}"
    return repr(config)
