"""`rewrite`: the question (name, type) and EDNS options changed before the rest of the
chain sees the query, and the reply mapped back so the client sees what it asked
(CoreDNS `rewrite`).

Rules run in the order written, each on the question as the rules before it left it
(names compared lower-case). A rule that applies and is `stop` (the default) ends the
list; `continue` goes on. Rules that apply collect response rules, run on the reply in
the reverse order, on every record of every section (not the OPT):

* `name`: the question name; `exact` maps the reply's owner names and record values that
  are the new name (or below it) back to the asked one, as do the other kinds with
  `answer auto` (`suffix` maps the suffix back); `answer name|value FROM TO` rewrite owner
  names / record values matching regex FROM into TO ({N} groups). A name that is not a
  valid DNS name after a rule is SERVFAIL (with the reason, for `errors`).
* `type`: the question type. `ttl`: TTLs clamped into MIN..MAX. `rcode`: FROM becomes TO.
* `edns0`: an option of the query's OPT set, appended (when missing), replaced (when
  present) or removed, for the plugins that relay the query (`forward`); a query without
  an OPT gets one (payload 4096, as CoreDNS). `revert` undoes it in the reply's OPT.

The rest of the chain gets a new `Request` whose question, `data` and `query` agree (the
same ID, flags and OPT, another question), so a relaying plugin sends the rewritten query.
The client's request is left as it came: the server encodes structured replies for the
client's question, and a relayed reply is taken apart and written again with the
client's question (`kdns.dns.wire.parse_message`/`build_message`). A reply keeps its
`cacheable`: it depends on the client's question only (the rules are fixed per chain),
except when an edns0 rule put the client's address or port in the query.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from kdns.config.goregex import compile_go
from kdns.config.model import (
    NameMatch,
    RewriteConfig,
    RewriteEdns0,
    RewriteMatch,
    RewriteName,
    RewriteRcode,
    RewriteRule,
    RewriteTtl,
    RewriteType,
)
from kdns.dns import wire
from kdns.dns.records import CNAME, MX, NS, PTR, SOA, SRV, Rcode, Record, Reply, RType
from kdns.serve.chain import Plugin, Request, Response, Result, then

NSID = 3
SUBNET = 8

Rewriter = Callable[[str], str]


# ---- matching and rewriting names -------------------------------------------------------


def _matcher(match: NameMatch) -> Callable[[str], bool]:
    pattern = match.pattern
    if match.kind == RewriteMatch.EXACT:
        return lambda name: name == pattern
    if match.kind == RewriteMatch.PREFIX:
        return lambda name: name.startswith(pattern)
    if match.kind == RewriteMatch.SUFFIX:
        return lambda name: name.endswith(pattern)
    if match.kind == RewriteMatch.SUBSTRING:
        return lambda name: pattern in name
    regex = compile_go(pattern)
    return lambda name: regex.search(name) is not None


def _fill(template: str, found: re.Match[str]) -> str:
    """`{N}` in `template` replaced by group N (group 0: the whole match), as CoreDNS."""
    out = template
    for index, value in enumerate((found.group(0), *found.groups())):
        out = out.replace("{" + str(index) + "}", value or "")
    return out


def _regex_rewriter(pattern: str, template: str) -> Rewriter:
    regex = compile_go(pattern)

    def rewrite(src: str) -> str:
        found = regex.search(src)
        return src if found is None else _fill(template, found)

    return rewrite


def _remap(orig: str, replacement: str) -> Rewriter:
    """`orig` itself, or a name below it, gets `replacement` in its place."""

    def rewrite(src: str) -> str:
        low = src.lower()
        if low == orig:
            return replacement
        if low.endswith("." + orig):
            return src[: len(src) - len(orig)] + replacement
        return src

    return rewrite


def _suffix(suffix: str, replacement: str) -> Rewriter:
    def rewrite(src: str) -> str:
        if src.lower().endswith(suffix):
            return src[: len(src) - len(suffix)] + replacement
        return src

    return rewrite


# ---- response rules ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Names:
    rewrite: Rewriter


@dataclass(frozen=True, slots=True)
class _Values:
    rewrite: Rewriter


@dataclass(frozen=True, slots=True)
class _Ttl:
    low: int
    high: int

    def clamp(self, ttl: int) -> int:
        return self.low if ttl < self.low else self.high if ttl > self.high else ttl


@dataclass(frozen=True, slots=True)
class _Rcode:
    old: int
    new: int


@dataclass(frozen=True, slots=True)
class _OptDrop:
    """`revert` of an option the rule added: removed from the reply's OPT."""

    code: int


