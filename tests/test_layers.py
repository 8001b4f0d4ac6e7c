"""The answer logic stays pure: importing it pulls in no sockets, asyncio or wire library."""

from __future__ import annotations

import subprocess
import sys

PURE = ["kdns.dns.answer", "kdns.dns.names", "kdns.dns.records", "kdns.dns.view", "kdns.index"]
FORBIDDEN = ["asyncio", "socket", "dnslib", "aiohttp", "kubernetes", "cachetools", "yaml"]


def test_pure_modules_import_no_io_or_wire_modules() -> None:
    code = (
        "import sys\n"
        f"for m in {PURE!r}: __import__(m)\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_only_the_wire_module_imports_dnslib() -> None:
    code = "import sys\nimport kdns.dns.wire\nassert 'dnslib' in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)
