"""The forwarding flags build what their Corefile twins say: `--upstream-policy` is
`forward . UPSTREAM { policy POLICY }`, `--serve-stale` is `cache { serve_stale DURATION }`."""

from __future__ import annotations

import pytest

from kdns.config.flags import config_from_settings
from kdns.config.model import CacheConfig, ForwardConfig, ForwardPolicy
from kdns.config.options import UsageError, settings_from_values
from kdns.config.settings import HostPort


def plugins(*argv: str) -> tuple[CacheConfig, ForwardConfig]:
    values: dict[str, list[str]] = {"--manifests": ["."], "--upstream": ["127.0.0.1:5353"]}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        values[flag] = [value]
    settings = settings_from_values(values, where={}, in_cluster_env=False)
    (block,) = config_from_settings(settings).blocks
    cache, forward = block.plugins["cache"], block.plugins["forward"]
    assert isinstance(cache, CacheConfig)
    assert isinstance(forward, ForwardConfig)
    return cache, forward


def test_defaults_are_corednss() -> None:
    cache, forward = plugins()
    assert (cache.stale, forward.policy) == (0.0, ForwardPolicy.RANDOM)
    assert forward.to[0].addr == HostPort("127.0.0.1", 5353)
    assert (forward.max_fails, forward.health_check, forward.expire) == (2, 0.5, 10.0)


def test_policy_and_serve_stale() -> None:
    cache, forward = plugins("--upstream-policy", "sequential", "--serve-stale", "3600")
    assert (cache.stale, forward.policy) == (3600.0, ForwardPolicy.SEQUENTIAL)


@pytest.mark.parametrize(
    ("flag", "value"), [("--upstream-policy", "fastest"), ("--serve-stale", "1h")]
)
def test_bad_values_name_the_flag(flag: str, value: str) -> None:
    with pytest.raises(UsageError, match=flag):
        plugins(flag, value)
