"""One reader per plugin: the lines of a plugin in a server block -> its frozen config.

Each reader follows the plugin's CoreDNS README and setup.go: the same arguments, options,
defaults and limits. What kdns does not implement is refused by name, never skipped, with
what kdns takes instead. A reader gets every line of its plugin in the block (as CoreDNS's
setup does) and reports each problem to `Block.problems`; it returns None when nothing
usable is left.

The only I/O is reading the resolv.conf-style files `forward` names and checking that
the files of its `tls` option exist (they are loaded when the chain is built).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kdns.config.corefile.any import read_any
from kdns.config.corefile.bufsize import read_bufsize
from kdns.config.corefile.common import once
from kdns.config.corefile.common import twice as _twice
from kdns.config.corefile.common import zones as _zones
from kdns.config.corefile.hosts import read_hosts
from kdns.config.corefile.parser import Line
from kdns.config.corefile.problems import Problems
from kdns.config.corefile.rewrite import read_rewrite
from kdns.config.corefile.template import read_template
from kdns.config.corefile.values import (
    format_duration,
    is_reverse,
    is_subdomain,
    normalize_zone,
    parse_duration,
    parse_int,
    parse_ip,
    parse_listen,
    parse_port,
    split_host_port,
)
from kdns.config.model import (
    COMBINED_LOG_FORMAT,
    COMMON_LOG_FORMAT,
    HEALTH_ADDR,
    PROMETHEUS_ADDR,
    READY_ADDR,
    CacheConfig,
    Consolidate,
    ErrorsConfig,
    FileConfig,
    ForwardConfig,
    ForwardPolicy,
    HealthConfig,
    KubernetesConfig,
    LoadbalanceConfig,
    LogClass,
    LogConfig,
    LogRule,
    LoopConfig,
    Origin,
    PluginConfig,
    PrometheusConfig,
    ReadyConfig,
    ReloadConfig,
    StaleRefresh,
    TlsFiles,
    Upstream,
)
from kdns.config.resolvconf import MAX_UPSTREAMS, parse_resolv_conf
from kdns.config.selector import SelectorError, parse_selector
from kdns.config.settings import HostPort, PodMode


@dataclass
class Block:
    """What a plugin reader knows about its server block."""

    zones: tuple[str, ...]  # every zone of the block's keys, normalized
    problems: Problems
    read_resolv_conf: Callable[[Path], str] = field(default=lambda path: _read_text(path))

    def add(self, origin: Origin, message: str) -> None:
        self.problems.add(origin, message)

    def zone_list(self) -> str:
        return " ".join(self.zones)


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# ---- what exists ------------------------------------------------------------------------

# CoreDNS's plugin.cfg, in order: every directive a stock CoreDNS knows.
COREDNS_DIRECTIVES: tuple[str, ...] = (
    "root",
    "metadata",
    "geoip",
    "cancel",
    "proxyproto",
    "quic",
    "grpc_server",
    "https",
    "https3",
    "timeouts",
    "multisocket",
    "reload",
    "nsid",
    "bufsize",
    "bind",
    "debug",
    "trace",
    "ready",
    "health",
    "pprof",
    "shed",
    "prometheus",
    "errors",
    "log",
    "dnstap",
    "local",
    "dns64",
    "any",
    "chaos",
    "loadbalance",
    "tsig",
    "rewrite",
    "autopath",
    "acl",
    "cache",
    "header",
    "dnssec",
    "tls",
    "minimal",
    "template",
    "transfer",
    "hosts",
    "route53",
    "azure",
    "clouddns",
    "k8s_external",
    "kubernetes",
    "file",
    "auto",
    "secondary",
    "etcd",
    "loop",
    "forward",
    "grpc",
    "erratic",
    "whoami",
    "on",
    "sign",
    "view",
    "nomad",
)

SUPPORTED = (
    "errors, health, ready, prometheus, reload, loadbalance, log, cache, autopath, "
    "kubernetes, forward, loop, file, bind, import, hosts, rewrite, template, any and bufsize"
)

# Why a CoreDNS plugin is missing, and what to do instead, where there is something to say.
_HINTS = {
    "k8s_external": "not implemented yet",
    "root": "write absolute paths (or paths relative to the working directory)",
    "tls": "kdns serves plain DNS over UDP and TCP",
    "dnssec": "kdns does not sign answers",
    "whoami": "it is CoreDNS's default test plugin; remove it",
    "debug": "run kdns with --log-level debug instead",
    "acl": "restrict clients with a NetworkPolicy",
    "metadata": "kdns has no metadata labels",
    "view": "kdns has no views",
    "auto": "list each zone file with `file`",
    "transfer": "kdns does not serve zone transfers",
}

# Directive names people write that are not CoreDNS's.
_ALIASES = {
    "metrics": "prometheus",
    "proxy": "forward",
    "health_check": "health",
    "readiness": "ready",
}


def refuse_unknown(line: Line, block: Block) -> None:
    """A plugin kdns has no reader for: say why, and what to write instead."""
    name = line.name
    if name in COREDNS_DIRECTIVES:
        hint = _HINTS.get(name, "not implemented")
        block.add(
            line.origin,
            f"plugin {name} is not supported by kdns ({hint}); kdns supports {SUPPORTED}",
        )
        return
    guess = _ALIASES.get(name) or next(
        iter(difflib.get_close_matches(name, COREDNS_DIRECTIVES, n=1, cutoff=0.75)), None
    )
    also = f"; did you mean {guess}?" if guess else ""
    block.add(
        line.origin,
        f"unknown plugin {name!r} (not a CoreDNS plugin{also}); kdns supports {SUPPORTED}",
    )


# ---- shared checks ----------------------------------------------------------------------


def _once(
    lines: Sequence[Line], block: Block, *, why: str = "CoreDNS allows it once: keep one"
) -> Line:
    return once(lines, block, why=why)


def _no_block(line: Line, block: Block, *, plugin: str | None = None) -> None:
    if line.block is not None:
        owner = f"{plugin}: option {line.name}" if plugin else line.name
        block.add(line.origin, f"{owner} takes no {{ }} block")


def _not_yet(plugin: str, option: Line, block: Block, takes: str) -> None:
    block.add(
        option.origin,
        f"{plugin}: option {option.name} is not implemented in kdns yet; {plugin} takes {takes}",
    )


def _unknown_option(plugin: str, option: Line, block: Block, takes: str) -> None:
    block.add(option.origin, f"{plugin}: unknown option {option.name!r}; {plugin} takes {takes}")


def _inside_block(plugin: str, zones: Sequence[str], line: Line, block: Block) -> bool:
    """Every zone is a block zone or below one (else no query of this block reaches it)."""
    outside = [z for z in zones if not any(is_subdomain(z, b) for b in block.zones)]
    if outside:
        block.add(
            line.origin,
            f"{plugin}: zone {' '.join(outside)} is outside this server "
            f"block's zones ({block.zone_list()}); list zones inside them, or add a "
            "server block for it",
        )
        return False
    return True


def _overlaps_block(plugin: str, zone: str, line: Line, block: Block) -> bool:
    """`zone` is above, at or below a block zone (else it never matches a query here)."""
    if any(is_subdomain(zone, b) or is_subdomain(b, zone) for b in block.zones):
        return True
    block.add(
        line.origin,
        f"{plugin}: {zone} matches no query of this server block (its "
        f"zones are {block.zone_list()}); use a zone inside them, or add a server block "
        f"for {zone}",
    )
    return False


def _duration(plugin: str, text: str, line: Line, block: Block) -> float | None:
    try:
        return parse_duration(text)
    except ValueError as exc:
        block.add(line.origin, f"{plugin}: {exc}")
        return None


def _listen(plugin: str, line: Line, block: Block, default: HostPort) -> HostPort | None:
    if len(line.args) > 1:
        block.add(line.origin, f"{plugin} takes one address at most: `{plugin} [ADDRESS]`")
        return None
    if not line.args:
        return default
    try:
        return parse_listen(line.args[0])
    except ValueError as exc:
        block.add(line.origin, f"{plugin}: {exc}")
        return None


# ---- errors -----------------------------------------------------------------------------

_ERRORS_TAKES = "`consolidate DURATION REGEXP [LEVEL]`"
_LOG_LEVELS = ("warning", "error", "info", "debug")
_MAX_REGEXP = 10000  # CoreDNS's limit on a consolidate pattern


def read_errors(lines: Sequence[Line], block: Block) -> ErrorsConfig | None:
    line = _once(lines, block)
    ok = True
    if line.args and line.args != ("stdout",):
        block.add(
            line.origin, "errors: the only output is stdout: write `errors` (or `errors stdout`)"
        )
        ok = False
    patterns: list[Consolidate] = []
    for option in line.block or ():
        _no_block(option, block, plugin="errors")
        if option.name == "stacktrace":
            _not_yet("errors", option, block, _ERRORS_TAKES)
            ok = False
        elif option.name != "consolidate":
            _unknown_option("errors", option, block, _ERRORS_TAKES)
            ok = False
        else:
            pattern = _consolidate(option, block)
            ok = ok and pattern is not None
            if pattern is not None:
                patterns.append(pattern)
    return ErrorsConfig(tuple(patterns), origin=line.origin) if ok else None


def _consolidate(option: Line, block: Block) -> Consolidate | None:
    args = option.args
    if not 2 <= len(args) <= 4:
        block.add(option.origin, f"errors: consolidate takes {_ERRORS_TAKES[1:-1]}")
        return None
    interval = _duration("errors: consolidate", args[0], option, block)
    if interval is None:
        return None
    if interval <= 0:
        block.add(option.origin, "errors: the consolidate DURATION must be above 0")
        return None
    if len(args[1]) > _MAX_REGEXP:
        block.add(
            option.origin, f"errors: the consolidate REGEXP is longer than {_MAX_REGEXP} characters"
        )
        return None
    try:
        re.compile(args[1])
    except re.error as exc:
        block.add(
            option.origin,
            f"errors: consolidate REGEXP {args[1]!r} is not a valid regular expression: {exc}",
        )
        return None
    rest = args[2:]
    if "show_first" in rest:
        block.add(
            option.origin,
            "errors: consolidate's show_first is not implemented in "
            f"kdns yet; errors takes {_ERRORS_TAKES}",
        )
        return None
    if len(rest) > 1 or (rest and rest[0] not in _LOG_LEVELS):
        block.add(
            option.origin,
            f"errors: consolidate LEVEL {' '.join(rest)!r} is not one of {', '.join(_LOG_LEVELS)}",
        )
        return None
    level = rest[0] if rest else "error"
    return Consolidate(interval, args[1], level)


# ---- health, ready, prometheus ----------------------------------------------------------


def read_health(lines: Sequence[Line], block: Block) -> HealthConfig | None:
    line = _once(lines, block, why="kdns takes one health per server block: keep one")
    addr = _listen("health", line, block, HEALTH_ADDR)
    lameduck = 0.0
    seen: dict[str, Origin] = {}
    ok = addr is not None
    for option in line.block or ():
        _no_block(option, block, plugin="health")
        if option.name != "lameduck":
            _unknown_option("health", option, block, "`lameduck DURATION`")
            ok = False
            continue
        if _twice("health", option, seen, block):
            ok = False
            continue
        if len(option.args) != 1:
            block.add(option.origin, "health: lameduck takes one DURATION, e.g. `lameduck 5s`")
            ok = False
            continue
        value = _duration("health: lameduck", option.args[0], option, block)
        if value is None or value < 0:
            if value is not None:
                block.add(option.origin, "health: the lameduck DURATION cannot be negative")
            ok = False
            continue
        lameduck = value
    if not ok or addr is None:
        return None
    return HealthConfig(addr=addr, lameduck=lameduck, origin=line.origin)


def read_ready(lines: Sequence[Line], block: Block) -> ReadyConfig | None:
    line = _once(lines, block)
    addr = _listen("ready", line, block, READY_ADDR)
    ok = addr is not None
    for option in line.block or ():
        if option.name == "monitor":
            _not_yet("ready", option, block, "only an address (`ready [ADDRESS]`)")
        else:
            _unknown_option("ready", option, block, "only an address (`ready [ADDRESS]`)")
        ok = False
    if not ok or addr is None:
        return None
    return ReadyConfig(addr=addr, origin=line.origin)


def read_prometheus(lines: Sequence[Line], block: Block) -> PrometheusConfig | None:
    line = _once(lines, block)
    addr = _listen("prometheus", line, block, PROMETHEUS_ADDR)
    ok = addr is not None
    for option in line.block or ():
        if option.name in ("runtime_metrics", "tls"):
            _not_yet("prometheus", option, block, "only an address (`prometheus [ADDRESS]`)")
        else:
            _unknown_option("prometheus", option, block, "only an address (`prometheus [ADDRESS]`)")
        ok = False
    if not ok or addr is None:
        return None
    return PrometheusConfig(addr=addr, origin=line.origin)


# ---- reload, loop, loadbalance ----------------------------------------------------------

# CoreDNS reload: defaults 30s and 15s; INTERVAL at least 2s, JITTER 0 or at least 1s, and
# at most half of INTERVAL (cut down to that, not refused).
_RELOAD_MIN_INTERVAL = 2.0
_RELOAD_MIN_JITTER = 1.0


def read_reload(lines: Sequence[Line], block: Block) -> ReloadConfig | None:
    line = _once(lines, block)
    _no_block(line, block)
    if len(line.args) > 2:
        block.add(line.origin, "reload takes `reload [INTERVAL [JITTER]]`, e.g. `reload 30s 15s`")
        return None
    interval, jitter = 30.0, 15.0
    if line.args:
        value = _duration("reload", line.args[0], line, block)
        if value is None:
            return None
        interval = value
    if len(line.args) > 1:
        value = _duration("reload", line.args[1], line, block)
        if value is None:
            return None
        jitter = value
    if interval < _RELOAD_MIN_INTERVAL:
        block.add(
            line.origin,
            f"reload: INTERVAL must be at least "
            f"{format_duration(_RELOAD_MIN_INTERVAL)}, not {line.args[0]}",
        )
        return None
    if jitter != 0 and jitter < _RELOAD_MIN_JITTER:
        block.add(
            line.origin,
            f"reload: JITTER must be 0 or at least "
            f"{format_duration(_RELOAD_MIN_JITTER)}, not {line.args[1]}",
        )
        return None
    jitter = min(jitter, interval / 2)
    return ReloadConfig(interval=interval, jitter=jitter, origin=line.origin)


def read_loop(lines: Sequence[Line], block: Block) -> LoopConfig | None:
    line = _once(lines, block)
    _no_block(line, block)
    if line.args:
        block.add(line.origin, "loop takes no arguments: write `loop`")
        return None
    return LoopConfig(origin=line.origin)


def read_loadbalance(lines: Sequence[Line], block: Block) -> LoadbalanceConfig | None:
    line = _once(lines, block, why="kdns takes one loadbalance per server block: keep one")
    takes = "`loadbalance [round_robin]`"
    ok = True
    if line.args[:1] == ("weighted",):
        block.add(
            line.origin,
            f"loadbalance: the weighted policy is not implemented in kdns yet; kdns takes {takes}",
        )
        return None
    if line.args not in ((), ("round_robin",)):
        block.add(
            line.origin, f"loadbalance: unknown policy {' '.join(line.args)!r}; kdns takes {takes}"
        )
        ok = False
    for option in line.block or ():
        if option.name == "prefer":
            _not_yet("loadbalance", option, block, takes)
        else:
            _unknown_option("loadbalance", option, block, takes)
        ok = False
    return LoadbalanceConfig(origin=line.origin) if ok else None


# ---- log --------------------------------------------------------------------------------

_CLASSES = {c.value: c for c in LogClass}


def read_log(lines: Sequence[Line], block: Block) -> LogConfig | None:
    """Every `log` line of the block; each adds a rule per NAME (CoreDNS allows many)."""
    rules: list[LogRule] = []
    ok = True
    for line in lines:
        args = list(line.args)
        fmt = COMMON_LOG_FORMAT
        if len(args) == 1 and "{" in args[0]:
            block.add(
                line.origin,
                f"log: with one argument CoreDNS takes {args[0]!r} as a "
                f"NAME, not a FORMAT; write `log . {args[0]}`",
            )
            ok = False
            continue
        if len(args) > 1 and "{" in args[-1]:
            fmt = args.pop().replace("{common}", COMMON_LOG_FORMAT)
            fmt = fmt.replace("{combined}", COMBINED_LOG_FORMAT)
        names: list[str] = []
        for text in args or ["."]:
            try:
                names.append(normalize_zone(text))
            except ValueError as exc:
                block.add(line.origin, f"log: NAME {exc}")
                ok = False
        classes: set[LogClass] = set()
        for option in line.block or ():
            _no_block(option, block, plugin="log")
            if option.name != "class":
                _unknown_option("log", option, block, "`class CLASSES...`")
                ok = False
                continue
            if not option.args:
                block.add(
                    option.origin, "log: class takes one or more of all, denial, error, success"
                )
                ok = False
            for text in option.args:
                if text not in _CLASSES:
                    block.add(
                        option.origin,
                        f"log: unknown class {text!r}; the classes are "
                        "all, denial, error and success",
                    )
                    ok = False
                else:
                    classes.add(_CLASSES[text])
        chosen = frozenset(classes or {LogClass.ALL})
        rules.extend(LogRule(names=(name,), format=fmt, classes=chosen) for name in names)
    if not ok:
        return None
    return LogConfig(rules=tuple(rules), origin=lines[0].origin)


# ---- cache ------------------------------------------------------------------------------

_CACHE_TAKES = (
    "`success CAPACITY [TTL [MINTTL]]`, `denial CAPACITY [TTL [MINTTL]]`, "
    "`prefetch AMOUNT [[DURATION] [PERCENTAGE%]]`, `serve_stale [DURATION [immediate|verify "
    "...]]`, `disable success|denial [ZONES...]`, `servfail DURATION` and `keepttl`"
)
_CACHE_NOT_YET = ("serve_stale_policy",)
_SHARDS = 256  # CoreDNS's cache has 256 shards of at least 4 entries each
_DURATION_LIKE = re.compile(r"\d+(\.\d+)?(ns|us|µs|ms|s|m|h)")


def read_cache(lines: Sequence[Line], block: Block) -> CacheConfig | None:
    line = _once(lines, block)
    args = list(line.args)
    values: dict[str, Any] = {}
    ok = True
    if args and _DURATION_LIKE.fullmatch(args[0]):
        block.add(
            line.origin,
            f"cache: TTL is a number of seconds without a unit (CoreDNS "
            f"would take {args[0]!r} as a zone name): write e.g. `cache 30`",
        )
        return None
    if args and re.fullmatch(r"[+-]?\d+", args[0]):
        ttl = int(args.pop(0))
        if ttl <= 0:
            block.add(line.origin, f"cache: TTL must be above 0, not {ttl}")
            return None
        values["success_ttl"] = values["denial_ttl"] = ttl
    zones = _zones("cache", args, line, block) if args else list(block.zones)
    if zones is None:
        return None
    for zone in zones:
        ok = _overlaps_block("cache", zone, line, block) and ok
    seen: dict[str, Origin] = {}
    for option in line.block or ():
        _no_block(option, block, plugin="cache")
        name = option.name
        if name in _CACHE_NOT_YET:
            _not_yet("cache", option, block, _CACHE_TAKES)
            ok = False
        elif name in ("success", "denial"):
            ok = not _twice("cache", option, seen, block) and ok
            ok = _cache_kind(option, block, values) and ok
        elif name == "disable":
            ok = _cache_disable(option, block, values) and ok
        elif name == "servfail":
            ok = not _twice("cache", option, seen, block) and ok
            ok = _cache_servfail(option, block, values) and ok
        elif name in ("prefetch", "serve_stale", "keepttl"):
            ok = not _twice("cache", option, seen, block) and ok
            read = {"prefetch": _cache_prefetch, "serve_stale": _cache_stale}.get(name)
            if read is not None:
                ok = read(option, block, values) and ok
            elif option.args:
                block.add(option.origin, "cache: keepttl takes no arguments")
                ok = False
            else:
                values["keepttl"] = True
        else:
            _unknown_option("cache", option, block, _CACHE_TAKES)
            ok = False
    if not ok:
        return None
    return replace(CacheConfig(zones=tuple(zones), origin=line.origin), **values)


def _cache_kind(option: Line, block: Block, values: dict[str, Any]) -> bool:
    kind = option.name
    args = option.args
    if not 1 <= len(args) <= 3:
        block.add(option.origin, f"cache: {kind} takes CAPACITY [TTL [MINTTL]]")
        return False
    try:
        capacity = parse_int(args[0], what=f"cache: {kind} CAPACITY")
        ttl = parse_int(args[1], what=f"cache: {kind} TTL") if len(args) > 1 else None
        min_ttl = parse_int(args[2], what=f"cache: {kind} MINTTL") if len(args) > 2 else None
    except ValueError as exc:
        block.add(option.origin, str(exc))
        return False
    if capacity < 0:
        block.add(option.origin, f"cache: {kind} CAPACITY cannot be negative")
        return False
    if ttl is not None and ttl <= 0:
        block.add(option.origin, f"cache: {kind} TTL must be above 0, not {ttl}")
        return False
    if min_ttl is not None and min_ttl < 0:
        block.add(option.origin, f"cache: {kind} MINTTL cannot be negative")
        return False
    # CoreDNS rounds a capacity down to a multiple of its 256 shards, 1024 at least.
    values[f"{kind}_capacity"] = max(capacity // _SHARDS, 4) * _SHARDS
    if ttl is not None:
        values[f"{kind}_ttl"] = ttl
    if min_ttl is not None:
        values[f"{kind}_min_ttl"] = min_ttl
    return True


def _cache_disable(option: Line, block: Block, values: dict[str, Any]) -> bool:
    if not option.args or option.args[0] not in ("success", "denial"):
        block.add(option.origin, "cache: disable takes `disable success|denial [ZONES...]`")
        return False
    key = f"disable_{option.args[0]}"
    if key in values:
        block.add(
            option.origin,
            f"cache: `disable {option.args[0]}` is given twice; list all its zones on one line",
        )
        return False
    zones = _zones("cache: disable", option.args[1:], option, block)
    if zones is None:
        return False
    values[key] = tuple(zones) or (".",)
    return True


def _cache_servfail(option: Line, block: Block, values: dict[str, Any]) -> bool:
    if len(option.args) != 1:
        block.add(option.origin, "cache: servfail takes one DURATION, e.g. `servfail 5s`")
        return False
    value = _duration("cache: servfail", option.args[0], option, block)
    if value is None:
        return False
    if not 0 <= value <= 300:
        block.add(option.origin, "cache: servfail must be from 0s to 5m (RFC 2308 §7.1)")
        return False
    if value != int(value):
        block.add(option.origin, "cache: kdns caches SERVFAIL for whole seconds: write e.g. 5s")
        return False
    values["servfail_ttl"] = int(value)
    return True


def _cache_prefetch(option: Line, block: Block, values: dict[str, object]) -> bool:
    """`prefetch AMOUNT [[DURATION] [PERCENTAGE%]]` (PERCENTAGE from 10% to 90%)."""
    args = option.args
    if not 1 <= len(args) <= 3:
        block.add(option.origin, "cache: prefetch takes AMOUNT [[DURATION] [PERCENTAGE%]]")
        return False
    try:
        amount = parse_int(args[0], what="cache: prefetch AMOUNT")
    except ValueError as exc:
        block.add(option.origin, str(exc))
        return False
    if amount < 0:
        block.add(option.origin, f"cache: prefetch AMOUNT cannot be negative, not {amount}")
        return False
    values["prefetch"] = amount
    if len(args) > 1:
        gap = _duration("cache: prefetch DURATION", args[1], option, block)
        if gap is None:
            return False
        values["prefetch_gap"] = gap
    if len(args) > 2:
        text = args[2]
        if not text.endswith("%") or not re.fullmatch(r"\d+", text[:-1]):
            block.add(
                option.origin,
                f"cache: prefetch PERCENTAGE is a whole number with a % sign, e.g. 10%, "
                f"not {text!r}",
            )
            return False
        percentage = int(text[:-1])
        if not 10 <= percentage <= 90:
            block.add(option.origin, f"cache: prefetch PERCENTAGE must be 10% to 90%, not {text}")
            return False
        values["prefetch_percentage"] = percentage
    return True


_STALE_USAGE = (
    "cache: serve_stale takes [DURATION [immediate [RESPONSE_TTL [FAILURE_RECHECK]] | "
    "verify [VERIFY_TIMEOUT [RESPONSE_TTL [FAILURE_RECHECK]]]]]"
)


def _cache_stale(option: Line, block: Block, values: dict[str, object]) -> bool:
    """`serve_stale [DURATION [MODE ...]]`: DURATION defaults to 1h, MODE to immediate."""
    args = list(option.args)
    if len(args) > 5:
        block.add(option.origin, _STALE_USAGE)
        return False
    values["stale"] = 3600.0
    if args:
        seconds = _duration("cache: serve_stale DURATION", args.pop(0), option, block)
        if seconds is None:
            return False
        if seconds < 0:
            block.add(option.origin, "cache: serve_stale DURATION cannot be negative")
            return False
        values["stale"] = seconds
    if not args:
        return True
    mode = args.pop(0).lower()
    if mode not in ("immediate", "verify"):
        block.add(option.origin, f"cache: serve_stale mode {mode!r} is not immediate or verify")
        return False
    values["stale_refresh"] = StaleRefresh(mode)
    if mode == "verify" and args:
        timeout = _duration("cache: serve_stale VERIFY_TIMEOUT", args.pop(0), option, block)
        if timeout is None:
            return False
        if timeout < 0:
            block.add(option.origin, "cache: serve_stale VERIFY_TIMEOUT cannot be negative")
            return False
        values["stale_verify_timeout"] = timeout
    if len(args) > 2:
        block.add(option.origin, _STALE_USAGE)
        return False
    if args:
        ttl = _duration("cache: serve_stale RESPONSE_TTL", args.pop(0), option, block)
        if ttl is None:
            return False
        if ttl < 0 or ttl != int(ttl) or ttl > 0xFFFFFFFF:
            block.add(
                option.origin,
                "cache: serve_stale RESPONSE_TTL is whole seconds, 0 or more (RFC 8767 "
                "recommends 30s)",
            )
            return False
        values["stale_ttl"] = int(ttl)
    if args:
        recheck = _duration("cache: serve_stale FAILURE_RECHECK", args.pop(0), option, block)
        if recheck is None:
            return False
        if not 0 <= recheck <= 300:
            block.add(option.origin, "cache: serve_stale FAILURE_RECHECK must be 0s to 5m")
            return False
        values["stale_recheck"] = recheck
    return True


# ---- kubernetes -------------------------------------------------------------------------

_K8S_TAKES = (
    "`pods disabled|insecure|verified`, `ttl SECONDS`, `fallthrough [ZONES...]`, "
    "`kubeconfig FILE [CONTEXT]`, `endpoint URL`, `namespaces NAMESPACE...`, "
    "`namespace_labels SELECTOR`, `labels SELECTOR`, `endpoint_pod_names`, `noendpoints` "
    "and `ignore empty_service`"
)
_K8S_OPTIONS = (
    "pods",
    "ttl",
    "fallthrough",
    "kubeconfig",
    "endpoint",
    "namespaces",
    "namespace_labels",
    "labels",
    "endpoint_pod_names",
    "noendpoints",
    "ignore",
)
_K8S_NOT_YET = (
    "tls",
    "multicluster",
    "zonal",
    "startup_timeout",
    "apiserver_qps",
    "apiserver_burst",
    "apiserver_max_inflight",
)
_K8S_REMOVED = ("resyncperiod", "upstream", "transfer", "wildcard", "autopath", "federation")


def read_kubernetes(lines: Sequence[Line], block: Block) -> KubernetesConfig | None:
    line = _once(lines, block)
    zones = _zones("kubernetes", line.args, line, block) if line.args else list(block.zones)
    if zones is None:
        return None
    ok = _inside_block("kubernetes", zones, line, block)
    if zones and all(is_reverse(z) for z in zones):
        block.add(
            line.origin,
            "kubernetes needs a zone that is not a reverse zone, e.g. "
            "`kubernetes cluster.local in-addr.arpa ip6.arpa`",
        )
        ok = False
    values: dict[str, Any] = {}
    seen: dict[str, Origin] = {}
    for option in line.block or ():
        _no_block(option, block, plugin="kubernetes")
        name = option.name
        if name in _K8S_NOT_YET:
            _not_yet("kubernetes", option, block, _K8S_TAKES)
            ok = False
        elif name in _K8S_REMOVED:
            block.add(
                option.origin,
                f"kubernetes: option {name} was removed from CoreDNS; "
                f"kubernetes takes {_K8S_TAKES}",
            )
            ok = False
        elif name not in _K8S_OPTIONS:
            _unknown_option("kubernetes", option, block, _K8S_TAKES)
            ok = False
        elif _twice("kubernetes", option, seen, block):
            ok = False
        else:
            ok = _k8s_option(option, block, values) and ok
    if "namespaces" in seen and "namespace_labels" in seen:
        block.add(
            seen["namespace_labels"],
            "kubernetes: namespaces and namespace_labels cannot both be set (as in CoreDNS); "
            "keep one, e.g. `namespace_labels kubernetes.io/metadata.name in (a, b)`",
        )
        ok = False
    if not ok:
        return None
    return replace(KubernetesConfig(zones=tuple(zones), origin=line.origin), **values)


def _k8s_option(option: Line, block: Block, values: dict[str, Any]) -> bool:
    args = option.args
    name = option.name
    if name == "pods":
        if len(args) != 1 or args[0] not in {m.value for m in PodMode}:
            block.add(option.origin, "kubernetes: pods takes one of disabled, insecure, verified")
            return False
        values["pods"] = PodMode(args[0])
    elif name == "ttl":
        if len(args) != 1:
            block.add(option.origin, "kubernetes: ttl takes one number of seconds, 0 to 3600")
            return False
        try:
            ttl = parse_int(args[0], what="kubernetes: ttl")
        except ValueError as exc:
            block.add(option.origin, str(exc))
            return False
        if not 0 <= ttl <= 3600:
            block.add(option.origin, f"kubernetes: ttl must be from 0 to 3600, not {ttl}")
            return False
        values["ttl"] = ttl
    elif name == "fallthrough":
        zones = _zones("kubernetes: fallthrough", args, option, block)
        if zones is None:
            return False
        values["fallthrough"] = () if "." in zones else tuple(zones)
    elif name == "kubeconfig":
        if len(args) not in (1, 2):
            block.add(option.origin, "kubernetes: kubeconfig takes FILE [CONTEXT]")
            return False
        values["kubeconfig"] = Path(args[0])
        values["context"] = args[1] if len(args) == 2 else None
    elif name in ("namespaces", "namespace_labels", "labels", "endpoint_pod_names",
                  "noendpoints", "ignore"):  # fmt: skip
        return _k8s_filter(option, block, values)
    else:  # endpoint
        if len(args) != 1:
            block.add(
                option.origin,
                "kubernetes: endpoint takes one URL (CoreDNS uses only the first of several)",
            )
            return False
        if not re.fullmatch(r"https?://[^\s/]+/?", args[0]):
            block.add(
                option.origin,
                f"kubernetes: endpoint {args[0]!r} is not an API server "
                "URL like https://10.0.0.1:6443",
            )
            return False
        values["endpoint"] = args[0].rstrip("/")
    return True


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _k8s_filter(option: Line, block: Block, values: dict[str, object]) -> bool:
    """The options that choose what is served: namespaces, label selectors, endpoints."""
    args = option.args
    name = option.name
    if name == "namespaces":
        if not args:
            block.add(option.origin, "kubernetes: namespaces takes at least one NAMESPACE")
            return False
        bad = [a for a in args if not _NAMESPACE.fullmatch(a.lower())]
        if bad:
            block.add(
                option.origin,
                f"kubernetes: namespaces: {bad[0]!r} is not a namespace name (a DNS label); "
                "separate namespaces with spaces, e.g. `namespaces default kube-system`",
            )
            return False
        values["namespaces"] = tuple(dict.fromkeys(a.lower() for a in args))
    elif name in ("namespace_labels", "labels"):
        if not args:
            block.add(option.origin, f"kubernetes: {name} takes a label SELECTOR, e.g. app=web")
            return False
        try:
            values[name] = parse_selector(" ".join(args))
        except SelectorError as exc:
            block.add(option.origin, f"kubernetes: {name} {' '.join(args)!r}: {exc}")
            return False
    elif name == "ignore":
        if args != ("empty_service",):
            block.add(option.origin, "kubernetes: ignore takes one value: `ignore empty_service`")
            return False
        values["ignore_empty_service"] = True
    else:  # endpoint_pod_names, noendpoints
        if args:
            block.add(option.origin, f"kubernetes: {name} takes no arguments")
            return False
        values[name] = True
    return True


# ---- forward ----------------------------------------------------------------------------

_FORWARD_TAKES = (
    "`except NAMES...`, `force_tcp`, `prefer_udp`, `expire DURATION`, `max_fails N`, "
    "`health_check DURATION [no_rec] [domain FQDN]`, `tls [CERT KEY] [CA]`, "
    "`tls_servername NAME`, `policy random|round_robin|sequential`, "
    "`read_timeout DURATION` and `max_concurrent N`"
)
_FORWARD_NOT_YET = (
    "max_idle_conns",
    "max_connect_attempts",
    "doh_method",
    "max_age",
    "next",
    "next_on_nodata",
    "failfast_all_unhealthy_upstreams",
    "failover",
    "source_address",
    "resolver",
)
_FORWARD_FLAGS = ("force_tcp", "prefer_udp")  # options without arguments
_FORWARD_ONE = ("expire", "max_fails", "tls_servername", "policy", "read_timeout", "max_concurrent")
_POLICIES = {p.value: p for p in ForwardPolicy}


def read_forward(lines: Sequence[Line], block: Block) -> ForwardConfig | None:
    for extra in lines[1:]:
        block.add(
            extra.origin,
            f"forward is given twice in this server block (first at "
            f"{lines[0].origin}); kdns takes one forward per server block: give "
            f"`forward {' '.join(extra.args[:1]) or 'FROM'} ...` a server block of its "
            "own, e.g. `example.org { forward . 10.0.0.10 }`",
        )
    line = lines[0]
    if len(line.args) < 2:
        block.add(
            line.origin, "forward takes FROM and at least one TO, e.g. `forward . /etc/resolv.conf`"
        )
        return None
    ok = True
    from_zones = _zones("forward: FROM", line.args[:1], line, block)
    if from_zones is None:
        return None
    if len(from_zones) > 1:
        block.add(
            line.origin,
            f"forward: FROM {line.args[0]} stands for {len(from_zones)} "
            "reverse zones; forward takes one zone: use a CIDR on an octet boundary",
        )
        return None
    from_zone = from_zones[0]
    ok = _overlaps_block("forward", from_zone, line, block)
    targets = line.args[1:]
    if len(targets) > MAX_UPSTREAMS:
        block.add(
            line.origin, f"forward: {len(targets)} TOs; CoreDNS takes {MAX_UPSTREAMS} at most"
        )
        return None
    upstreams: list[Upstream] = []
    for target in targets:
        found = _forward_target(target, line, block)
        if found is None:
            ok = False
            continue
        upstreams.extend(u for u in found if u not in upstreams)
    if ok and not upstreams:
        block.add(
            line.origin, f"forward: no upstream address: {' '.join(targets)} lists no nameserver"
        )
        ok = False
    values: dict[str, object] = {}
    seen: dict[str, Origin] = {}
    for option in line.block or ():
        _no_block(option, block, plugin="forward")
        if option.name in _FORWARD_NOT_YET:
            _not_yet("forward", option, block, _FORWARD_TAKES)
            ok = False
        elif option.name not in (*_FORWARD_FLAGS, *_FORWARD_ONE, "except", "health_check", "tls"):
            _unknown_option("forward", option, block, _FORWARD_TAKES)
            ok = False
        elif _twice("forward", option, seen, block):
            ok = False
        else:
            ok = _forward_option(option, block, values) and ok
    server_name = values.get("tls_servername")
    named = [u for u in upstreams if u.server_name is not None]
    if server_name is not None and named:
        block.add(
            seen["tls_servername"],
            f"forward: tls_servername {server_name} and the server name in "
            f"tls://{named[0].addr.host}%{named[0].server_name} both name the TLS server; "
            "keep one",
        )
        ok = False
    if not ok:
        return None
    return ForwardConfig(
        from_zone=from_zone,
        to=tuple(upstreams),
        to_text=tuple(targets),
        origin=line.origin,
        **values,  # type: ignore[arg-type]
    )


def _forward_option(option: Line, block: Block, values: dict[str, object]) -> bool:
    """One option of forward's block into `values` (ForwardConfig fields)."""
    name, args = option.name, option.args
    if name in _FORWARD_FLAGS:
        if args:
            block.add(option.origin, f"forward: {name} takes no arguments")
            return False
        values[name] = True
        return True
    if name == "except":
        zones = _zones("forward: except", args, option, block) if args else None
        if not zones:
            if not args:
                block.add(option.origin, "forward: except takes the names to leave out")
            return False
        values["except_zones"] = tuple(zones)
        return True
    if name == "health_check":
        return _forward_health(option, block, values)
    if name == "tls":
        return _forward_tls(option, block, values)
    if len(args) != 1:
        what = {"tls_servername": "NAME", "policy": "random|round_robin|sequential"}
        block.add(option.origin, f"forward: {name} takes one {what.get(name, 'value')}")
        return False
    text = args[0]
    if name == "tls_servername":
        values["tls_servername"] = text
    elif name == "policy":
        if text not in _POLICIES:
            block.add(
                option.origin,
                f"forward: unknown policy {text!r}; use random, round_robin or sequential",
            )
            return False
        values["policy"] = _POLICIES[text]
    elif name in ("expire", "read_timeout"):
        seconds = _duration(f"forward: {name}", text, option, block)
        if seconds is None:
            return False
        if seconds < 0 or (name == "read_timeout" and seconds == 0):
            limit = "cannot be negative" if name == "expire" else "must be above 0"
            block.add(option.origin, f"forward: {name} {limit}, not {text}")
            return False
        values[name] = seconds
    else:  # max_fails, max_concurrent
        try:
            number = parse_int(text, what=f"forward: {name}")
        except ValueError as exc:
            block.add(option.origin, str(exc))
            return False
        if number < 0:
            block.add(option.origin, f"forward: {name} cannot be negative")
            return False
        values[name] = number
    return True