@dataclass(frozen=True, slots=True)
class _OptRestore:
    """`revert` of an option the rule changed: the client's value put back."""

    code: int
    data: bytes


ResponseRule = _Names | _Values | _Ttl | _Rcode | _OptDrop | _OptRestore


# ---- request rules ----------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    """The question as the rules leave it."""

    request: Request
    name: str  # lower-case, absolute
    spelled: str  # the name as it will be sent (the client's spelling until renamed)
    qtype: int
    options: list[tuple[int, bytes]] | None = None  # None: the OPT is untouched
    per_client: bool = False  # an option carries the client's address or port
    error: str | None = None
    responses: list[ResponseRule] = field(default_factory=list)

    def edns_options(self) -> list[tuple[int, bytes]]:
        if self.options is None:
            request = self.request
            self.options = wire.query_options(request.data, request.query)
        return self.options


class _Rule:
    stop: bool

    def apply(self, state: _State) -> bool:
        """Change the state if the rule applies; True when it did."""
        raise NotImplementedError


class _NameRule(_Rule):
    def __init__(self, rule: RewriteRule, action: RewriteName) -> None:
        self.stop = rule.stop
        self.kind = action.match.kind
        self.pattern = action.match.pattern
        self.replacement = action.replacement
        self.regex = compile_go(self.pattern) if self.kind == RewriteMatch.REGEX else None
        self.auto = action.auto and self.kind != RewriteMatch.SUFFIX
        static: list[ResponseRule] = []
        if action.auto and self.kind == RewriteMatch.SUFFIX:
            back = _suffix(self.replacement, self.pattern)
            static += [_Names(back), _Values(back)]
        for answer in action.answers:
            rewriter = _regex_rewriter(answer.pattern, answer.replacement)
            static.append(_Names(rewriter) if answer.target == "name" else _Values(rewriter))
        self.static = static

    def _rewrite(self, name: str) -> str | None:
        kind, pattern, replacement = self.kind, self.pattern, self.replacement
        if kind == RewriteMatch.EXACT:
            return replacement if name == pattern else None
        if kind == RewriteMatch.PREFIX:
            return replacement + name[len(pattern) :] if name.startswith(pattern) else None
        if kind == RewriteMatch.SUFFIX:
            return (
                name[: len(name) - len(pattern)] + replacement if name.endswith(pattern) else None
            )
        if kind == RewriteMatch.SUBSTRING:
            return name.replace(pattern, replacement) if pattern in name else None
        assert self.regex is not None
        found = self.regex.search(name)
        return None if found is None else _fill(replacement, found)

    def apply(self, state: _State) -> bool:
        new = self._rewrite(state.name)
        if new is None:
            return False
        try:
            wire.name_to_wire(new)
        except ValueError as exc:
            state.error = f"invalid name after rewrite: {new} ({exc})"
            return True
        if self.auto:
            back = _remap(new, state.name)
            state.responses += [_Names(back), _Values(back)]
        state.responses += self.static
        state.name = state.spelled = new.lower()
        return True


class _TypeRule(_Rule):
    def __init__(self, rule: RewriteRule, action: RewriteType) -> None:
        self.stop = rule.stop
        self.action = action

    def apply(self, state: _State) -> bool:
        if state.qtype != self.action.from_type:
            return False
        state.qtype = self.action.to_type
        return True


class _ResponseRule(_Rule):
    """`ttl` and `rcode`: a response rule when the name matches."""

    def __init__(self, rule: RewriteRule, match: NameMatch, response: ResponseRule) -> None:
        self.stop = rule.stop
        self.matches = _matcher(match)
        self.response = response

    def apply(self, state: _State) -> bool:
        if not self.matches(state.name):
            return False
        state.responses.append(self.response)
        return True


