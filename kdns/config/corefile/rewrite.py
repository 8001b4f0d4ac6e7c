"""`rewrite [continue|stop] FIELD ...` (CoreDNS's README, setup.go and the rule files).

Each `rewrite` line is one rule; `stop` (the default) ends the rules when it applies,
`continue` goes on to the next. A line whose arguments are fewer than two takes the words
of its `{ }` block as further arguments, as CoreDNS does (`rewrite stop { name regex A B
answer name C D }`).

Fields kdns implements, with CoreDNS's argument forms and normalization:

* `name [exact|prefix|suffix|substring|regex] FROM TO [answer auto | answer name FROM TO |
  answer value FROM TO]...`: names (not regexes) are lower-cased and given a trailing dot;
  `exact` rewrites the reply's names back by itself.
* `type FROM TO`, `ttl [MATCH] NAME SECONDS|MIN-MAX`, `rcode [MATCH] NAME FROM TO`.
* `edns0 local|nsid|subnet set|append|replace|unset ... [revert]`.

Refused, with the reason: `class` (kdns answers class IN only: other classes are REFUSED
before any plugin runs, and its plugins answer nothing else), `cname` (not implemented
yet), an rcode TO that kdns cannot answer with, EDNS0 variables that need what kdns does
not have ({server_ip}, {server_port}, metadata labels).

No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from kdns.config.corefile.common import BlockView
from kdns.config.corefile.parser import Line
from kdns.config.corefile.values import normalize_zone
from kdns.config.goregex import compile_go
from kdns.config.model import (
    AnswerRule,
    NameMatch,
    RewriteAction,
    RewriteConfig,
    RewriteEdns0,
    RewriteMatch,
    RewriteName,
    RewriteRcode,
    RewriteRule,
    RewriteTtl,
    RewriteType,
)
from kdns.config.rrtypes import ANSWERABLE_RCODES, RCODES, TYPES

_MATCHES = {m.value: m for m in RewriteMatch}
_NEVER_ASKED = ("AXFR", "IXFR", "OPT")
_GROUP_REF = re.compile(r"\{(\d+)\}")
_MAX_TTL = 2147483647
_EDNS0_ACTIONS = ("set", "append", "replace", "unset")
# {server_ip}/{server_port} need the local address of each query, which kdns's listeners
# do not keep; metadata labels need a metadata plugin.
EDNS0_VARIABLES = ("{qname}", "{qtype}", "{client_ip}", "{client_port}", "{protocol}")


class RuleError(ValueError):
    """A rule kdns cannot take; the message says why."""


def read_rewrite(lines: Sequence[Line], block: BlockView) -> RewriteConfig | None:
    rules: list[RewriteRule] = []
    ok = True
    for line in lines:
        args = list(line.args)
        if line.block is not None:
            if len(args) >= 2:
                block.add(
                    line.origin,
                    "rewrite: a rule written on the rewrite line takes no { } block (CoreDNS "
                    "reads a block only after `rewrite`, `rewrite stop` or `rewrite continue`)",
                )
                ok = False
                continue
            for option in line.block:
                if option.block is not None:
                    block.add(option.origin, "rewrite: a rule's words take no { } block")
                    ok = False
                args.extend((option.name, *option.args))
        try:
            action, stop = _rule(args)
        except RuleError as exc:
            block.add(line.origin, f"rewrite: {exc}")
            ok = False
            continue
        rules.append(RewriteRule(action=action, stop=stop, origin=line.origin))
    if not ok:
        return None
    return RewriteConfig(rules=tuple(rules), origin=lines[0].origin)


def _rule(args: list[str]) -> tuple[RewriteAction, bool]:
    if not args:
        raise RuleError("no rule: write e.g. `rewrite name example.org example.net`")
    first = args[0].lower()
    stop = first != "continue"
    if first in ("continue", "stop"):
        if len(args) < 2:
            raise RuleError(f"a {first} rule must begin with a rule type (name, type, ttl, ...)")
        field, rest = args[1].lower(), args[2:]
    else:
        field, rest = first, args[1:]
    if field == "answer":
        raise RuleError("response rewrites must begin with a name rule")
    if field == "name":
        return _name(rest), stop
    if field == "type":
        return _type(rest), stop
    if field == "ttl":
        return _ttl(rest), stop
    if field == "rcode":
        return _rcode(rest), stop
    if field == "edns0":
        return _edns0(rest), stop
    if field == "class":
        raise RuleError(
            "class rules are not supported: kdns answers class IN only (queries of other "
            "classes are REFUSED before any plugin runs, and its plugins serve nothing else)"
        )
    if field == "cname":
        raise RuleError("cname rules are not implemented in kdns yet")
    raise RuleError(
        f"invalid rule type {args[0]!r}; kdns takes name, type, ttl, rcode and edns0 rules"
    )


def _norm(text: str) -> str:
    """CoreDNS's plugin.Name(...).Normalize(): lower-case, with a trailing dot."""
    lower = text.lower()
    return lower if lower.endswith(".") else lower + "."