def _forward_health(option: Line, block: Block, values: dict[str, object]) -> bool:
    """`health_check DURATION [no_rec] [domain FQDN]`."""
    args = list(option.args)
    usage = "forward: health_check takes DURATION [no_rec] [domain FQDN], e.g. `health_check 1s`"
    if not args:
        block.add(option.origin, usage)
        return False
    seconds = _duration("forward: health_check", args.pop(0), option, block)
    if seconds is None:
        return False
    if seconds <= 0:
        block.add(
            option.origin,
            "forward: health_check must be above 0s; to never mark an upstream down "
            "(and never check it), write `max_fails 0`",
        )
        return False
    values["health_check"] = seconds
    while args:
        word = args.pop(0)
        if word == "no_rec":
            values["health_check_rd"] = False
        elif word == "domain" and args:
            try:
                values["health_check_domain"] = normalize_zone(args.pop(0))
            except ValueError as exc:
                block.add(option.origin, f"forward: health_check domain: {exc}")
                return False
        else:
            block.add(option.origin, f"{usage}; {word!r} is not one of them")
            return False
    return True


def _forward_tls(option: Line, block: Block, values: dict[str, object]) -> bool:
    """`tls`, `tls CA`, `tls CERT KEY`, `tls CERT KEY CA` (CoreDNS's meanings)."""
    args = option.args
    if len(args) > 3:
        block.add(option.origin, "forward: tls takes [CERT KEY] [CA]: at most 3 files")
        return False
    paths = [Path(a) for a in args]
    for path in paths:
        if not path.is_file():
            block.add(
                option.origin,
                f"forward: tls file {path} does not exist (or is not a file); give the "
                "path of a PEM file",
            )
            return False
    if len(paths) == 1:
        values["tls"] = TlsFiles(ca=paths[0])
    elif len(paths) == 2:
        values["tls"] = TlsFiles(cert=paths[0], key=paths[1])
    elif len(paths) == 3:
        values["tls"] = TlsFiles(cert=paths[0], key=paths[1], ca=paths[2])
    else:
        values["tls"] = TlsFiles()
    return True