class _Edns0Rule(_Rule):
    def __init__(self, rule: RewriteRule, action: RewriteEdns0) -> None:
        self.stop = rule.stop
        self.action = action

    def _data(self, state: _State) -> bytes | None:
        action = self.action
        request = state.request
        if action.kind == "nsid":
            return b""
        if action.kind == "subnet":
            if request.client is None:
                return None
            state.per_client = True
            return subnet_option(request.client[0], action.v4_bits, action.v6_bits)
        variable = action.variable
        if variable is None:
            return action.data
        if variable == "{qname}":
            return state.spelled.encode("latin-1", "backslashreplace")
        if variable == "{qtype}":
            return state.qtype.to_bytes(2, "big")
        if variable == "{protocol}":
            return b"tcp" if request.tcp else b"udp"
        if request.client is None:
            return None
        state.per_client = True
        if variable == "{client_port}":
            return request.client[1].to_bytes(2, "big")
        return ipaddress.ip_address(request.client[0]).packed  # {client_ip}

    def apply(self, state: _State) -> bool:
        action = self.action
        options = state.edns_options()  # even `unset` gives the query an OPT (CoreDNS)
        at = next((i for i, (code, _) in enumerate(options) if code == action.code), None)
        if action.action == "unset":
            if at is not None:
                del options[at]
            return True
        if at is not None and action.action == "append":
            return False  # append adds an option only when there is none
        if at is None and action.action == "replace":
            return False
        data = self._data(state)
        if data is None:
            return False
        if at is not None:
            if action.revert:
                state.responses.append(_OptRestore(action.code, options[at][1]))
            options[at] = (action.code, data)
        else:
            if action.revert:
                state.responses.append(_OptDrop(action.code))
            options.append((action.code, data))
        return True


def _compile(rule: RewriteRule) -> _Rule:
    action = rule.action
    if isinstance(action, RewriteName):
        return _NameRule(rule, action)
    if isinstance(action, RewriteType):
        return _TypeRule(rule, action)
    if isinstance(action, RewriteTtl):
        return _ResponseRule(rule, action.match, _Ttl(action.minimum, action.maximum))
    if isinstance(action, RewriteRcode):
        return _ResponseRule(rule, action.match, _Rcode(action.from_rcode, action.to_rcode))
    return _Edns0Rule(rule, action)


