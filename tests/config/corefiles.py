"""Helpers for the Corefile tests: load text with a fake resolv.conf, list problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.config.corefile import CorefileError, parse_corefile_text
from kdns.config.model import Config

# What `forward . /etc/resolv.conf` reads in these tests (never the host's file).
RESOLV_CONF = {
    "/etc/resolv.conf": "search example.internal\nnameserver 10.96.0.1\nnameserver fd00::1\n",
    "/etc/empty-resolv.conf": "# no nameserver\n",
}


def read_resolv_conf(path: Path) -> str:
    try:
        return RESOLV_CONF[str(path)]
    except KeyError:
        raise FileNotFoundError(2, "No such file or directory", str(path)) from None


def load(text: str, *, source: str = "Corefile", dns_port: int = 53, **environ: str) -> Config:
    return parse_corefile_text(
        text, source=source, dns_port=dns_port, environ=environ, read_resolv_conf=read_resolv_conf
    )


def problems(text: str, *, source: str = "Corefile") -> list[str]:
    with pytest.raises(CorefileError) as caught:
        load(text, source=source)
    return [str(p) for p in caught.value.problems]


def block(*lines: str, key: str = ".:53") -> str:
    """A one-block Corefile whose plugin lines start at line 2."""
    return f"{key} {{\n" + "".join(f"    {line}\n" for line in lines) + "}\n"
