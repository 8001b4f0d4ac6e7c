"""`log`: one line per query, in CoreDNS's formats, on the `kdns.query` logger at INFO.

Rules are tried in order; the first whose NAMES hold the query name (the name or a name
under it) decides: the query is logged when the response's class is one of the rule's
classes (success: NOERROR with answers; denial: NXDOMAIN, or NOERROR without answers;
error: anything else; all), else it is not logged (later rules are not tried, as in
CoreDNS). Queries under no rule pass through untouched.

A line is written once the server has encoded the reply, because its size ({rsize}),
flags ({>rflags}) and rcode ({rcode}) are those of the bytes sent: the plugin appends a
callback to `Request.after`, which the server calls with the bytes it sends. A response
that will be logged is marked not `cacheable`, so the fast path (which answers without
the chain) cannot skip its line; responses a rule filters out keep their flag, since a
fast-path copy of them would not be logged either.

Placeholders (CoreDNS's replacer): {type} {name} (lower-cased) {class} {proto} {size}
(query bytes) {remote} (IPv6 in brackets) {port} {>id} {>opcode} {>do} {>bufsize}
(65535 over TCP, else the EDNS size, at least 512) {rcode} {rsize} {>rflags} {duration}
(since the query reached this plugin: "0.000123s"); {local} and metadata labels {/...}
print "-". An unknown {label} is kept as written. `{common}` and `{combined}` (common plus
the opcode) expand to the formats.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from kdns.config.model import COMMON_LOG_FORMAT, LogClass, LogConfig, LogRule
from kdns.dns.message import (
    LayoutError,
    class_name,
    header_flags,
    parse_layout,
    rcode_text,
    type_name,
)
from kdns.dns.records import Question, Rcode
from kdns.serve.chain import Plugin, Request, Response, Result, then

log = logging.getLogger("kdns.query")

COMBINED_LOG_FORMAT = COMMON_LOG_FORMAT + ' "{>opcode}"'
EMPTY = "-"  # CoreDNS's value of a placeholder it cannot fill


def classify(response: Response) -> LogClass:
    """The class of a response for `log { class ... }`."""
    rcode = response.rcode
    if rcode == Rcode.NOERROR:
        return LogClass.SUCCESS if response.answered else LogClass.DENIAL
    if rcode == Rcode.NXDOMAIN:
        return LogClass.DENIAL
    return LogClass.ERROR


def seconds_text(seconds: float) -> str:
    """Seconds in plain decimal notation with the fewest digits that round-trip, as Go's
    `strconv.FormatFloat(s, 'f', -1, 64)` prints them, and an "s": "0.000123s"."""
    text = format(Decimal(repr(seconds)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "s"


@dataclass(frozen=True, slots=True)
class _Entry:
    """What a log line is made from: the query as it reached the plugin, and the reply."""

    request: Request
    question: Question
    reply: bytes
    duration: float


def _address(entry: _Entry) -> str:
    client = entry.request.client
    if client is None:
        return EMPTY
    host = client[0]
    return f"[{host}]" if ":" in host else host  # RFC 3986 §3.2.2


def _port(entry: _Entry) -> str:
    client = entry.request.client
    return EMPTY if client is None else str(client[1])


def _bufsize(entry: _Entry) -> str:
    request = entry.request
    if request.tcp:
        return "65535"
    edns = request.query.edns
    return str(max(512, edns.payload) if edns is not None else 512)


def _rcode(entry: _Entry) -> str:
    reply = entry.reply
    if len(reply) < 12:
        return EMPTY
    try:
        return rcode_text(parse_layout(reply).extended_rcode(reply))
    except LayoutError:
        return rcode_text(reply[3] & 0x0F)


_LABELS: dict[str, Callable[[_Entry], str]] = {
    "{type}": lambda e: type_name(e.question.qtype),
    "{name}": lambda e: e.question.lname,
    "{class}": lambda e: class_name(e.request.query.qclass),
    "{proto}": lambda e: "tcp" if e.request.tcp else "udp",
    "{size}": lambda e: str(len(e.request.data)),
    "{remote}": _address,
    "{port}": _port,
    "{local}": lambda e: EMPTY,  # the transport does not tell the local address
    "{>id}": lambda e: str(e.request.query.id),
    "{>opcode}": lambda e: str(e.request.query.opcode),
    "{>do}": lambda e: "true" if e.request.do else "false",
    "{>bufsize}": _bufsize,
    "{rcode}": _rcode,
    "{rsize}": lambda e: str(len(e.reply)),
    "{>rflags}": lambda e: header_flags(e.reply) if len(e.reply) >= 12 else EMPTY,
    "{duration}": lambda e: seconds_text(e.duration),
}

_Part = str | Callable[[_Entry], str]


def parse_format(text: str) -> tuple[_Part, ...]:
    """Split a format into literals and placeholders, as CoreDNS's replacer does: each
    "}" closes the nearest "{" before it; an unknown {label} stays literal text."""
    text = text.replace("{common}", COMMON_LOG_FORMAT).replace("{combined}", COMBINED_LOG_FORMAT)
    parts: list[_Part] = []
    literal = ""
    while (close := text.find("}")) >= 0:
        open_ = text.rfind("{", 0, close)
        label = text[open_ : close + 1] if open_ >= 0 else ""
        if label in _LABELS or label.startswith("{/"):
            if literal or open_:
                parts.append(literal + text[:open_])
                literal = ""
            parts.append(_LABELS.get(label) or (lambda e: EMPTY))
        else:
            literal += text[: close + 1]
        text = text[close + 1 :]
    if literal or text:
        parts.append(literal + text)
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class _Rule:
    names: tuple[str, ...]
    classes: frozenset[LogClass]
    parts: tuple[_Part, ...]

    def holds(self, lname: str) -> bool:
        return any(
            zone == "." or lname == zone or lname.endswith("." + zone) for zone in self.names
        )

    def logs(self, response: Response) -> bool:
        return LogClass.ALL in self.classes or classify(response) in self.classes

    def render(self, entry: _Entry) -> str:
        return "".join(part if isinstance(part, str) else part(entry) for part in self.parts)


def _rule(rule: LogRule) -> _Rule:
    names = tuple(n.lower().rstrip(".") + "." if n != "." else "." for n in rule.names)
    return _Rule(names, rule.classes, parse_format(rule.format))


class LogPlugin(Plugin):
    """CoreDNS's `log` (see the module docstring)."""

    name = "log"

    def __init__(
        self,
        config: LogConfig,
        *,
        clock: Callable[[], float] = time.perf_counter,
        logger: logging.Logger = log,
    ) -> None:
        super().__init__()
        self._rules = tuple(_rule(rule) for rule in config.rules)
        self._clock = clock
        self._log = logger

    def serve(self, request: Request) -> Result:
        lname = request.lname
        for rule in self._rules:
            if rule.holds(lname):
                break
        else:
            return self.next.serve(request)
        started = self._clock()
        question = request.question  # as asked, before any plugin rewrites it
        result = self.next.serve(request)
        return then(result, functools.partial(self._mark, request, rule, question, started))

    def _mark(
        self, request: Request, rule: _Rule, question: Question, started: float, response: Response
    ) -> Response:
        if not rule.logs(response):
            return response
        write = functools.partial(self._write, request, rule, question, started)
        if request.after is None:
            request.after = [write]
        else:
            request.after.append(write)
        # A copy: the response may be an object a plugin further down keeps (cache).
        return replace(response, cacheable=False) if response.cacheable else response

    def _write(
        self, request: Request, rule: _Rule, question: Question, started: float, reply: bytes
    ) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        entry = _Entry(request, question, reply, self._clock() - started)
        self._log.info("%s", rule.render(entry))


__all__ = ["COMBINED_LOG_FORMAT", "LogPlugin", "classify", "parse_format", "seconds_text"]
