"""Credentials for the Kubernetes API: where it is, how to trust it, how to authenticate.

The only module allowed to import the `kubernetes` package, and only for its config
loaders (kubeconfig with tokens, client certificates and exec plugins; the in-cluster
service account with its rotating projected token). Everything else talks to the API
through aiohttp with what this module hands out. No network I/O here.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import config as kube_config  # the sole `kubernetes` import (docs/architecture.md)
from kubernetes.client import Configuration

log = logging.getLogger(__name__)

TOKEN_REFRESH_SECONDS = 60.0
"""In-cluster tokens are projected and rotate: re-read at most this often (client-go's
`rest.InClusterConfig` re-reads every minute)."""


class CredentialsError(Exception):
    """The kubeconfig or service account cannot be used; the message is one line naming
    the file and what is wrong."""


class Credentials:
    """Host, TLS context and Authorization header for the API, reloadable after a 401."""

    def __init__(
        self,
        loader: Callable[[Configuration], None],
        *,
        source: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self.source = source  # the kubeconfig path or "in-cluster", for log lines
        self._clock = clock
        self._lock = threading.Lock()
        self._config = self._load()
        self._ssl = _ssl_context(self._config, source=source)
        self._header: str | None = None
        self._header_at = float("-inf")

    def _load(self) -> Configuration:
        config = Configuration()
        try:
            self._loader(config)
        except Exception as exc:  # the loaders raise YAML, config, OS and exec-plugin errors
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise CredentialsError(f"{self.source}: {detail}") from None
        if not config.host:
            raise CredentialsError(f"{self.source}: no server address")
        return config

    @property
    def host(self) -> str:
        """The API base URL, e.g. `https://10.96.0.1:443`, without a trailing slash."""
        return str(self._config.host).rstrip("/")

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return self._ssl

    def headers(self) -> dict[str, str]:
        """The Authorization header (if any). The loader's refresh hook re-reads rotating
        tokens; we call it at most every TOKEN_REFRESH_SECONDS."""
        now = self._clock()
        if now - self._header_at >= TOKEN_REFRESH_SECONDS or self._header is None:
            with self._lock:
                self._header = _authorization(self._config)
                self._header_at = now
        return {"Authorization": self._header} if self._header else {}

    def reload(self) -> None:
        """Load everything again (after a 401: a rotated token, an exec plugin's new
        credential, a renewed client certificate). Keeps the old ones if loading fails."""
        try:
            config = self._load()
            context = _ssl_context(config, source=self.source)
        except CredentialsError as exc:
            log.warning("credentials reload failed, keeping the old ones: %s", exc)
            return
        with self._lock:
            self._config, self._ssl = config, context
            self._header, self._header_at = None, float("-inf")
        log.info("credentials reloaded from %s", self.source)


def _authorization(config: Configuration) -> str | None:
    # get_api_key_with_prefix runs refresh_api_key_hook (token file re-read, exec plugin).
    key: str | None = config.get_api_key_with_prefix("BearerToken")
    if key:
        scheme, _, rest = key.partition(" ")
        if rest and scheme.lower() == "bearer":
            return f"Bearer {rest.strip()}"
        return f"Bearer {key.strip()}"
    if config.username and config.password:
        basic: str | None = config.get_basic_auth_token()
        return basic
    return None


def _ssl_context(config: Configuration, *, source: str) -> ssl.SSLContext:
    """TLS verified against the configured CA (else the system store). Verification is off
    only when the kubeconfig itself says insecure-skip-tls-verify."""
    try:
        if config.verify_ssl:
            context = ssl.create_default_context(cafile=config.ssl_ca_cert or None)
        else:
            log.warning("%s: insecure-skip-tls-verify is set: the API is NOT verified", source)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise CredentialsError(f"{source}: bad TLS material: {exc}") from None
    return context


def load_credentials(
    *,
    kubeconfig: Path | None,
    context: str | None = None,
    in_cluster: bool,
    endpoint: str | None = None,
) -> Credentials:
    """Credentials from a kubeconfig, the in-cluster service account, or a bare `endpoint`
    URL (else $KUBECONFIG, then ~/.kube/config, as kubectl). As CoreDNS's `kubernetes
    { endpoint URL }` without a kubeconfig: that address, no credentials (e.g. a
    `kubectl proxy`), TLS verified against the system store."""
    if endpoint is not None and kubeconfig is None:
        url = endpoint

        def load_endpoint(config: Configuration) -> None:
            config.host = url

        return Credentials(load_endpoint, source=f"endpoint {endpoint}")

    if in_cluster:

        def load_in_cluster(config: Configuration) -> None:
            kube_config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]

        return Credentials(load_in_cluster, source="in-cluster service account")

    if kubeconfig is not None and not kubeconfig.is_file():
        raise CredentialsError(f"{kubeconfig}: kubeconfig not found")
    # None: the loader's default, $KUBECONFIG (possibly a list) then ~/.kube/config.
    path = str(kubeconfig) if kubeconfig is not None else None
    source: str = path or str(kube_config.KUBE_CONFIG_DEFAULT_LOCATION)

    def load_file(config: Configuration) -> None:
        # persist_config=False: never write refreshed tokens back into the user's file.
        kwargs: dict[str, Any] = {"persist_config": False}
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, client_configuration=config, **kwargs
        )

    return Credentials(load_file, source=source)
