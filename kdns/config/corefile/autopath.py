"""The `autopath` reader: `autopath [ZONES...] RESOLV-CONF` (CoreDNS's autopath setup.go).

RESOLV-CONF is `@kubernetes` (the search path of the pod that asks, from the kubernetes
plugin of the same server block, which must run with `pods verified`) or a resolv.conf
file whose `search` line is the search path for every client. With `@kubernetes` the
search domains of kdns's own /etc/resolv.conf follow the cluster's, as CoreDNS's
kubernetes plugin reads them at start-up.

The only I/O is reading those resolv.conf files (through `Block.read_resolv_conf`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from kdns.config.corefile.common import zones as zone_args
from kdns.config.corefile.directives import Block, _inside_block, _no_block, _once
from kdns.config.corefile.parser import Line
from kdns.config.model import AutopathConfig, KubernetesConfig, PluginConfig
from kdns.config.resolvconf import parse_search
from kdns.config.settings import PodMode

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
_TAKES = "`autopath [ZONES...] @kubernetes` or `autopath [ZONES...] RESOLV-CONF`"


def read_autopath(lines: Sequence[Line], block: Block) -> AutopathConfig | None:
    line = _once(lines, block)
    _no_block(line, block)
    if not line.args:
        block.add(line.origin, f"autopath: no RESOLV-CONF given; write {_TAKES}")
        return None
    *zone_texts, resolv = line.args
    zones = zone_args("autopath", zone_texts, line, block) if zone_texts else list(block.zones)
    if zones is None or not _inside_block("autopath", zones, line, block):
        return None
    if resolv.startswith("@"):
        if resolv != "@kubernetes":
            block.add(
                line.origin,
                f"autopath: {resolv} cannot give a search path; only the kubernetes plugin "
                f"can (write {_TAKES})",
            )
            return None
        try:
            host = parse_search(block.read_resolv_conf(HOST_RESOLV_CONF))
        except (OSError, UnicodeDecodeError):
            host = []  # CoreDNS: no host search domains then
        return AutopathConfig(
            zones=tuple(zones),
            plugin="kubernetes",
            search=tuple(host),
            resolv_conf=resolv,
            origin=line.origin,
        )
    try:
        search = parse_search(block.read_resolv_conf(Path(resolv)))
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        block.add(line.origin, f"autopath: cannot read {resolv}: {why}; {_TAKES}")
        return None
    if not search:
        block.add(
            line.origin,
            f"autopath: {resolv} has no `search` line, so there is no search path to "
            "complete; add one, or write `autopath @kubernetes`",
        )
        return None
    return AutopathConfig(
        zones=tuple(zones),
        plugin=None,
        search=tuple(search),
        resolv_conf=resolv,
        origin=line.origin,
    )


def check_autopath(plugins: Mapping[str, PluginConfig], block: Block) -> bool:
    """`autopath @kubernetes` needs the kubernetes plugin in its block, with `pods verified`
    (the asking pod is found by its IP in the pod index). CoreDNS silently does no
    autopath then; kdns says so. False (and a problem) when it cannot work."""
    autopath = plugins.get("autopath")
    if not isinstance(autopath, AutopathConfig) or autopath.plugin != "kubernetes":
        return True
    kubernetes = plugins.get("kubernetes")
    if not isinstance(kubernetes, KubernetesConfig):
        block.add(
            autopath.origin,
            "autopath: @kubernetes needs the kubernetes plugin in this server block, "
            "e.g. `kubernetes cluster.local in-addr.arpa ip6.arpa { pods verified }`",
        )
        return False
    if kubernetes.pods is not PodMode.VERIFIED:
        block.add(
            autopath.origin,
            f"autopath: @kubernetes needs `pods verified` in the kubernetes plugin at "
            f"{kubernetes.origin} (the asking pod is found by its IP; with pods "
            f"{kubernetes.pods.value} CoreDNS does no autopath at all)",
        )
        return False
    return True


__all__ = ["check_autopath", "read_autopath"]
