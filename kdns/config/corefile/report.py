"""`kdns corefile PATH`: what a Config serves, block by block, in plain words.

For each server block: its zones, where it listens, and its plugins in execution order
(`PLUGIN_ORDER`, never the order they were written in) with their settings and the
`FILE:LINE` they came from. The text depends only on the Config, so it is stable.

No I/O here.
"""

from __future__ import annotations

from kdns.config.corefile.values import format_duration
from kdns.config.model import (
    COMBINED_LOG_FORMAT,
    COMMON_LOG_FORMAT,
    AnyConfig,
    AutopathConfig,
    BufsizeConfig,
    CacheConfig,
    Config,
    ErrorsConfig,
    FileConfig,
    ForwardConfig,
    HealthConfig,
    HostsConfig,
    KubernetesConfig,
    LoadbalanceConfig,
    LogClass,
    LogConfig,
    LogRule,
    LoopConfig,
    PluginConfig,
    PrometheusConfig,
    ReadyConfig,
    ReloadConfig,
    RewriteConfig,
    RewriteEdns0,
    RewriteName,
    RewriteRcode,
    RewriteRule,
    RewriteTtl,
    ServerBlock,
    StaleRefresh,
    Template,
    TemplateConfig,
    Upstream,
)
from kdns.config.rrtypes import rtype_name

_WIDTH = 12  # the plugin-name column


def render(config: Config) -> str:
    """The report `kdns corefile` prints (no newline at the end)."""
    out: list[str] = []
    if config.corefile is not None:
        out.append(f"Corefile {config.corefile}")
    if config.digest:
        out.append(f"sha512 {config.digest}")
    for number, block in enumerate(config.blocks, start=1):
        if out:
            out.append("")
        out.extend(_block(number, block))
    return "\n".join(out)


def _block(number: int, block: ServerBlock) -> list[str]:
    listen = ", ".join(str(hp) for hp in block.listen())
    lines = [
        f"server block {number} ({block.origin})",
        f"  zones   {' '.join(block.zones)}",
        f"  listen  {listen} (UDP and TCP)",
    ]
    names = block.chain_names()
    if not names:
        lines.append("  plugins none: every query gets SERVFAIL")
        return lines
    lines.append("  plugins, in the order a query meets them:")
    for name in names:
        if name == "bind":
            lines.append(f"    {'bind':<{_WIDTH}} {' '.join(block.bind)}")
            continue
        config = block.plugins[name]
        first, *more = _describe(config)
        lines.append(f"    {name:<{_WIDTH}} {first}  ({config.origin})")
        lines.extend(f"    {'':<{_WIDTH}} {part}" for part in more)
    return lines


def _describe(config: PluginConfig) -> list[str]:
    """The settings of one plugin, one line each."""
    if isinstance(config, ReloadConfig):
        interval, jitter = format_duration(config.interval), format_duration(config.jitter)
        return [f"re-read the Corefile every {interval} ± {jitter}"]
    if isinstance(config, ReadyConfig):
        return [f"/ready on {config.addr}"]
    if isinstance(config, HealthConfig):
        lameduck = f", lameduck {format_duration(config.lameduck)}" if config.lameduck else ""
        return [f"/health on {config.addr}{lameduck}"]
    if isinstance(config, PrometheusConfig):
        return [f"/metrics on {config.addr}"]
    if isinstance(config, ErrorsConfig):
        return ["log errors"] + [
            f'consolidate {format_duration(c.interval)} "{c.pattern}" {c.level}'
            for c in config.consolidate
        ]
    if isinstance(config, LogConfig):
        return [_log_rule(rule) for rule in config.rules]
    if isinstance(config, LoadbalanceConfig):
        return [f"shuffle A, AAAA and MX records ({config.policy})"]
    if isinstance(config, CacheConfig):
        return _cache(config)
    if isinstance(config, KubernetesConfig):
        return _kubernetes(config)
    if isinstance(config, AutopathConfig):
        return _autopath(config)
    if isinstance(config, FileConfig):
        files = " ".join(str(p) for p in config.paths)
        reload = f"every {format_duration(config.reload)}" if config.reload else "never"
        return [f"{files} as {' '.join(config.zones) or 'its own zones'}", f"reload {reload}"]
    if isinstance(config, LoopConfig):
        return ["stop if a probe query comes back (a forwarding loop)"]
    if isinstance(config, BufsizeConfig):
        return [f"EDNS UDP payload sizes above {config.size} lowered to {config.size}"]
    if isinstance(config, AnyConfig):
        return ['ANY queries answered with one HINFO "ANY obsoleted" (RFC 8482)']
    if isinstance(config, HostsConfig):
        return _hosts(config)
    if isinstance(config, RewriteConfig):
        # The first rule's line is the plugin's: its place is shown once, at the end.
        return [_rewrite_rule(rule, first=i == 0) for i, rule in enumerate(config.rules)]
    if isinstance(config, TemplateConfig):
        return [line for i, t in enumerate(config.templates) for line in _template(t, first=i == 0)]
    return _forward(config)


