"""`log`: one line per query in CoreDNS's formats, written once the reply is encoded."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address

import dnslib
import pytest

from kdns.config.model import COMMON_LOG_FORMAT, LogClass, LogConfig, LogRule
from kdns.dns.records import A, Rcode, Record, Reply, RType
from kdns.plugins.log import LogPlugin, classify, parse_format, seconds_text
from kdns.serve.chain import Request, Response, link
from tests.plugins.canned import Canned, make_request, resolve

LOGGER = "kdns.query"
ANSWER = (Record("example.org.", 5, A(IPv4Address("192.0.2.1"))),)


@pytest.fixture(autouse=True)
def _capture_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)


class Clock:
    def __init__(self) -> None:
        self.now = 0.5

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    records = [r for r in caplog.records if r.name == LOGGER]
    assert all(r.levelno == logging.INFO for r in records)
    return [r.getMessage() for r in records]


def reply_bytes(
    request: Request,
    *,
    rcode: int = 0,
    answers: tuple[str, ...] = ("example.org. 5 IN A 192.0.2.1",),
    tc: bool = False,
    ext_rcode: int | None = None,
) -> bytes:
    """What the server would send, built independently of kdns's encoder."""
    reply = dnslib.DNSRecord.parse(request.data).reply(ra=0, aa=1)
    reply.header.rcode = rcode
    reply.header.tc = int(tc)
    for zone in answers:
        reply.add_answer(*dnslib.RR.fromZone(zone))
    if ext_rcode is not None:
        reply.add_ar(dnslib.EDNS0(udp_len=1232, ext_rcode=ext_rcode))
    return bytes(reply.pack())


def send(request: Request, reply: bytes) -> None:
    """Play the server: hand the encoded reply to whoever asked for it."""
    for callback in request.after or ():
        callback(reply)


def plugin_for(
    response: Response, *rules: LogRule, clock: Clock | None = None, pending: bool = False
) -> LogPlugin:
    plugin = LogPlugin(LogConfig(rules=rules or (LogRule(),)), clock=clock or Clock())
    link([plugin, Canned(response, pending=pending)])
    return plugin


async def serve_and_send(plugin: LogPlugin, request: Request, reply: bytes | None = None) -> None:
    await resolve(plugin.serve(request))
    send(request, reply if reply is not None else reply_bytes(request))


# ---- the line -----------------------------------------------------------------------------