def subnet_option(client_ip: str, v4_bits: int, v6_bits: int) -> bytes:
    """ECS option data (RFC 7871 §6) for the client's address: family, source prefix
    length, scope 0, the address cut to its prefix, as CoreDNS fills it."""
    address = ipaddress.ip_address(client_ip)
    family, bits = (1, v4_bits) if address.version == 4 else (2, v6_bits)
    network = ipaddress.ip_network(f"{address}/{bits}", strict=False)
    return bytes((0, family, bits, 0)) + network.network_address.packed[: (bits + 7) // 8]


# ---- the plugin -------------------------------------------------------------------------


class RewritePlugin(Plugin):
    name = "rewrite"

    def __init__(self, config: RewriteConfig) -> None:
        super().__init__()
        self.config = config
        self.rules = [_compile(rule) for rule in config.rules]

    def serve(self, request: Request) -> Result:
        question = request.question
        state = _State(request, question.lname, question.qname, question.qtype)
        applied = False
        for rule in self.rules:
            if not rule.apply(state):
                continue
            applied = True
            if state.error is not None:
                reply = Reply(rcode=Rcode.SERVFAIL, authoritative=False)
                return Response(reply, plugin=self.name, error=f"rewrite: {state.error}")
            if rule.stop:
                break
        if not applied:
            return self.next.serve(request)
        sub = self._request(request, state)
        if sub is request and not state.responses:
            return self.next.serve(request)
        return then(self.next.serve(sub), lambda got: self._back(request, sub, state, got))

    def _request(self, request: Request, state: _State) -> Request:
        """The request the rest of the chain sees: `request` itself when nothing in the
        query changed, else a copy with the rewritten query."""
        question = request.question
        renamed = state.name != question.lname
        if not renamed and state.qtype == question.qtype and state.options is None:
            return request
        data, query = request.data, request.query
        if state.options is not None:
            data, query = wire.with_options(data, query, state.options)
        if renamed or state.qtype != question.qtype:
            data, query = wire.requery(data, query, state.spelled, state.qtype)
        sub = Request(
            data=data,
            query=query,
            tcp=request.tcp,
            family=request.family,
            max_size=request.max_size,
            zone=request.zone,
            server=request.server,
            client=request.client,
        )
        sub.payload = request.payload
        sub.after = request.after
        return sub

    def _back(self, request: Request, sub: Request, state: _State, got: Response) -> Response:
        if sub.after is not request.after:
            request.after = sub.after
        rules = state.responses[::-1]  # response rules run last-first (CoreDNS)
        cacheable = got.cacheable and not state.per_client
        if got.reply is not None:
            reply = _revert_reply(got.reply, rules) if rules else got.reply
            return replace(got, reply=reply, cacheable=cacheable)
        assert got.wire is not None
        try:
            out = _revert_wire(got.wire, rules, request)
        except (wire.FormatError, ValueError) as exc:
            failed = Reply(rcode=Rcode.SERVFAIL, authoritative=False)
            return Response(failed, plugin=got.plugin, error=f"rewrite: unusable reply: {exc}")
        return replace(got, wire=out, cacheable=cacheable)


def _revert_reply(reply: Reply, rules: Sequence[ResponseRule]) -> Reply:
    def record(rec: Record) -> Record:
        for rule in rules:
            if isinstance(rule, _Names):
                rec = replace(rec, name=rule.rewrite(rec.name))
            elif isinstance(rule, _Values):
                rec = _with_value(rec, rule.rewrite)
            elif isinstance(rule, _Ttl):
                rec = replace(rec, ttl=rule.clamp(rec.ttl))
        return rec

    rcode = int(reply.rcode)
    for rule in rules:
        if isinstance(rule, _Rcode) and rcode == rule.old:
            rcode = rule.new
    return replace(
        reply,
        rcode=Rcode(rcode),
        answer=tuple(map(record, reply.answer)),
        authority=tuple(map(record, reply.authority)),
        additional=tuple(map(record, reply.additional)),
    )


def _with_value(rec: Record, rewrite: Rewriter) -> Record:
    """The record with the name it points to rewritten (CoreDNS's record value)."""
    rdata = rec.rdata
    if isinstance(rdata, CNAME | NS | PTR | SRV):
        return replace(rec, rdata=replace(rdata, target=rewrite(rdata.target)))
    if isinstance(rdata, MX):
        return replace(rec, rdata=replace(rdata, exchange=rewrite(rdata.exchange)))
    if isinstance(rdata, SOA):
        return replace(rec, rdata=replace(rdata, mname=rewrite(rdata.mname)))
    return rec


def _revert_wire(reply: bytes, rules: Sequence[ResponseRule], request: Request) -> bytes:
    """A relayed reply with the response rules applied and the client's question."""
    message = wire.parse_message(reply)
    for rec in message.records():
        for rule in rules:
            if isinstance(rule, _Names):
                rec.name = rule.rewrite(rec.name)
            elif isinstance(rule, _Values):
                value = rec.value
                if value is not None:
                    rec.value = rule.rewrite(value)
            elif isinstance(rule, _Ttl):
                rec.ttl = rule.clamp(rec.ttl)
    for rule in rules:
        if isinstance(rule, _Rcode) and message.rcode == rule.old:
            message.rcode = rule.new
    opt = message.opt
    if opt is not None:
        if request.query.edns is None:
            # The client sent no OPT (a rule added one): none in its reply (RFC 6891 §7).
            message.additional = [r for r in message.additional if r.rtype != RType.OPT]
        elif any(isinstance(r, _OptDrop | _OptRestore) for r in rules):
            raw = opt.rdata[0] if opt.rdata else b""
            options = wire.split_options(raw if isinstance(raw, bytes) else b"")
            for rule in rules:
                if isinstance(rule, _OptDrop | _OptRestore):
                    _revert_option(options, rule)
            opt.rdata = [wire.join_options(options)]
    message.id = request.query.id
    return wire.build_message(message, request.query.question_wire)


def _revert_option(options: list[tuple[int, bytes]], rule: _OptDrop | _OptRestore) -> None:
    at = next((i for i, (code, _) in enumerate(options) if code == rule.code), None)
    if at is None:
        return
    if isinstance(rule, _OptDrop):
        del options[at]
    else:
        options[at] = (rule.code, rule.data)
