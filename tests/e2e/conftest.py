import pytest

from tests.e2e.kdns_process import require_tool


@pytest.fixture(autouse=True)
def _needs_dig() -> None:
    require_tool("dig")