async def test_the_common_log_format(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    plugin = plugin_for(Response(Reply(answer=ANSWER)), clock=clock)
    request = make_request("example.org.", RType.A, qid=29008, client=("::1", 50759))
    clock.now = 0.5
    await resolve(plugin.serve(request))
    assert lines(caplog) == []  # nothing before the reply is encoded
    clock.now = 0.625
    send(request, reply_bytes(request))
    # query: 12 header + 13 name + 4 + 11 OPT = 40 octets; reply: 12 + 17 question +
    # 16 answer (owner pointer) = 45 octets
    assert lines(caplog) == [
        '[::1]:50759 - 29008 "A IN example.org. udp 40 false 1232" NOERROR qr,aa,rd 45 0.125s'
    ]


async def test_the_combined_format_adds_the_opcode(caplog: pytest.LogCaptureFixture) -> None:
    plugin = plugin_for(Response(Reply(answer=ANSWER)), LogRule(format="{combined}"))
    await serve_and_send(plugin, make_request("example.org.", RType.A, qid=7))
    assert lines(caplog) == [
        '10.0.0.1:40000 - 7 "A IN example.org. udp 40 false 1232" NOERROR qr,aa,rd 45 0s "0"'
    ]


async def test_a_custom_format(caplog: pytest.LogCaptureFixture) -> None:
    plugin = plugin_for(
        Response(Reply(answer=ANSWER)), LogRule(format="{proto} Request: {name} {type} {>id}")
    )
    await serve_and_send(plugin, make_request("example.org.", RType.AAAA, qid=9, tcp=True))
    assert lines(caplog) == ["tcp Request: example.org. AAAA 9"]


@pytest.mark.parametrize(
    ("edns", "tcp", "expected"),
    [
        (None, False, "false 512"),  # no EDNS: 512 octets (RFC 1035 §4.2.1)
        (dnslib.EDNS0(udp_len=4096, flags="do"), False, "true 4096"),
        (dnslib.EDNS0(udp_len=100), False, "false 512"),  # below 512 counts as 512
        (dnslib.EDNS0(udp_len=4096), True, "false 65535"),  # TCP: the largest message
    ],
    ids=["no-edns", "do", "tiny-edns", "tcp"],
)
async def test_do_and_bufsize(
    edns: dnslib.EDNS0 | None, tcp: bool, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    query = dnslib.DNSRecord.question("example.org.", "A")
    if edns is not None:
        query.add_ar(edns)
    request = make_request("", 0, data=bytes(query.pack()), tcp=tcp)
    plugin = plugin_for(Response(Reply(answer=ANSWER)), LogRule(format="{>do} {>bufsize}"))
    await serve_and_send(plugin, request)
    assert lines(caplog) == [expected]


async def test_size_flags_and_rcode_are_those_of_the_bytes_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = plugin_for(Response(Reply(answer=ANSWER)), LogRule(format="{rcode} {>rflags} {rsize}"))
    request = make_request("example.org.", RType.A)
    truncated = reply_bytes(request, answers=(), tc=True)  # the server cut the answer
    await serve_and_send(plugin, request, truncated)
    assert lines(caplog) == [f"NOERROR qr,aa,tc,rd {len(truncated)}"]


async def test_an_extended_rcode_is_read_from_the_opt(caplog: pytest.LogCaptureFixture) -> None:
    plugin = plugin_for(Response(Reply(answer=ANSWER)), LogRule(format="{rcode}"))
    request = make_request("example.org.", RType.A)
    await serve_and_send(plugin, request, reply_bytes(request, answers=(), ext_rcode=1))
    assert lines(caplog) == ["BADVERS"]  # RFC 6891 §9: 16 = upper 1, header 0


async def test_a_pending_response_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    plugin = plugin_for(Response(Reply(answer=ANSWER)), LogRule(format="{name}"), pending=True)
    await serve_and_send(plugin, make_request("example.org.", RType.A))
    assert lines(caplog) == ["example.org."]


async def test_no_line_when_no_reply_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    plugin = plugin_for(Response(Reply(answer=ANSWER)))
    request = make_request("example.org.", RType.A)
    await resolve(plugin.serve(request))
    assert request.after is not None
    assert len(request.after) == 1  # the line waits for bytes that never come
    assert lines(caplog) == []


# ---- which queries are logged -------------------------------------------------------------

SUCCESS = Response(Reply(answer=ANSWER))
NODATA = Response(Reply())
NXDOMAIN = Response(Reply(rcode=Rcode.NXDOMAIN))
SERVFAIL = Response(Reply(rcode=Rcode.SERVFAIL, authoritative=False))
REFUSED = Response(Reply(rcode=Rcode.REFUSED, authoritative=False))
SUCCESS_WIRE = Response(wire=b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00")
NODATA_WIRE = Response(wire=b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (SUCCESS, LogClass.SUCCESS),
        (SUCCESS_WIRE, LogClass.SUCCESS),
        (NODATA, LogClass.DENIAL),
        (NODATA_WIRE, LogClass.DENIAL),
        (NXDOMAIN, LogClass.DENIAL),
        (SERVFAIL, LogClass.ERROR),
        (REFUSED, LogClass.ERROR),
    ],
    ids=["success", "success-wire", "nodata", "nodata-wire", "nxdomain", "servfail", "refused"],
)
def test_classify(response: Response, expected: LogClass) -> None:
    assert classify(response) == expected


@pytest.mark.parametrize(
    ("classes", "logged"),
    [
        ({LogClass.ALL}, ["success", "nodata", "nxdomain", "servfail"]),
        ({LogClass.SUCCESS}, ["success"]),
        ({LogClass.DENIAL}, ["nodata", "nxdomain"]),
        ({LogClass.ERROR}, ["servfail"]),
        ({LogClass.DENIAL, LogClass.ERROR}, ["nodata", "nxdomain", "servfail"]),
        ({LogClass.ALL, LogClass.ERROR}, ["success", "nodata", "nxdomain", "servfail"]),
    ],
)
async def test_the_class_filter(
    classes: set[LogClass], logged: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    responses = {"success": SUCCESS, "nodata": NODATA, "nxdomain": NXDOMAIN, "servfail": SERVFAIL}
    for label, response in responses.items():
        plugin = plugin_for(response, LogRule(format=label, classes=frozenset(classes)))
        await serve_and_send(plugin, make_request("example.org.", RType.A))
    assert lines(caplog) == logged


@pytest.mark.parametrize(
    ("qname", "logged"),
    [
        ("example.org.", True),
        ("www.EXAMPLE.org.", True),
        ("a.b.example.org.", True),
        ("notexample.org.", False),
        ("example.com.", False),
        ("org.", False),
    ],
)
async def test_only_names_under_the_rule_are_logged(
    qname: str, logged: bool, caplog: pytest.LogCaptureFixture
) -> None:
    response = Response(Reply(answer=ANSWER), cacheable=True)
    plugin = plugin_for(response, LogRule(names=("example.org.",), format="{name}"))
    request = make_request(qname, RType.A)
    out = await resolve(plugin.serve(request))
    send(request, reply_bytes(request))
    assert lines(caplog) == ([qname.lower()] if logged else [])
    assert out.cacheable is not logged  # what is not logged may stay on the fast path


async def test_the_first_rule_holding_the_name_decides(caplog: pytest.LogCaptureFixture) -> None:
    denial = frozenset({LogClass.DENIAL})
    plugin = plugin_for(
        SUCCESS,
        LogRule(names=("example.org.",), format="denial {name}", classes=denial),
        LogRule(names=(".",), format="all {name}"),
    )
    await serve_and_send(plugin, make_request("www.example.org.", RType.A))
    await serve_and_send(plugin, make_request("example.com.", RType.A))
    # As CoreDNS: the success under example.org. matched the first rule, which does not
    # log successes; the second rule is not tried for it.
    assert lines(caplog) == ["all example.com."]


async def test_a_logged_response_leaves_the_fast_path_without_changing_the_original() -> None:
    original = Response(Reply(answer=ANSWER), cacheable=True)
    plugin = plugin_for(original)
    out = await resolve(plugin.serve(make_request("example.org.", RType.A)))
    assert out.cacheable is False
    assert out.reply is original.reply
    assert original.cacheable is True  # a cache below may hold this object


# ---- format details -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{type} {name}", "A example.org."),
        ("{ {type} }", "{ A }"),  # "}" closes the nearest "{"
        ("A } {name}", "A } example.org."),
        ("{foo} {type}", "{foo} A"),  # unknown labels stay as written
        ("{/log/class} {port}", "- 40000"),  # metadata is not kept: "-"
        ("{remote}", "10.0.0.1"),
        ("no placeholders", "no placeholders"),
    ],
)
async def test_format_placeholders(
    text: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = plugin_for(SUCCESS, LogRule(format=text))
    await serve_and_send(plugin, make_request("example.org.", RType.A))
    assert lines(caplog) == [expected]


def test_common_and_combined_expand_inside_a_format() -> None:
    assert parse_format("x {common}") == parse_format("x " + COMMON_LOG_FORMAT)
    assert parse_format("{combined}") == parse_format(COMMON_LOG_FORMAT + ' "{>opcode}"')


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.000123, "0.000123s"), (1e-05, "0.00001s"), (0.037990251, "0.037990251s"), (2.0, "2s")],
)
def test_durations_print_in_plain_decimal(seconds: float, text: str) -> None:
    assert seconds_text(seconds) == text
