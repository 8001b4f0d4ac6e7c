"""Credentials from kubeconfig / in-cluster files, checked against the fake API over TLS."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from kdns.cluster.model import Kind
from kdns.sources.kube.api import KubeApi, UnauthorizedError, UnreachableError
from kdns.sources.kube.auth import CredentialsError, load_credentials
from tests.fakes.kubeapi import FakeKubeApi, make_tls, service


async def test_kubeconfig_token_and_ca_reach_the_api(kube_api: FakeKubeApi, tmp_path: Path):
    kube_api.apply(service("web"))
    creds = load_credentials(
        kubeconfig=kube_api.write_kubeconfig(tmp_path / "kc"), in_cluster=False
    )
    assert creds.host == kube_api.url
    assert creds.headers() == {"Authorization": f"Bearer {kube_api.token}"}
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED
    async with KubeApi(creds) as api:
        page = await api.list_page(Kind.SERVICE)
    assert [i["metadata"]["name"] for i in page.items] == ["web"]


async def test_a_server_signed_by_another_ca_is_rejected(kube_api: FakeKubeApi, tmp_path: Path):
    other = make_tls(tmp_path / "other")
    path = kube_api.write_kubeconfig(tmp_path / "kc")
    config = json.loads(path.read_text())
    config["clusters"][0]["cluster"]["certificate-authority"] = str(other.ca_cert)
    path.write_text(json.dumps(config))
    creds = load_credentials(kubeconfig=path, in_cluster=False)
    async with KubeApi(creds) as api:
        with pytest.raises(UnreachableError, match=r"(?i)certificate"):
            await api.list_page(Kind.SERVICE)


async def test_insecure_skip_tls_verify_is_honoured_only_when_configured(
    kube_api: FakeKubeApi, tmp_path: Path
):
    path = kube_api.write_kubeconfig(tmp_path / "kc")
    config = json.loads(path.read_text())
    cluster = config["clusters"][0]["cluster"]
    del cluster["certificate-authority"]
    cluster["insecure-skip-tls-verify"] = True
    path.write_text(json.dumps(config))
    creds = load_credentials(kubeconfig=path, in_cluster=False)
    assert creds.ssl_context.verify_mode == ssl.CERT_NONE
    async with KubeApi(creds) as api:
        await api.list_page(Kind.SERVICE)


async def test_a_wrong_token_is_unauthorized_and_reload_picks_up_the_new_one(
    kube_api: FakeKubeApi, tmp_path: Path
):
    path = kube_api.write_kubeconfig(tmp_path / "kc")
    creds = load_credentials(kubeconfig=path, in_cluster=False)
    new = kube_api.rotate_token()
    async with KubeApi(creds) as api:
        with pytest.raises(UnauthorizedError):
            await api.list_page(Kind.SERVICE)
        kube_api.write_kubeconfig(path, token=new)
        creds.reload()
        await api.list_page(Kind.SERVICE)


def test_client_certificates_are_loaded(tmp_path: Path, kube_tls):
    # A client certificate/key pair (the server pair serves here: any valid pair loads).
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority": str(kube_tls.ca_cert),
                },
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {
                    "client-certificate": str(kube_tls.server_cert),
                    "client-key": str(kube_tls.server_key),
                },
            }
        ],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kc"
    path.write_text(json.dumps(config))
    creds = load_credentials(kubeconfig=path, in_cluster=False)
    assert creds.headers() == {}
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED
    # A key that does not match is a one-line error naming the file.
    config["users"][0]["user"]["client-key"] = str(tmp_path / "missing.key")
    path.write_text(json.dumps(config))
    with pytest.raises(CredentialsError, match=str(path)):
        load_credentials(kubeconfig=path, in_cluster=False)


@pytest.mark.parametrize(
    "text",
    [
        "not: [valid",
        json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "missing"}),
        "",
    ],
    ids=["bad-yaml", "missing-context", "empty"],
)
def test_a_bad_kubeconfig_is_one_clear_line(tmp_path: Path, text: str):
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(CredentialsError) as info:
        load_credentials(kubeconfig=path, in_cluster=False)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "\n" not in message


def test_a_missing_kubeconfig_names_the_file(tmp_path: Path):
    with pytest.raises(CredentialsError, match="kubeconfig not found"):
        load_credentials(kubeconfig=tmp_path / "nope", in_cluster=False)


def test_in_cluster_token_is_reread_at_most_every_minute(
    tmp_path: Path, kube_tls, monkeypatch: pytest.MonkeyPatch
):
    token = tmp_path / "token"
    token.write_text("first")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setattr("kubernetes.config.incluster_config.SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(
        "kubernetes.config.incluster_config.SERVICE_CERT_FILENAME", str(kube_tls.ca_cert)
    )
    creds = load_credentials(kubeconfig=None, in_cluster=True)
    assert creds.host == "https://127.0.0.1:6443"
    assert creds.headers() == {"Authorization": "Bearer first"}
    token.write_text("second")  # the kubelet rotates the projected token
    assert creds.headers() == {"Authorization": "Bearer first"}  # cached within 60 s
    creds.reload()  # what a 401 triggers
    assert creds.headers() == {"Authorization": "Bearer second"}


def test_in_cluster_without_a_service_account_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(CredentialsError, match="in-cluster"):
        load_credentials(kubeconfig=None, in_cluster=True)


async def test_a_bare_endpoint_sends_no_credentials_and_verifies_tls(kube_api: FakeKubeApi):
    # `kubernetes { endpoint URL }` without a kubeconfig: that address, no token; the fake
    # API's certificate is not in the system store, so TLS verification must refuse it.
    creds = load_credentials(kubeconfig=None, in_cluster=True, endpoint=kube_api.url)
    assert creds.host == kube_api.url
    assert creds.headers() == {}
    assert creds.source == f"endpoint {kube_api.url}"
    async with KubeApi(creds) as api:
        with pytest.raises(UnreachableError, match=r"(?i)certificate"):
            await api.list_page(Kind.SERVICE)