def _regex(pattern: str, replacement: str, what: str) -> None:
    try:
        compiled = compile_go(pattern)
    except ValueError as exc:
        raise RuleError(f"{what}: {exc}") from None
    used = {int(n) for n in _GROUP_REF.findall(replacement) if int(n) <= 100}
    if len(used) > compiled.groups:
        raise RuleError(
            f"{what}: the rewrite pattern {replacement!r} uses more groups than "
            f"{pattern!r} has ({compiled.groups})"
        )


def _name(rest: list[str]) -> RewriteName:
    if len(rest) < 2:
        raise RuleError("too few arguments for a name rule: write `name [MATCH] FROM TO`")
    if len(rest) == 2:
        kind, source, target = RewriteMatch.EXACT, _norm(rest[0]), _norm(rest[1])
    else:
        if rest[0].lower() not in _MATCHES:
            raise RuleError(
                "name rule supports only exact, prefix, suffix, substring, and regex name "
                f"matching, received: {rest[0]}"
            )
        kind = _MATCHES[rest[0].lower()]
        if kind == RewriteMatch.REGEX:
            source, target = rest[1], rest[2]
            _regex(source, target, "name regex")
            target = _norm(target)
        else:
            source, target = _norm(rest[1]), _norm(rest[2])
    if kind == RewriteMatch.EXACT:
        for name in (source, target):
            try:
                normalize_zone(name)
            except ValueError as exc:
                raise RuleError(f"name exact: {exc.args[0].replace('zone name', 'name')}") from None
    auto, answers = _answers(kind.value, rest[3:]) if len(rest) > 3 else (False, ())
    return RewriteName(
        match=NameMatch(kind, source),
        replacement=target,
        auto=auto or kind == RewriteMatch.EXACT,
        answers=answers,
    )


def _answers(kind: str, args: list[str]) -> tuple[bool, tuple[AnswerRule, ...]]:
    """CoreDNS's parseAnswerRules: `answer (auto | name FROM TO | value FROM TO)`, the
    keyword `answer` optional after the first."""
    if len(args) < 2:
        raise RuleError(f"invalid arguments for {kind} rule: write e.g. `answer auto`")
    auto = False
    rules: list[AnswerRule] = []
    names = 0
    last = ""
    i = 0
    while i < len(args):
        if not last and args[i] != "answer":
            raise RuleError(
                f"exceeded the number of arguments for a non-answer rule argument for {kind} rule"
            )
        if args[i] == "answer":
            i += 1
        if i >= len(args):
            raise RuleError(f"type missing for answer rule for {kind} rule")
        last = args[i]
        i += 1
        if last == "auto":
            auto = True
            continue
        if last not in ("name", "value"):
            raise RuleError(f"invalid type {last!r} for answer rule for {kind} rule")
        if len(args) - i < 2:
            raise RuleError(f"{last} answer rule for {kind} rule: 2 arguments required")
        pattern, replacement = args[i], args[i + 1]
        _regex(pattern, replacement, f"{last} answer rule for {kind} rule")
        rules.append(AnswerRule(last, pattern, _norm(replacement)))
        names += last == "name"
        i += 2
    if auto and names:
        raise RuleError("auto name answer rule cannot be combined with explicit name answer rules")
    return auto, tuple(rules)


def _type(rest: list[str]) -> RewriteType:
    if len(rest) != 2:
        raise RuleError("type rules must have exactly two arguments: `type FROM TO`")
    codes = []
    for text in rest:
        upper = text.upper()
        if upper not in TYPES:
            raise RuleError(f"invalid type {upper!r}")
        if upper in _NEVER_ASKED:
            raise RuleError(f"type {upper} never reaches a plugin in kdns; use another type")
        codes.append(TYPES[upper])
    return RewriteType(codes[0], codes[1])


def _match(kind_text: str, pattern: str, what: str) -> NameMatch:
    kind = _MATCHES.get(kind_text.lower())
    if kind is None:
        raise RuleError(
            f"{what} rule supports only exact, prefix, suffix, substring, and regex name matching"
        )
    if kind == RewriteMatch.REGEX:
        _regex(pattern, "", f"{what} regex")
        return NameMatch(kind, pattern)
    return NameMatch(kind, _norm(pattern))


def _ttl(rest: list[str]) -> RewriteTtl:
    if len(rest) < 2:
        raise RuleError(f"too few ({len(rest)}) arguments for a ttl rule")
    value = rest[1] if len(rest) == 2 else rest[2] if len(rest) == 3 else ""
    bounds = _ttl_range(value)
    if bounds is None:
        raise RuleError(f"invalid TTL {value!r} for a ttl rule: write SECONDS or MIN-MAX")
    if len(rest) == 3:
        match = _match(rest[0], rest[1], "ttl")
    else:
        match = NameMatch(RewriteMatch.EXACT, _norm(rest[0]))
    return RewriteTtl(match, *bounds)


