"""The flags front end: `kdns serve` without `--corefile` builds the same `Config` a
Corefile would. What the flags mean, as a Corefile:

    [.] cluster.local in-addr.arpa ip6.arpa <zone files' zones>:PORT {
        bind HOST
        errors { consolidate 10s ".*" warning }
        health HOST:PORT { lameduck SECONDS }
        ready HOST:PORT
        prometheus HOST:PORT
        autopath @kubernetes                       # with --autopath true
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            ttl 5
            fallthrough in-addr.arpa ip6.arpa      # with an upstream
            namespaces NS...                       # with --namespaces
            namespace_labels SELECTOR              # with --namespace-labels
            labels SELECTOR                        # with --labels
            endpoint_pod_names                     # with --endpoint-pod-names true
        }
        hosts FILE { fallthrough }                 # with --hosts
        file ZONEFILES... { reload 1s }            # with --zone-file
        cache 30 { serve_stale SECONDS }           # with an upstream
        loop                                       # with an upstream
        forward . UPSTREAMS {                      # with an upstream
            max_concurrent 1000
            policy random
        }
    }

Reverse misses inside the service and pod CIDRs stay final (kdns is their authority) and
names outside the served zones are REFUSED when there is no upstream (docs/rules.md D6).
"""

from __future__ import annotations

from collections.abc import Sequence

from kdns.config.model import (
    AutopathConfig,
    CacheConfig,
    Config,
    Consolidate,
    ErrorsConfig,
    FileConfig,
    ForwardConfig,
    ForwardPolicy,
    HealthConfig,
    HostsConfig,
    KubernetesConfig,
    LoopConfig,
    PluginConfig,
    PrometheusConfig,
    ReadyConfig,
    ServerBlock,
    Upstream,
)
from kdns.config.settings import Settings

REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
ZONE_FILE_RELOAD = 1.0  # --zone-file: an edit shows within a second


def config_from_settings(
    settings: Settings, *, zone_file_apexes: Sequence[str] = (), host_search: Sequence[str] = ()
) -> Config:
    """The Config the flags describe. `settings.upstreams` must be resolved (not None);
    `zone_file_apexes`: the zones the `--zone-file` files hold, routed to this block;
    `host_search`: the search domains of /etc/resolv.conf, for `--autopath`."""
    zone = settings.zone.rstrip(".") + "."
    upstreams = settings.upstreams or ()
    plugins: dict[str, PluginConfig] = {
        # Repeated failures (an upstream down) are one line per 10 s with a count, not a
        # line per query; a Corefile says for itself.
        "errors": ErrorsConfig(consolidate=(Consolidate(10.0, ".*", "warning"),)),
        "health": HealthConfig(addr=settings.health_addr, lameduck=settings.lameduck_seconds),
        "ready": ReadyConfig(addr=settings.ready_addr),
        "prometheus": PrometheusConfig(addr=settings.metrics_addr),
        "kubernetes": KubernetesConfig(
            zones=(zone, *REVERSE_ZONES),
            pods=settings.pods,
            ttl=settings.ttl,
            fallthrough=REVERSE_ZONES if upstreams else None,
            kubeconfig=settings.kubeconfig,
            final_networks=(*settings.service_cidrs, *settings.pod_cidrs),
            namespaces=settings.namespaces,
            namespace_labels=settings.namespace_labels,
            labels=settings.labels,
            endpoint_pod_names=settings.endpoint_pod_names,
        ),
    }
    zones = [zone, *REVERSE_ZONES]
    if settings.hosts_file is not None:
        plugins["hosts"] = HostsConfig(path=settings.hosts_file, fallthrough=())
    if settings.zone_files:
        plugins["file"] = FileConfig(paths=settings.zone_files, reload=ZONE_FILE_RELOAD)
        zones.extend(apex for apex in zone_file_apexes if apex not in zones)
    if upstreams:
        plugins["cache"] = CacheConfig(
            success_capacity=settings.cache_size,
            denial_capacity=settings.cache_size,
            success_ttl=settings.cache_max_ttl,
            denial_ttl=settings.cache_max_ttl,
            stale=settings.serve_stale_seconds,
        )
        plugins["loop"] = LoopConfig()
        plugins["forward"] = ForwardConfig(
            from_zone=".",
            to=tuple(Upstream(u) for u in upstreams),
            to_text=tuple(str(u) for u in upstreams),
            max_concurrent=settings.max_concurrent,
            policy=ForwardPolicy(settings.upstream_policy),
        )
        zones.insert(0, ".")  # first: `loop` probes a name under the block's first zone
    if settings.autopath:
        plugins["autopath"] = AutopathConfig(zones=(zone,), search=tuple(host_search))
    host = settings.dns_addr.host
    block = ServerBlock(
        zones=tuple(zones),
        port=settings.dns_addr.port,
        bind=(host,) if host else (),
        plugins=plugins,
    )
    return Config(blocks=(block,))


__all__ = ["config_from_settings"]