def _log_rule(rule: LogRule) -> str:
    if rule.format == COMMON_LOG_FORMAT:
        fmt = "common format"
    elif rule.format == COMBINED_LOG_FORMAT:
        fmt = "combined format"
    else:
        fmt = f'format "{rule.format}"'
    classes = ", ".join(sorted(c.value for c in rule.classes))
    which = "all queries" if rule.classes == {LogClass.ALL} else f"{classes} replies"
    return f"{which} under {' '.join(rule.names)}, {fmt}"


def _cache(config: CacheConfig) -> list[str]:
    parts = [
        f"zones {' '.join(config.zones)}",
        f"success: {config.success_capacity} entries, TTL {config.success_min_ttl}"
        f"..{config.success_ttl}s",
        f"denial: {config.denial_capacity} entries, TTL {config.denial_min_ttl}"
        f"..{config.denial_ttl}s",
        f"SERVFAIL: {config.servfail_ttl}s",
    ]
    if config.disable_success is not None:
        parts.append(f"no success caching under {' '.join(config.disable_success)}")
    if config.disable_denial is not None:
        parts.append(f"no denial caching under {' '.join(config.disable_denial)}")
    if config.prefetch:
        parts.append(
            f"prefetch entries asked {config.prefetch} times without a "
            f"{format_duration(config.prefetch_gap)} gap, at {config.prefetch_percentage}% "
            "of their TTL"
        )
    if config.stale:
        verify = config.stale_refresh == StaleRefresh.VERIFY
        mode = "ask upstream first" if verify else "refresh in the background"
        if verify and config.stale_verify_timeout:
            mode += f" for at most {format_duration(config.stale_verify_timeout)}"
        recheck = (
            f", retry a failed refresh after {format_duration(config.stale_recheck)}"
            if config.stale_recheck
            else ""
        )
        parts.append(
            f"serve stale entries up to {format_duration(config.stale)} after they expire "
            f"with TTL {config.stale_ttl} ({config.stale_refresh.value}: {mode}{recheck})"
        )
    if config.keepttl:
        parts.append("keepttl: cached TTLs are served as stored")
    return parts


def _kubernetes(config: KubernetesConfig) -> list[str]:
    parts = [
        f"zones {' '.join(config.zones)}",
        f"pods {config.pods.value}, ttl {config.ttl}",
    ]
    if config.fallthrough is None:
        parts.append("no fallthrough")
    else:
        parts.append(f"fallthrough {' '.join(config.fallthrough) or 'in every zone'}")
    if config.kubeconfig is not None:
        context = f", context {config.context}" if config.context else ""
        parts.append(f"API from kubeconfig {config.kubeconfig}{context}")
    elif config.endpoint is not None:
        parts.append(f"API at {config.endpoint}")
    else:
        parts.append("API in-cluster (service account)")
    if config.namespaces:
        parts.append(f"only namespaces {' '.join(config.namespaces)}")
    if config.namespace_labels is not None:
        parts.append(f"only namespaces labelled {config.namespace_labels}")
    if config.labels is not None:
        parts.append(f"only Services, EndpointSlices and Pods labelled {config.labels}")
    if config.endpoint_pod_names:
        parts.append("endpoints without a hostname are named by their pod")
    if config.noendpoints:
        parts.append("no endpoints: endpoint and headless names are NXDOMAIN")
    if config.ignore_empty_service:
        parts.append("Services without ready endpoints are NXDOMAIN (ignore empty_service)")
    return parts


def _autopath(config: AutopathConfig) -> list[str]:
    search = " ".join(config.search) or "none"
    if config.plugin == "kubernetes":
        return [
            f"complete the search path of the asking pod under {' '.join(config.zones)}",
            f"then the host's search domains: {search}",
        ]
    return [f"complete the search path {search} under {' '.join(config.zones)}"]


