"""Static zone files: the parser's edge cases, authoritative answers for the shipped
example zone (RFC 1034 §4.3.2, RFC 2308, RFC 8020), and reload with keep-last-good.

Expected answers are written from the zone text and the RFCs, as zone-file lines.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kdns.dns.records import TXT, Question, Rcode, RType
from kdns.zones.zonefile import ZoneError, ZoneSet, answer_zone, parse_zone, run_reload

EXAMPLE = Path(__file__).resolve().parents[2] / "zones" / "example.internal.zone"
SOA_NEG = (
    "example.internal. 60 IN SOA ns1.example.internal. hostmaster.example.internal. "
    "2024010101 7200 1800 1209600 60"
)


@dataclass
class Case:
    name: str
    qname: str
    qtype: RType
    rcode: Rcode = Rcode.NOERROR
    answer: list[str] = field(default_factory=list)
    authority: list[str] = field(default_factory=list)
    additional: list[str] = field(default_factory=list)
    chase: str | None = None


CASES = [
    Case("A", "mail.example.internal.", RType.A,
         answer=["mail.example.internal. 300 IN A 192.0.2.25"]),
    Case("case-insensitive (RFC 4343)", "MAIL.Example.Internal.", RType.A,
         answer=["mail.example.internal. 300 IN A 192.0.2.25"]),
    Case("explicit TTL, then $TTL for the next owner-less line", "ns2.example.internal.",
         RType.AAAA, answer=["ns2.example.internal. 300 IN AAAA 2001:db8::54"]),
    Case("apex SOA", "example.internal.", RType.SOA, answer=[SOA_NEG.replace(" 60 IN", " 300 IN")]),
    Case("apex NS with in-zone glue", "example.internal.", RType.NS,
         answer=["example.internal. 300 IN NS ns1.example.internal.",
                 "example.internal. 300 IN NS ns2.example.internal."],
         additional=["ns1.example.internal. 300 IN A 192.0.2.53",
                     "ns2.example.internal. 600 IN A 192.0.2.54",
                     "ns2.example.internal. 300 IN AAAA 2001:db8::54"]),
    Case("MX with glue", "example.internal.", RType.MX,
         answer=["example.internal. 300 IN MX 10 mail.example.internal."],
         additional=["mail.example.internal. 300 IN A 192.0.2.25"]),
    Case("SRV with glue", "_http._tcp.web.example.internal.", RType.SRV,
         answer=["_http._tcp.web.example.internal. 300 IN SRV 0 50 80 web.example.internal."],
         additional=["web.example.internal. 300 IN A 192.0.2.80",
                     "web.example.internal. 300 IN A 192.0.2.81",
                     "web.example.internal. 300 IN AAAA 2001:db8::80"]),
    Case("CNAME chased in zone (RFC 1034 §4.3.2 3a)", "www.example.internal.", RType.A,
         answer=["www.example.internal. 300 IN CNAME web.example.internal.",
                 "web.example.internal. 300 IN A 192.0.2.80",
                 "web.example.internal. 300 IN A 192.0.2.81"]),
    Case("CNAME chain of two", "docs.example.internal.", RType.AAAA,
         answer=["docs.example.internal. 300 IN CNAME www.example.internal.",
                 "www.example.internal. 300 IN CNAME web.example.internal.",
                 "web.example.internal. 300 IN AAAA 2001:db8::80"]),
    Case("CNAME asked as CNAME is not chased", "www.example.internal.", RType.CNAME,
         answer=["www.example.internal. 300 IN CNAME web.example.internal."]),
    Case("CNAME to a target without the type: NODATA after the chain", "www.example.internal.",
         RType.MX, answer=["www.example.internal. 300 IN CNAME web.example.internal."],
         authority=[SOA_NEG]),
    Case("CNAME out of zone: left for the upstream", "search.example.internal.", RType.A,
         answer=["search.example.internal. 300 IN CNAME search.example.com."],
         chase="search.example.com."),
    Case("NODATA carries the SOA (RFC 2308 §2.2)", "mail.example.internal.", RType.AAAA,
         authority=[SOA_NEG]),
    Case("NXDOMAIN carries the SOA (RFC 2308 §2.1)", "nope.example.internal.", RType.A,
         rcode=Rcode.NXDOMAIN, authority=[SOA_NEG]),
    Case("below an existing name is NXDOMAIN", "x.mail.example.internal.", RType.A,
         rcode=Rcode.NXDOMAIN, authority=[SOA_NEG]),
    Case("empty non-terminal is NODATA (RFC 8020)", "prod.example.internal.", RType.A,
         authority=[SOA_NEG]),
    Case("_tcp ENT is NODATA", "_tcp.web.example.internal.", RType.SRV, authority=[SOA_NEG]),
    Case("TXT with quotes, escapes and a semicolon", "note.example.internal.", RType.TXT,
         answer=['note.example.internal. 300 IN TXT "hello \\"world\\"" "semi;colon" "plain"']),
]  # fmt: skip


@pytest.fixture(scope="module")
def zones() -> ZoneSet:
    return ZoneSet((EXAMPLE,))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_example_zone_answers(zones: ZoneSet, case: Case) -> None:
    reply = zones.answer(Question(case.qname, case.qtype))
    assert reply.rcode == case.rcode
    assert reply.authoritative  # AA (RFC 1035 §4.1.1)
    assert [str(r) for r in reply.answer] == case.answer  # CNAME first (D5)
    assert [str(r) for r in reply.authority] == case.authority
    assert sorted(str(r) for r in reply.additional) == sorted(case.additional)
    assert reply.chase == case.chase
    assert reply.cacheable is (case.chase is None)


def test_find_returns_the_apex_of_the_zone_holding_a_name(zones: ZoneSet) -> None:
    assert zones.find("a.b.example.internal.") == "example.internal."
    assert zones.find("example.internal.") == "example.internal."
    assert zones.find("internal.") is None
    assert zones.find("xexample.internal.") is None
    assert zones.find(".") is None


def test_answer_outside_every_zone_is_refused(zones: ZoneSet) -> None:
    assert zones.answer(Question("www.example.com.", RType.A)).rcode == Rcode.REFUSED


# --- parser --------------------------------------------------------------------------

HEADER = "$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\n"


def parse(body: str, origin: str = "z.test.") -> dict[str, list[str]]:
    zone = parse_zone(HEADER + body, source="t.zone", origin=origin)
    return {
        name: sorted(str(r) for rrset in node.values() for r in rrset)
        for name, node in zone.rrsets.items()
    }


def test_origin_comes_from_the_file_name_without_origin_directive() -> None:
    zone = parse_zone(HEADER + "www A 192.0.2.1\n", source="zones/corp.example.zone")
    assert zone.apex == "corp.example."
    assert "www.corp.example." in zone.rrsets


def test_origin_directive_relative_names_and_at() -> None:
    got = parse("$ORIGIN sub.z.test.\nhost A 192.0.2.1\n@ TXT x\nabs.z.test. A 192.0.2.2\n")
    assert got["host.sub.z.test."] == ["host.sub.z.test. 60 IN A 192.0.2.1"]
    assert got["sub.z.test."] == ['sub.z.test. 60 IN TXT "x"']
    assert got["abs.z.test."] == ["abs.z.test. 60 IN A 192.0.2.2"]


def test_parentheses_span_lines_and_comments_are_ignored() -> None:
    zone = parse_zone(
        "$ORIGIN z.test.\n@ 30 IN SOA ns hm ( 7 ; serial\n  2h 30m ; timers\n 1w\n 1d ) ; end\n",
        source="t",
    )
    assert str(zone.soa) == "z.test. 30 IN SOA ns.z.test. hm.z.test. 7 7200 1800 604800 86400"


def test_omitted_owner_ttl_and_class_and_class_before_ttl() -> None:
    got = parse("a 10 IN A 192.0.2.1\n  A 192.0.2.2\nb IN 20 A 192.0.2.3\nc A 192.0.2.4\n")
    assert got["a.z.test."] == ["a.z.test. 10 IN A 192.0.2.1", "a.z.test. 10 IN A 192.0.2.2"]
    assert got["b.z.test."] == ["b.z.test. 20 IN A 192.0.2.3"]
    assert got["c.z.test."] == ["c.z.test. 60 IN A 192.0.2.4"]  # $TTL


def test_without_ttl_directive_the_last_explicit_ttl_is_used() -> None:
    # RFC 1035 §5.1: an omitted TTL is the previous one.
    zone = parse_zone("$ORIGIN z.\n@ 99 SOA ns hm 1 2 3 4 5\na A 192.0.2.1\n", source="t")
    assert str(zone.rrsets["a.z."][RType.A][0]) == "a.z. 99 IN A 192.0.2.1"


def test_txt_escapes() -> None:
    zone = parse_zone(HEADER + 't TXT "a\\"b" "c\\\\d" "\\065\\066" e\\;f ""\n', source="t",
                      origin="z.")  # fmt: skip
    rdata = zone.rrsets["t.z."][RType.TXT][0].rdata
    assert isinstance(rdata, TXT)
    assert rdata.strings == ('a"b', "c\\d", "AB", "e;f", "")


def test_all_supported_types_parse() -> None:
    got = parse("a AAAA 2001:db8::1\nc CNAME a\nm MX 5 a\ns SRV 1 2 3 a\np PTR a.z.test.\n")
    assert got["a.z.test."] == ["a.z.test. 60 IN AAAA 2001:db8::1"]
    assert got["c.z.test."] == ["c.z.test. 60 IN CNAME a.z.test."]
    assert got["m.z.test."] == ["m.z.test. 60 IN MX 5 a.z.test."]
    assert got["s.z.test."] == ["s.z.test. 60 IN SRV 1 2 3 a.z.test."]
    assert got["p.z.test."] == ["p.z.test. 60 IN PTR a.z.test."]


def test_duplicate_records_are_dropped_and_an_rrset_has_one_ttl() -> None:
    # RFC 2181 §5 (no duplicates) and §5.2 (one TTL per RRset; we keep the lowest).
    got = parse("a 30 A 192.0.2.1\na 10 A 192.0.2.2\na A 192.0.2.1\n")
    assert got["a.z.test."] == ["a.z.test. 10 IN A 192.0.2.1", "a.z.test. 10 IN A 192.0.2.2"]


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ("www A 300.1.1.1\n", 3, "bad IPv4 address"),
        ("www AAAA 192.0.2.1\n", 3, "bad IPv6 address"),
        ("www A\n", 3, "A needs 1 field, got 0"),
        ("www MX 70000 mail\n", 3, "bad MX preference"),
        ("www IN HINFO a b\n", 3, "record type HINFO is not supported"),
        ("www IN FOO x\n", 3, "record type FOO is not supported"),
        ("www CH A 192.0.2.1\n", 3, "class CH is not supported"),
        ("* A 192.0.2.1\n", 3, "wildcards are not supported"),
        ("sub NS ns.other.\n", 3, "delegation at sub.z.test. is not supported"),
        ("www.other. A 192.0.2.1\n", 3, "outside the zone"),
        ("c CNAME a\nc A 192.0.2.1\n", 4, "has a CNAME and other data"),
        ('\n\nt TXT "open\n', 5, "unterminated quoted string"),
        ("t TXT ( a\n", 3, "'(' is never closed"),
        ("t TXT a )\n", 3, "')' without '('"),
        ("$INCLUDE other.zone\n", 3, "directive $INCLUDE is not supported"),
        ("$TTL 1x\n", 3, "bad TTL"),
        ("@ SOA ns hm 1 2 3 4 5\n", 3, "a second SOA record"),
        ("a..b A 192.0.2.1\n", 3, "empty label"),
        (f"{'x' * 64} A 192.0.2.1\n", 3, "longer than 63 octets"),
        (f"t TXT {'y' * 256}\n", 3, "longer than 255 octets"),
    ],
)
def test_errors_name_file_line_and_reason(body: str, line: int, reason: str) -> None:
    with pytest.raises(ZoneError) as info:
        parse(body)
    assert info.value.source == "t.zone"
    assert info.value.line == line
    assert reason in info.value.reason
    assert str(info.value).startswith(f"t.zone:{line}: ")


def test_zone_without_soa_is_an_error() -> None:
    with pytest.raises(ZoneError, match="no SOA"):
        parse_zone("$ORIGIN z.\n$TTL 5\na A 192.0.2.1\n", source="t")


def test_relative_name_without_origin_is_an_error() -> None:
    with pytest.raises(ZoneError, match="without \\$ORIGIN"):
        parse_zone("$TTL 5\nwww A 192.0.2.1\n", source="noorigin")


def test_cname_loop_stops() -> None:
    zone = parse_zone(HEADER + "a CNAME b\nb CNAME a\n", source="t", origin="z.")
    reply = answer_zone(zone, Question("a.z.", RType.A))
    assert [str(r) for r in reply.answer] == ["a.z. 60 IN CNAME b.z.", "b.z. 60 IN CNAME a.z."]


# --- loading and reloading -----------------------------------------------------------

GOOD = "$ORIGIN r.test.\n$TTL 30\n@ SOA ns hm 1 2 3 4 5\nwww A 192.0.2.1\n"


def touch_later(path: Path, text: str) -> None:
    """Rewrite `path` with an mtime surely different from before (coarse clocks)."""
    stat = path.stat()
    path.write_text(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def www(zones: ZoneSet, name: str = "www.r.test.") -> list[str]:
    return [str(r) for r in zones.answer(Question(name, RType.A)).answer]


def test_a_folder_loads_every_zone_file_in_it(tmp_path: Path) -> None:
    (tmp_path / "r.test.zone").write_text(GOOD)
    (tmp_path / "other.zone").write_text(GOOD.replace("r.test.", "o.test."))
    (tmp_path / ".hidden").write_text("garbage")
    zones = ZoneSet((tmp_path,))
    assert sorted(zones.zones) == ["o.test.", "r.test."]


def test_a_broken_file_at_start_refuses_to_load(tmp_path: Path) -> None:
    path = tmp_path / "r.zone"
    path.write_text(GOOD + "bad A nope\n")
    with pytest.raises(ZoneError, match=r"r.zone:5: bad IPv4 address"):
        ZoneSet((path,))


def test_two_files_with_one_apex_refuse_to_load(tmp_path: Path) -> None:
    (tmp_path / "a.zone").write_text(GOOD)
    (tmp_path / "b.zone").write_text(GOOD)
    with pytest.raises(ZoneError, match="already served"):
        ZoneSet((tmp_path,))


def test_reload_on_change_and_keep_last_good_on_a_broken_edit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "r.zone"
    path.write_text(GOOD)
    zones = ZoneSet((path,))
    assert www(zones) == ["www.r.test. 30 IN A 192.0.2.1"]
    assert zones.reload_if_changed() is False
    assert zones.generation == 0

    touch_later(path, GOOD.replace("192.0.2.1", "192.0.2.2"))
    assert zones.reload_if_changed() is True
    assert zones.generation == 1
    assert www(zones) == ["www.r.test. 30 IN A 192.0.2.2"]

    touch_later(path, GOOD + "oops A not-an-ip\n")
    assert zones.reload_if_changed() is False
    assert zones.generation == 1
    assert www(zones) == ["www.r.test. 30 IN A 192.0.2.2"]
    assert "r.zone:5: bad IPv4 address" in caplog.text
    caplog.clear()
    assert zones.reload_if_changed() is False  # the broken file is not re-read or re-logged
    assert caplog.text == ""

    path.unlink()
    assert zones.reload_if_changed() is False  # a named file that vanished: keep serving
    assert www(zones) == ["www.r.test. 30 IN A 192.0.2.2"]


def test_files_added_and_removed_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "r.zone").write_text(GOOD)
    zones = ZoneSet((tmp_path,))
    (tmp_path / "o.zone").write_text(GOOD.replace("r.test.", "o.test."))
    assert zones.reload_if_changed() is True
    assert zones.find("www.o.test.") == "o.test."
    (tmp_path / "o.zone").unlink()
    assert zones.reload_if_changed() is True
    assert zones.find("www.o.test.") is None


async def test_run_reload_polls(tmp_path: Path) -> None:
    path = tmp_path / "r.zone"
    path.write_text(GOOD)
    zones = ZoneSet((path,))
    task = asyncio.ensure_future(run_reload(zones, poll_seconds=0.01))
    try:
        touch_later(path, GOOD.replace("192.0.2.1", "192.0.2.3"))
        for _ in range(100):
            if zones.generation:
                break
            await asyncio.sleep(0.01)
        assert www(zones) == ["www.r.test. 30 IN A 192.0.2.3"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