def _forward_target(text: str, line: Line, block: Block) -> list[Upstream] | None:
    """One TO: `IP`, `IP:PORT`, `[IPV6]:PORT`, `dns://...`, `tls://IP[%NAME][:PORT]` or a
    resolv.conf-style file."""
    rest = text
    tls = False
    server_name: str | None = None
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme == "https":
            block.add(
                line.origin,
                f"forward: https:// (DNS over HTTPS) upstreams are not implemented in kdns "
                f"yet; use DNS over TLS, tls://{rest}, or plain DNS, dns://{rest}",
            )
            return None
        if scheme not in ("dns", "tls"):
            block.add(
                line.origin,
                f"forward: {scheme}:// is not a forward protocol; write IP, IP:PORT, "
                "[IPV6]:PORT, dns://IP, tls://IP[%NAME][:PORT] or a file",
            )
            return None
        tls = scheme == "tls"
        if tls and "%" in rest:
            rest, server_name = _split_server_name(rest)
    default_port = 853 if tls else 53  # RFC 7858 §3.1
    try:
        if rest.startswith("[") or rest.count(":") == 1:
            host, port_text = split_host_port(rest)
            if _is_ip(host):
                addr = HostPort(_upstream_ip(host), _upstream_port(port_text))
                return [Upstream(addr, tls=tls, server_name=server_name)]
        elif _is_ip(rest):
            addr = HostPort(_upstream_ip(rest), default_port)
            return [Upstream(addr, tls=tls, server_name=server_name)]
    except ValueError as exc:
        block.add(line.origin, f"forward: TO {text!r}: {exc}")
        return None
    if tls:
        block.add(
            line.origin,
            f"forward: TO {text!r}: a tls:// upstream is an IP address, e.g. "
            "tls://9.9.9.9%dns.quad9.net or tls://[2620:fe::fe]:853",
        )
        return None
    found = _resolv_conf(text, rest, line, block)
    return None if found is None else [Upstream(addr) for addr in found]


