"""The answer logic stays pure: importing it pulls in no sockets, asyncio or wire library.

Which modules may import dnslib and `kubernetes` is import-linter's job (`make lint`)."""

from __future__ import annotations

import subprocess
import sys

PURE = [
    "kdns.dns.answer",
    "kdns.dns.names",
    "kdns.dns.records",
    "kdns.dns.view",
    "kdns.cluster.index",
]
FORBIDDEN = ["asyncio", "socket", "dnslib", "aiohttp", "kubernetes", "cachetools", "yaml"]


def test_pure_modules_import_no_io_or_wire_modules() -> None:
    code = (
        "import sys\n"
        f"for m in {PURE!r}: __import__(m)\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