def _ttl_range(text: str) -> tuple[int, int] | None:
    """CoreDNS's isValidTTL: `30`, `30-300`, `-30` (0-30), `30-` (30 and up)."""

    def number(part: str) -> int | None:
        return int(part) if part.isdigit() and int(part) <= 0xFFFFFFFF else None

    parts = text.split("-")
    if len(parts) == 1:
        single = number(parts[0])
        return None if single is None else (single, single)
    if len(parts) != 2 or parts == ["", ""]:
        return None
    low = number(parts[0]) if parts[0] else 0
    high = number(parts[1]) if parts[1] else _MAX_TTL
    if low is None or high is None or low > high:
        return None
    return low, high


def _rcode_value(text: str, what: str) -> int:
    if text.isdigit() and int(text) <= 23:
        return int(text)
    if text.upper() in RCODES:
        return RCODES[text.upper()]
    raise RuleError(f"invalid {what} RCODE {text!r} for a rcode rule")


def _rcode(rest: list[str]) -> RewriteRcode:
    if len(rest) < 3:
        raise RuleError(f"too few ({len(rest)}) arguments for a rcode rule")
    if len(rest) > 4:
        raise RuleError("too many arguments for a rcode rule: `rcode [MATCH] NAME FROM TO`")
    old_text, new_text = rest[-2], rest[-1]
    old = _rcode_value(old_text, "matching")
    new = _rcode_value(new_text, "replacement")
    names = {RCODES[n]: n for n in ANSWERABLE_RCODES}
    if new not in names:
        raise RuleError(
            f"replacement RCODE {new_text} is not one kdns answers with; it takes "
            f"{', '.join(ANSWERABLE_RCODES)}"
        )
    match = (
        _match(rest[0], rest[1], "rcode")
        if len(rest) == 4
        else NameMatch(RewriteMatch.EXACT, _norm(rest[0]))
    )
    return RewriteRcode(match, old, new)


# ---- edns0 -----------------------------------------------------------------------------


def _code(text: str) -> int:
    """Go's strconv.ParseUint(text, 0, 16): decimal, 0x hex, 0o/0 octal, 0b binary."""
    try:
        octal = text[:1] == "0" and text[1:2].isdigit()
        value = int(text[1:], 8) if octal else int(text, 0)
    except ValueError:
        raise RuleError(f"edns0: {text!r} is not an option code (e.g. 0xffee)") from None
    if not 0 <= value <= 0xFFFF or text.startswith(("+", "-")):
        raise RuleError(f"edns0: option code {text} is not 0 to 65535")
    return value


def _edns0(rest: list[str]) -> RewriteEdns0:
    if len(rest) < 2:
        raise RuleError("too few arguments for an EDNS0 rule")
    kind, action = rest[0].lower(), rest[1].lower()
    if action not in _EDNS0_ACTIONS:
        raise RuleError(f"invalid action: {action!r}; write set, append, replace or unset")
    if action == "unset":
        wanted = {"local": 3, "nsid": 2, "subnet": 2}.get(kind)
        if wanted is None:
            raise RuleError(f"invalid rule type {kind!r}; edns0 takes local, nsid and subnet")
        if len(rest) != wanted:
            what = "exactly two arguments (unset CODE)" if kind == "local" else "one argument"
            raise RuleError(f"{kind} unset action requires {what}")
        code = {"nsid": 3, "subnet": 8}.get(kind) or _code(rest[2])
        return RewriteEdns0(kind=kind, action=action, code=code)
    revert = rest[-1] == "revert"
    if revert:
        rest = rest[:-1]
    if kind == "local":
        if len(rest) != 4:
            raise RuleError("EDNS0 local rules require three or four args")
        code, data = _code(rest[2]), rest[3]
        if data.startswith("{") and data.endswith("}"):
            if data not in EDNS0_VARIABLES:
                raise RuleError(
                    f"edns0 local: variable {data} is not supported by kdns; it takes "
                    f"{', '.join(EDNS0_VARIABLES)}"
                )
            return RewriteEdns0(kind, action, code=code, variable=data, revert=revert)
        raw = data.encode()
        if data.startswith("0x"):
            try:
                raw = bytes.fromhex(data[2:])
            except ValueError:
                raise RuleError(f"edns0 local: {data!r} is not hex data") from None
        return RewriteEdns0(kind, action, code=code, data=raw, revert=revert)
    if kind == "nsid":
        if len(rest) != 2:
            raise RuleError("EDNS0 NSID rules do not accept args")
        return RewriteEdns0(kind, action, code=3, revert=revert)
    if kind == "subnet":
        if len(rest) != 4:
            raise RuleError("EDNS0 subnet rules require two args: IPv4 and IPv6 prefix lengths")
        bits = []
        for text, limit in ((rest[2], 32), (rest[3], 128)):
            value = _code(text)
            if value > limit:
                raise RuleError(f"invalid IPv{4 if limit == 32 else 6} bit mask length {value}")
            bits.append(value)
        return RewriteEdns0(kind, action, code=8, v4_bits=bits[0], v6_bits=bits[1], revert=revert)
    raise RuleError(f"invalid rule type {kind!r}; edns0 takes local, nsid and subnet")
