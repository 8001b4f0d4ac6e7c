"""`hosts`: answers from an /etc/hosts-style file and inline lines, as CoreDNS's hosts.go
answers (its README and code): A/AAAA/PTR, NODATA for other types of known names, a miss
passes on only with `fallthrough` (else SERVFAIL: CoreDNS has no SOA for an NXDOMAIN), PTR
misses always pass on. Expected answers are zone-file lines."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

from kdns.config.model import HostsConfig
from kdns.dns.records import Rcode, Reply, RType
from kdns.plugins.hosts import HostsPlugin
from kdns.serve.chain import Generation, Response, link
from tests.plugins.canned import Canned, make_request, resolve

HOSTS = """\
# The following lines are desirable for IPv4 capable hosts
127.0.0.1       localhost
192.0.2.10      db.example.org  db    # a comment
2001:db8::10    db.example.org
192.0.2.20      v4only.example.org
2001:db8::30    v6only.example.org
192.0.2.40      *.apps.example.org
192.0.2.41      exact.apps.example.org
198.51.100.1    outside.example.net
not-an-address  broken.example.org
192.0.2.50
"""
INLINE = (
    "192.0.2.10 db.example.org",
    "192.0.2.11 db.example.org",
    "2001:db8::99 inline.example.org",
)
NEXT = Response(Reply(rcode=Rcode.REFUSED, authoritative=False), plugin="next")
PTR_10 = "10.2.0.192.in-addr.arpa."
PTR_V6 = "0.1.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.ip6.arpa."  # 2001:db8::10 (RFC 3596 §2.5)
DB_A = ["db.example.org. 3600 IN A 192.0.2.10", "db.example.org. 3600 IN A 192.0.2.11"]


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    return path


def make(config: HostsConfig, generation: Generation | None = None) -> HostsPlugin:
    plugin = HostsPlugin(config, generation=generation or Generation())
    link([plugin, Canned(NEXT)])
    return plugin


async def ask(plugin: HostsPlugin, qname: str, qtype: int) -> str | tuple[str, list[str]]:
    """ "next" when the query passed on, else (rcode, answer lines); checks AA and caching."""
    response = await resolve(plugin.serve(make_request(qname, qtype)))
    if response.plugin == "next":
        return "next"
    assert response.reply is not None
    assert response.plugin == "hosts"
    assert response.cacheable  # the data changes only with a reload, which bumps Generation
    assert response.reply.authoritative == (response.reply.rcode == Rcode.NOERROR)
    return response.reply.rcode.name, [str(r) for r in response.reply.answer]


def config(path: Path, **kwargs: object) -> HostsConfig:
    base = HostsConfig(path=path, zones=("example.org.",), inline=INLINE)
    return replace(base, **kwargs)  # type: ignore[arg-type]


CASES: list[tuple[str, dict[str, object], str, int, object]] = [
    ("a-file-then-inline", {}, "db.example.org.", RType.A, ("NOERROR", DB_A)),
    ("aaaa", {}, "DB.Example.ORG.", RType.AAAA,
     ("NOERROR", ["db.example.org. 3600 IN AAAA 2001:db8::10"])),
    ("ttl", {"ttl": 60}, "v4only.example.org.", RType.A,
     ("NOERROR", ["v4only.example.org. 60 IN A 192.0.2.20"])),
    ("nodata-other-family", {}, "v4only.example.org.", RType.AAAA, ("NOERROR", [])),
    ("nodata-other-type", {}, "v6only.example.org.", RType.MX, ("NOERROR", [])),
    ("nodata-inline-only", {}, "inline.example.org.", RType.TXT, ("NOERROR", [])),
    ("miss-servfail", {}, "nope.example.org.", RType.A, ("SERVFAIL", [])),
    ("miss-fallthrough", {"fallthrough": ()}, "nope.example.org.", RType.A, "next"),
    ("miss-fallthrough-other-zone", {"fallthrough": ("other.example.org.",)}, "nope.example.org.",
     RType.A, ("SERVFAIL", [])),
    ("miss-fallthrough-its-zone", {"fallthrough": ("example.org.",)}, "nope.example.org.",
     RType.A, "next"),
    ("outside-zones", {}, "outside.example.net.", RType.A, "next"),
    ("bad-lines-skipped", {}, "broken.example.org.", RType.A, ("SERVFAIL", [])),
    ("wildcard-one-label", {}, "web.apps.example.org.", RType.A,
     ("NOERROR", ["web.apps.example.org. 3600 IN A 192.0.2.40"])),
    ("wildcard-exact-wins", {}, "exact.apps.example.org.", RType.A,
     ("NOERROR", ["exact.apps.example.org. 3600 IN A 192.0.2.41"])),
    ("wildcard-not-deeper", {}, "a.b.apps.example.org.", RType.A, ("SERVFAIL", [])),
    ("wildcard-not-apex", {}, "apps.example.org.", RType.A, ("SERVFAIL", [])),
    ("ptr", {}, PTR_10, RType.PTR, ("NOERROR", [f"{PTR_10} 3600 IN PTR db.example.org."])),
    ("ptr-v6", {}, PTR_V6, RType.PTR, ("NOERROR", [f"{PTR_V6} 3600 IN PTR db.example.org."])),
    ("ptr-miss-passes-on", {}, "99.2.0.192.in-addr.arpa.", RType.PTR, "next"),
    ("ptr-partial-name-passes-on", {}, "2.0.192.in-addr.arpa.", RType.PTR, "next"),
    ("ptr-no-reverse", {"reverse": False}, PTR_10, RType.PTR, "next"),
    ("ptr-wildcards-make-none", {}, "40.2.0.192.in-addr.arpa.", RType.PTR, "next"),
    ("unsupported-passes-on", {"fallthrough": (), "fallthrough_unsupported": True},
     "db.example.org.", RType.TXT, "next"),
    ("unsupported-a-still-answered", {"fallthrough": (), "fallthrough_unsupported": True},
     "db.example.org.", RType.A, ("NOERROR", DB_A)),
]  # fmt: skip


@pytest.mark.parametrize(("options", "qname", "qtype", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
async def test_answers(
    hosts_file: Path, options: dict[str, object], qname: str, qtype: int, expected: object
) -> None:
    assert await ask(make(config(hosts_file, **options)), qname, qtype) == expected


async def test_a_missing_file_serves_the_inline_lines_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kdns.plugins.hosts")
    plugin = make(config(tmp_path / "absent"))
    assert await ask(plugin, "inline.example.org.", RType.AAAA) == (
        "NOERROR",
        ["inline.example.org. 3600 IN AAAA 2001:db8::99"],
    )
    assert [r.getMessage() for r in caplog.records] == [
        f"hosts: cannot read {tmp_path / 'absent'} (No such file or directory); serving the "
        "inline lines until it can be read"
    ]


async def test_a_changed_file_is_read_again_and_bumps_the_generation(hosts_file: Path) -> None:
    generation = Generation()
    plugin = make(config(hosts_file, reload=0.001, inline=()), generation)
    (job,) = plugin.background()
    task = asyncio.get_running_loop().create_task(job())
    try:
        edit(hosts_file, "192.0.2.77 db.example.org\n")
        for _ in range(500):  # bounded wait for the reload task
            if generation.generation:
                break
            await asyncio.sleep(0.01)
        assert generation.generation == 1
        assert await ask(plugin, "db.example.org.", RType.A) == (
            "NOERROR",
            ["db.example.org. 3600 IN A 192.0.2.77"],
        )
        edit(hosts_file, None)  # deleted: the last content stays (CoreDNS keeps it too)
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert generation.generation == 1
        assert await ask(plugin, "db.example.org.", RType.A) != ("SERVFAIL", [])
    finally:
        task.cancel()


def edit(path: Path, text: str | None) -> None:
    if text is None:
        path.unlink()
        return
    path.write_text(text)
    os.utime(path, ns=(1, 1))  # a new mtime even within the clock's resolution


def test_reload_0_runs_no_background_job(hosts_file: Path) -> None:
    assert make(config(hosts_file, reload=0.0)).background() == []
