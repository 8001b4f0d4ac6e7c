"""`--hosts FILE`: the flags front end's `hosts FILE { fallthrough }`, before the cluster
zone in plugin.cfg order; refused beside --corefile, which says it instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.config.flags import config_from_settings
from kdns.config.model import HostsConfig
from kdns.config.options import UsageError, settings_from_values
from kdns.config.settings import Settings


def test_hosts_flag_is_hosts_file_with_fallthrough_before_kubernetes(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.10 db.example.org\n")
    settings = settings_from_values(
        {"--hosts": [str(hosts)], "--manifests": [str(tmp_path)]},
        where={},
        in_cluster_env=False,
    )
    assert settings.hosts_file == hosts
    (block,) = config_from_settings(Settings(hosts_file=hosts, upstreams=())).blocks
    assert block.plugins["hosts"] == HostsConfig(path=hosts, fallthrough=())
    names = block.chain_names()
    assert names.index("hosts") < names.index("kubernetes")


def test_hosts_flag_names_the_directive_beside_a_corefile(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("")
    (tmp_path / "Corefile").write_text(".:53 {\n    forward . 127.0.0.1\n}\n")
    values = {"--corefile": [str(tmp_path / "Corefile")], "--hosts": [str(tmp_path / "hosts")]}
    with pytest.raises(UsageError, match=r"write `hosts FILE \{ fallthrough \}` instead"):
        settings_from_values(values, where={}, in_cluster_env=False)


def test_hosts_flag_wants_an_existing_file(tmp_path: Path) -> None:
    values = {"--hosts": [str(tmp_path / "absent")], "--manifests": [str(tmp_path)]}
    with pytest.raises(UsageError, match="does not exist"):
        settings_from_values(values, where={}, in_cluster_env=False)
