"""`kdns explain --manifests`: the data `kdns serve` would have, read once, and DNS servers
built without sockets from the configuration it would serve. The manifests are loaded as the
manifests source loads them and fed to an `Index` through the same events; the `Config`
comes from the caller, made by the same front end as `kdns serve`'s (the CLI uses
`kdns.app.load_config`: the flags, or the Corefile)."""

from __future__ import annotations

from collections.abc import Sequence

from kdns.build import BuildError
from kdns.cluster.index import Index
from kdns.cluster.model import Kind
from kdns.config.model import Config
from kdns.config.settings import Settings
from kdns.explain.analyze import Filter
from kdns.explain.run import Explainer, ExplainError


def offline_explainer(
    config: Config,
    settings: Settings,
    *,
    kinds: Sequence[Kind],
    filters: Sequence[Filter] = (),
) -> Explainer:
    """An Explainer over `settings.manifests`; `kinds` are the kinds the index must have
    listed to be synced (`kdns.app.source_plan`). Raises ExplainError (a bad manifest or
    zone file: one line)."""
    from kdns.sources.manifests import ManifestError, events, load_manifests

    try:
        data = load_manifests(
            settings.manifests,
            service_cidrs=settings.service_cidrs,
            pod_cidrs=settings.pod_cidrs,
        )
    except ManifestError as exc:
        raise ExplainError(str(exc)) from None
    index = Index(required=kinds)
    for event in events(data):
        index.apply(event)
    try:
        return Explainer.offline(config, index, filters=filters)
    except BuildError as exc:
        raise ExplainError(str(exc)) from None


__all__ = ["offline_explainer"]