def _forward(config: ForwardConfig) -> list[str]:
    upstreams = " ".join(_upstream(u) for u in config.to) or "nowhere"
    written = " ".join(config.to_text)
    parts = [f"{config.from_zone} -> {upstreams}"]
    if written and written != upstreams:
        parts.append(f"(from {written})")
    if config.except_zones:
        parts.append(f"except {' '.join(config.except_zones)} (to the next plugin)")
    transport = "TCP always" if config.force_tcp else "UDP first" if config.prefer_udp else None
    parts.append(
        f"policy {config.policy.value}, "
        + (f"{transport}, " if transport else "the client's protocol, ")
        + f"read timeout {format_duration(config.read_timeout)}, "
        + f"connections reused for {format_duration(config.expire)}"
    )
    if config.max_fails:
        rd = "" if config.health_check_rd else " no_rec"
        parts.append(
            f"down after {config.max_fails} failed health checks in a row, checked every "
            f"{format_duration(config.health_check)} ({config.health_check_domain} NS{rd})"
        )
    else:
        parts.append("max_fails 0: never marked down, never health checked")
    if any(u.tls for u in config.to):
        tls = config.tls
        ca = str(tls.ca) if tls is not None and tls.ca is not None else "the system's CAs"
        client = f", client certificate {tls.cert}" if tls and tls.cert else ""
        name = f", server name {config.tls_servername}" if config.tls_servername else ""
        parts.append(f"TLS: certificates verified against {ca}{client}{name}")
    if config.max_concurrent:
        parts.append(f"max_concurrent {config.max_concurrent}")
    return parts


def _fallthrough(zones: tuple[str, ...] | None) -> str:
    if zones is None:
        return "no fallthrough"
    return f"fallthrough {' '.join(zones) or 'in every zone'}"


def _hosts(config: HostsConfig) -> list[str]:
    inline = f" and {len(config.inline)} inline lines" if config.inline else ""
    reload = f"every {format_duration(config.reload)}" if config.reload else "never"
    parts = [
        f"{config.path}{inline} as {' '.join(config.zones)}",
        f"ttl {config.ttl}, PTR records {'on' if config.reverse else 'off (no_reverse)'}",
        f"reload {reload}",
        _fallthrough(config.fallthrough),
    ]
    if config.fallthrough_unsupported:
        parts.append("other query types of known names fall through too")
    return parts


def _rewrite_rule(rule: RewriteRule, *, first: bool) -> str:
    action = rule.action
    mode = "stop" if rule.stop else "continue"
    if isinstance(action, RewriteName):
        match = action.match
        text = f"name {match.kind.value} {match.pattern} -> {action.replacement}"
        back = ["names back" if action.auto else ""] + [
            f"{a.target} {a.pattern} -> {a.replacement}" for a in action.answers
        ]
        if any(back):
            text += f", answer {'; '.join(b for b in back if b)}"
    elif isinstance(action, RewriteTtl):
        match = action.match
        text = f"ttl {match.kind.value} {match.pattern} -> {action.minimum}..{action.maximum}s"
    elif isinstance(action, RewriteRcode):
        match = action.match
        text = f"rcode {match.kind.value} {match.pattern} {action.from_rcode} -> {action.to_rcode}"
    elif isinstance(action, RewriteEdns0):
        text = _edns0(action)
    else:
        text = f"type {rtype_name(action.from_type)} -> {rtype_name(action.to_type)}"
    return f"{text} ({mode})" if first else f"{text} ({mode}, {rule.origin})"


def _edns0(action: RewriteEdns0) -> str:
    if action.kind == "subnet" and action.action != "unset":
        what = f"subnet /{action.v4_bits} /{action.v6_bits}"
    elif action.kind == "local" and action.action != "unset":
        data = action.variable or "0x" + action.data.hex()
        what = f"local 0x{action.code:04x} {data}"
    else:
        what = action.kind if action.kind != "local" else f"local 0x{action.code:04x}"
    revert = ", reverted in the reply" if action.revert else ""
    return f"edns0 {action.action} {what}{revert}"


def _template(template: Template, *, first: bool) -> list[str]:
    zones = " ".join(template.zones)
    head = f"{template.qclass} {rtype_name(template.qtype)} under {zones}"
    if not first:
        head += f" ({template.origin})"
    parts = [head, f"  match {' '.join(template.regexes)}"]
    for section in ("answer", "additional", "authority"):
        parts.extend(f'  {section} "{text}"' for text in getattr(template, section))
    rcode = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
    parts.append(f"  rcode {rcode.get(template.rcode, template.rcode)}, "
                 f"{_fallthrough(template.fallthrough)}")  # fmt: skip
    return parts


def _upstream(upstream: Upstream) -> str:
    if not upstream.tls:
        return str(upstream.addr)
    name = f" ({upstream.server_name})" if upstream.server_name else ""
    return f"tls://{upstream.addr}{name}"
