from pathlib import Path

import pytest

from tests.e2e.kdns_process import require_tool

_HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in tests/e2e is `e2e` (`make check` deselects them), marked or not."""
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _needs_dig() -> None:
    require_tool("dig")