def _split_server_name(text: str) -> tuple[str, str]:
    """`IP%NAME[:PORT]`, `[IPV6%NAME]:PORT` -> (`IP[:PORT]`, NAME), as CoreDNS splits it."""
    cut = text.rindex("%")
    host, name = text[:cut], text[cut + 1 :]
    if host.startswith("["):
        host += "]"
    if ":" in name:
        colon = name.rindex(":")
        host += name[colon:]
        name = name[:colon]
    return host, name.rstrip("]")


def _is_ip(text: str) -> bool:
    try:
        parse_ip(text, what="")
    except ValueError:
        return False
    return True


def _upstream_ip(text: str) -> str:
    if "%" in text:
        raise ValueError("scoped IPv6 addresses (with %) are not supported; use a global one")
    return parse_ip(text, what="an upstream")


def _upstream_port(text: str) -> int:
    port = parse_port(text)
    if port == 0:
        raise ValueError("port 0 is not a port an upstream listens on")
    return port


def _resolv_conf(text: str, path_text: str, line: Line, block: Block) -> list[HostPort] | None:
    # As in CoreDNS, a relative path is opened from the working directory, and a file
    # without nameservers adds none (it is an error only when no TO gives any).
    path = Path(path_text)
    try:
        content = block.read_resolv_conf(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if "/" not in path_text and re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\.?", path_text):
            block.add(
                line.origin,
                f"forward: TO {text!r} is a host name; kdns does not "
                "resolve upstream names at start-up: give its IP address",
            )
        else:
            block.add(
                line.origin,
                f"forward: TO {text!r} is not an IP address, and it cannot "
                f"be read as a resolv.conf file: {reason}",
            )
        return None
    return parse_resolv_conf(content, source=str(path))


# ---- file -------------------------------------------------------------------------------


def read_file(lines: Sequence[Line], block: Block) -> FileConfig | None:
    line = _once(
        lines,
        block,
        why="kdns takes one file per server block; give each zone file a server block of its own",
    )
    if not line.args:
        block.add(line.origin, "file takes DBFILE [ZONES...], e.g. `file db.example.org`")
        return None
    zones = _zones("file", line.args[1:], line, block) if len(line.args) > 1 else list(block.zones)
    if zones is None:
        return None
    ok = _inside_block("file", zones, line, block)
    reload = 60.0
    seen: dict[str, Origin] = {}
    for option in line.block or ():
        _no_block(option, block, plugin="file")
        if option.name in ("reload_by_mtime", "fallthrough"):
            _not_yet("file", option, block, "`reload DURATION`")
            ok = False
        elif option.name != "reload":
            _unknown_option("file", option, block, "`reload DURATION`")
            ok = False
        elif _twice("file", option, seen, block):
            ok = False
        elif len(option.args) != 1:
            block.add(
                option.origin,
                "file: reload takes one DURATION, e.g. `reload 30s` (0 turns reloading off)",
            )
            ok = False
        else:
            value = _duration("file: reload", option.args[0], option, block)
            if value is None or value < 0:
                if value is not None:
                    block.add(option.origin, "file: the reload DURATION cannot be negative")
                ok = False
            else:
                reload = value
    if not ok:
        return None
    return FileConfig(
        paths=(Path(line.args[0]),), zones=tuple(zones), reload=reload, origin=line.origin
    )


# ---- bind -------------------------------------------------------------------------------


def read_bind(lines: Sequence[Line], block: Block) -> tuple[str, ...] | None:
    """The addresses of every `bind` line (CoreDNS adds them up), minus their `except`."""
    addresses: list[str] = []
    ok = True
    for line in lines:
        if not line.args:
            block.add(line.origin, "bind takes one or more IP addresses, e.g. `bind 127.0.0.1`")
            ok = False
            continue
        found = _bind_ips(line.args, line, block, "bind")
        excluded: list[str] = []
        for option in line.block or ():
            _no_block(option, block, plugin="bind")
            if option.name != "except":
                _unknown_option("bind", option, block, "`except ADDRESS...`")
                ok = False
            elif not option.args:
                block.add(option.origin, "bind: except takes one or more IP addresses")
                ok = False
            else:
                more = _bind_ips(option.args, option, block, "bind: except")
                ok = ok and more is not None
                excluded.extend(more or ())
        if found is None:
            ok = False
            continue
        kept = [a for a in found if a not in excluded]
        if not kept:
            block.add(line.origin, "bind: except leaves no address to listen on")
            ok = False
        addresses.extend(a for a in kept if a not in addresses)
    return tuple(addresses) if ok else None


def _bind_ips(texts: Sequence[str], line: Line, block: Block, what: str) -> list[str] | None:
    ips: list[str] = []
    for text in texts:
        try:
            ips.append(parse_ip(text, what=what))
        except ValueError:
            block.add(
                line.origin,
                f"{what}: {text!r} is not an IP address; kdns binds IP "
                "addresses only (CoreDNS also takes interface names): write the "
                "interface's address",
            )
            return None
    return ips


# ---- the table --------------------------------------------------------------------------

Reader = Callable[[Sequence[Line], Block], PluginConfig | None]


def _read_autopath(lines: Sequence[Line], block: Block) -> PluginConfig | None:
    # Its own module, which uses the helpers above: imported when first needed.
    from kdns.config.corefile.autopath import read_autopath

    return read_autopath(lines, block)


READERS: dict[str, Reader] = {
    "errors": read_errors,
    "health": read_health,
    "ready": read_ready,
    "prometheus": read_prometheus,
    "reload": read_reload,
    "loadbalance": read_loadbalance,
    "log": read_log,
    "cache": read_cache,
    "autopath": _read_autopath,
    "kubernetes": read_kubernetes,
    "file": read_file,
    "loop": read_loop,
    "forward": read_forward,
    "hosts": read_hosts,
    "rewrite": read_rewrite,
    "template": read_template,
    "any": read_any,
    "bufsize": read_bufsize,
}
