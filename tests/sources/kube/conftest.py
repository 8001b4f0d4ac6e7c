"""Fixtures for the Kubernetes source tests: the fake API (`kube_api`, `kube_tls`)."""

from tests.fakes.kubeapi import kube_api, kube_tls

__all__ = ["kube_api", "kube_tls"]
