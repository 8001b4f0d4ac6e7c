"""`kdns explain --manifests`: the data and the configuration `kdns serve` would have, read
once, without sockets. The manifests are loaded as the manifests source loads them and fed
to an `Index` through the same events; the configuration comes from the same front end (the
flags, or the Corefile)."""

from __future__ import annotations

from kdns.cluster.index import Index
from kdns.config.settings import Settings
from kdns.explain.analyze import Filter
from kdns.explain.run import Explainer, ExplainError


def offline_explainer(settings: Settings, *, filters: tuple[Filter, ...] = ()) -> Explainer:
    """Raises ExplainError (a bad manifest, Corefile or zone file: one line)."""
    from kdns.app import StartupError, load_config, source_plan
    from kdns.serve.build import BuildError
    from kdns.sources.manifests import ManifestError, events, load_manifests

    try:
        config = load_config(settings)
    except StartupError as exc:
        raise ExplainError(str(exc)) from None
    except ImportError as exc:  # the Corefile front end is not in this build
        raise ExplainError(f"--corefile: cannot read Corefiles here ({exc})") from None
    try:
        data = load_manifests(
            settings.manifests,
            service_cidrs=settings.service_cidrs,
            pod_cidrs=settings.pod_cidrs,
        )
    except ManifestError as exc:
        raise ExplainError(str(exc)) from None
    index = Index(required=source_plan(settings, config).kinds)
    for event in events(data):
        index.apply(event)
    try:
        return Explainer.offline(config, index, filters=filters)
    except BuildError as exc:
        raise ExplainError(str(exc)) from None


__all__ = ["offline_explainer"]
