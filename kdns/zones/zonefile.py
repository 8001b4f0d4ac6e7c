"""Static zones: RFC 1035 master files that kdns serves authoritatively beside the cluster zone.

Owns the zone-file parser (`parse_zone`), the authoritative answer logic for one zone
(`answer_zone`, pure) and `ZoneSet`, which loads files or folders, finds the zone of a name
and reloads a file when it changes, keeping the last good version when an edit is broken
(as CoreDNS's `file` plugin does). Supported: $ORIGIN, $TTL, `@`, relative names,
parentheses, comments, quoted strings with escapes, omitted owner/TTL/class; types SOA,
NS, A, AAAA, CNAME, PTR, MX, TXT, SRV. Not supported, and rejected with file:line:
wildcards, delegations (NS below the apex), $INCLUDE/$GENERATE, classes other than IN.

Zone files never hide the cluster. `ZoneSet` takes the names kdns answers from the cluster
(`protected`: the cluster zone, and the service and pod networks whose reverse names it
answers) and refuses a file whose zone would take any of them over: a zone equal to the
cluster zone or below it (`cluster.local.`, `default.svc.cluster.local.`), or a reverse
zone overlapping a cluster network either way (`10.in-addr.arpa.` holds 10.96.0.0/16's
names; `1.96.10.in-addr.arpa.` lies inside them). Static zones win over the cluster zone
when they match a name more closely, so every such file would answer cluster names with its
own data or NXDOMAIN. All overlaps are refused, delegations below the cluster zone included:
the cluster's names come only from the cluster. A zone above the cluster zone
(`example.com.` beside `cluster.example.com.`) is allowed: the cluster zone matches cluster
names more closely, so the file's names under it are simply never served. At start an
overlap stops kdns with one line naming the file and what it would hide; on a reload the
file's last good zone stays (or, for a new file, none is served) and one line is logged.

`ZoneSet` also keeps the state of its reloads for monitoring: `last_success` (Unix time of
the last load after which every file was served as it is on disk), `failing` (the last
attempt to read some file failed, so an older version or none is served) and `failures`
(failed attempts so far).

No wire format and no dnslib here; the only I/O is reading and stat-ing the zone files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

from kdns.dns.records import (
    AAAA,
    CNAME,
    MX,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    Question,
    Rcode,
    Rdata,
    Record,
    Reply,
    RType,
)

logger = logging.getLogger(__name__)

# RFC 1034 §4.3.2 step 3a restarts the lookup at a CNAME's target; bound the chain so a
# long or looping chain cannot hold the answer logic.
MAX_CNAME_CHAIN = 8
_MAX_TTL = 2**31 - 1  # RFC 2181 §8
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CLASSES = {"IN", "CH", "HS", "CS"}
_SUPPORTED = {
    RType.A,
    RType.AAAA,
    RType.CNAME,
    RType.NS,
    RType.PTR,
    RType.MX,
    RType.TXT,
    RType.SRV,
    RType.SOA,
}
_ZONE_SUFFIXES = (".zone", ".db")


class ZoneError(ValueError):
    """A zone file that cannot be served; the message names file:line and what is wrong."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}" if line else f"{source}: {message}")
        self.source = source
        self.line = line
        self.reason = message


# --- tokenizer -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    text: str  # escapes kept for unquoted tokens; decoded bytes as latin-1 for quoted ones
    quoted: bool


@dataclass(frozen=True, slots=True)
class _Entry:
    line: int  # where the entry starts
    indented: bool  # RFC 1035 §5.1: a blank owner field means "the previous owner"
    tokens: tuple[_Token, ...]


def _decode_escapes(raw: str, *, source: str, line: int) -> bytes:
    """RFC 1035 §5.1: `\\X` is X itself, `\\DDD` the octet with that decimal value."""
    out = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        digits = raw[i + 1 : i + 4]
        if len(digits) == 3 and digits.isdigit():
            value = int(digits)
            if value > 255:
                raise ZoneError(source, line, f"escape \\{digits} is not an octet")
            out.append(value)
            i += 4
        elif i + 1 < len(raw):
            out += raw[i + 1].encode()
            i += 2
        else:
            raise ZoneError(source, line, "a backslash ends the string")
    return bytes(out)


def _tokenize(text: str, *, source: str) -> Iterator[_Entry]:
    """Split the file into entries: parentheses join lines, `;` starts a comment."""
    tokens: list[_Token] = []
    depth = 0
    start_line = 0
    indented = False
    for number, line in enumerate(text.splitlines(), start=1):
        if depth == 0:
            start_line = number
            indented = line[:1] in (" ", "\t")
            tokens = []
        i = 0
        n = len(line)
        while i < n:
            ch = line[i]
            if ch in " \t\r":
                i += 1
            elif ch == ";":
                break
            elif ch == "(":
                depth += 1
                i += 1
            elif ch == ")":
                if depth == 0:
                    raise ZoneError(source, number, "')' without '('")
                depth -= 1
                i += 1
            elif ch == '"':
                j = i + 1
                raw: list[str] = []
                while j < n and line[j] != '"':
                    if line[j] == "\\" and j + 1 < n:
                        raw.append(line[j : j + 2])
                        j += 2
                    else:
                        raw.append(line[j])
                        j += 1
                if j >= n:
                    raise ZoneError(source, number, "unterminated quoted string")
                data = _decode_escapes("".join(raw), source=source, line=number)
                tokens.append(_Token(data.decode("latin-1"), quoted=True))
                i = j + 1
            else:
                j = i
                while j < n and line[j] not in ' \t\r;()"':
                    j += 2 if line[j] == "\\" else 1
                tokens.append(_Token(line[i:j], quoted=False))
                i = j
        if depth == 0 and tokens:
            yield _Entry(start_line, indented, tuple(tokens))
    if depth:
        raise ZoneError(source, start_line, "'(' is never closed")


# --- fields --------------------------------------------------------------------------


def _absolute(text: str, origin: str | None, *, source: str, line: int) -> str:
    """A domain name from the file, lower-cased and absolute (RFC 1035 §5.1: `@`, relative)."""
    if text == "@":
        if origin is None:
            raise ZoneError(source, line, "'@' used before any $ORIGIN")
        return origin
    if "\\" in text:
        raise ZoneError(source, line, f"escaped names are not supported: {text!r}")
    if text.endswith("."):
        name = text.lower()
    elif origin is None:
        raise ZoneError(source, line, f"relative name {text!r} without $ORIGIN")
    else:
        name = f"{text.lower()}.{origin}" if origin != "." else f"{text.lower()}."
    if name == ".":
        return name
    labels = name[:-1].split(".")
    if len(name) > 254:  # RFC 1035 §2.3.4: 255 octets on the wire
        raise ZoneError(source, line, f"name {name!r} is longer than 255 octets")
    for label in labels:
        if not label:
            raise ZoneError(source, line, f"name {text!r} has an empty label")
        if len(label.encode()) > 63:
            raise ZoneError(source, line, f"label {label!r} is longer than 63 octets")
        if label == "*":
            raise ZoneError(source, line, f"wildcards are not supported: {text!r}")
    return name


def _parse_ttl(text: str, *, source: str, line: int) -> int:
    """A TTL in seconds; BIND's unit suffixes (1h30m, 2d, 1w) are accepted too."""
    lowered = text.lower()
    if lowered.isdigit():
        value = int(lowered)
    else:
        value = 0
        number = ""
        for ch in lowered:
            if ch.isdigit():
                number += ch
            elif ch in _TTL_UNITS and number:
                value += int(number) * _TTL_UNITS[ch]
                number = ""
            else:
                raise ZoneError(source, line, f"bad TTL {text!r}")
        if number:
            raise ZoneError(source, line, f"bad TTL {text!r}")
    if value > _MAX_TTL:
        raise ZoneError(source, line, f"TTL {text!r} is above 2^31-1 (RFC 2181 §8)")
    return value


def _is_ttl(text: str) -> bool:
    return bool(text) and text[0].isdigit()


def _parse_int(text: str, bits: int, what: str, *, source: str, line: int) -> int:
    if not text.isdigit() or int(text) >= 2**bits:
        raise ZoneError(source, line, f"bad {what} {text!r}: need 0..{2**bits - 1}")
    return int(text)


def _parse_rdata(
    rtype: RType, fields: Sequence[_Token], origin: str | None, *, source: str, line: int
) -> Rdata:
    def arity(n: int) -> list[str]:
        if len(fields) != n:
            plural = "" if n == 1 else "s"
            raise ZoneError(
                source, line, f"{rtype.name} needs {n} field{plural}, got {len(fields)}"
            )
        return [f.text for f in fields]

    def name(text: str) -> str:
        return _absolute(text, origin, source=source, line=line)

    def u16(text: str, what: str) -> int:
        return _parse_int(text, 16, what, source=source, line=line)

    if rtype == RType.A:
        (text,) = arity(1)
        try:
            return A(IPv4Address(text))
        except AddressValueError:
            raise ZoneError(source, line, f"bad IPv4 address {text!r}") from None
    if rtype == RType.AAAA:
        (text,) = arity(1)
        try:
            return AAAA(IPv6Address(text))
        except AddressValueError:
            raise ZoneError(source, line, f"bad IPv6 address {text!r}") from None
    if rtype == RType.CNAME:
        return CNAME(name(arity(1)[0]))
    if rtype == RType.NS:
        return NS(name(arity(1)[0]))
    if rtype == RType.PTR:
        return PTR(name(arity(1)[0]))
    if rtype == RType.MX:
        pref, exchange = arity(2)
        return MX(u16(pref, "MX preference"), name(exchange))
    if rtype == RType.SRV:
        prio, weight, port, target = arity(4)
        return SRV(u16(prio, "SRV priority"), u16(weight, "SRV weight"), u16(port, "SRV port"),
                   name(target))  # fmt: skip
    if rtype == RType.TXT:
        if not fields:
            raise ZoneError(source, line, "TXT needs at least one string")
        strings: list[str] = []
        for f in fields:
            data = (
                f.text.encode("latin-1")
                if f.quoted
                else _decode_escapes(f.text, source=source, line=line)
            )
            if len(data) > 255:  # RFC 1035 §3.3: <character-string> is at most 255 octets
                raise ZoneError(source, line, "TXT string is longer than 255 octets")
            try:
                strings.append(data.decode())
            except UnicodeDecodeError:
                raise ZoneError(source, line, "TXT string is not UTF-8") from None
        return TXT(tuple(strings))
    # SOA (RFC 1035 §3.3.13)
    mname, rname, serial, *timers = arity(7)
    refresh, retry, expire, minimum = (_parse_ttl(t, source=source, line=line) for t in timers)
    return SOA(
        name(mname),
        name(rname),
        _parse_int(serial, 32, "SOA serial", source=source, line=line),
        refresh,
        retry,
        expire,
        minimum,
    )


# --- zones ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Zone:
    """One parsed zone: every RRset by lower-case owner and type."""

    apex: str
    soa: Record
    rrsets: Mapping[str, Mapping[int, tuple[Record, ...]]]
    names: frozenset[str]  # owners plus empty non-terminals (RFC 8020)
    source: str

    def contains(self, lname: str) -> bool:
        return lname == self.apex or self.apex == "." or lname.endswith("." + self.apex)


def _default_origin(source: str) -> str | None:
    """`zones/example.internal.zone` -> `example.internal.` when the file has no $ORIGIN."""
    base = os.path.basename(source)
    for suffix in _ZONE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    else:
        if base.startswith("db."):
            base = base[3:]
        else:
            return None
    return base.lower().rstrip(".") + "." if base else None


def _parse_rr(
    rest: list[_Token], origin: str | None, *, source: str, line: int
) -> tuple[int | None, RType, Rdata]:
    """`[TTL] [CLASS] TYPE RDATA` after the owner: the TTL (None when left out), type, rdata."""
    ttl: int | None = None
    while rest and not rest[0].quoted:
        word = rest[0].text
        if ttl is None and _is_ttl(word):
            ttl = _parse_ttl(word, source=source, line=line)
        elif word.upper() in _CLASSES or word.upper().startswith("CLASS"):
            if word.upper() != "IN":
                raise ZoneError(source, line, f"class {word} is not supported, only IN")
        else:
            break
        rest.pop(0)
    if not rest:
        raise ZoneError(source, line, "record without a type")
    mnemonic = rest.pop(0).text.upper()
    rtype = RType.__members__.get(mnemonic)
    if rtype is None or rtype not in _SUPPORTED:
        raise ZoneError(source, line, f"record type {mnemonic} is not supported")
    return ttl, rtype, _parse_rdata(rtype, rest, origin, source=source, line=line)


def parse_record(text: str, *, source: str = "<record>", default_ttl: int = 3600) -> Record:
    """One record in master-file syntax, as miekg/dns's NewRR reads a record line (what
    CoreDNS's `template` builds): relative names are relative to the root, the TTL
    defaults to 3600, the class to IN. Raises ZoneError saying what is wrong."""
    entries = list(_tokenize(text, source=source))
    if len(entries) != 1 or entries[0].indented:
        raise ZoneError(source, 1, f"not one record with an owner name: {text!r}")
    rest = list(entries[0].tokens)
    owner = _absolute(rest.pop(0).text, ".", source=source, line=1)
    ttl, _, rdata = _parse_rr(rest, ".", source=source, line=1)
    return Record(owner, default_ttl if ttl is None else ttl, rdata)


def parse_zone(text: str, *, source: str = "<zone>", origin: str | None = None) -> Zone:
    """Parse a master file (RFC 1035 §5). The zone's apex is the owner of its one SOA.

    `origin` (absolute) is the initial $ORIGIN; without it the file name suggests one.
    """
    if origin is None:
        origin = _default_origin(source)
    elif not origin.endswith("."):
        origin += "."
    origin = origin.lower() if origin else None
    default_ttl: int | None = None
    last_ttl: int | None = None
    owner: str | None = None
    parsed: list[tuple[int, str, int | None, RType, Rdata]] = []

    for entry in _tokenize(text, source=source):
        line = entry.line
        first = entry.tokens[0].text
        if not entry.indented and first.startswith("$"):
            args = entry.tokens[1:]
            directive = first.upper()
            if directive == "$ORIGIN" and len(args) == 1:
                origin = _absolute(args[0].text, origin, source=source, line=line)
            elif directive == "$TTL" and len(args) == 1:
                default_ttl = _parse_ttl(args[0].text, source=source, line=line)
            elif directive in ("$ORIGIN", "$TTL"):
                raise ZoneError(source, line, f"{directive} takes one argument")
            else:
                raise ZoneError(source, line, f"directive {first} is not supported")
            continue
        rest = list(entry.tokens)
        if entry.indented:
            if owner is None:
                raise ZoneError(source, line, "record without an owner name")
        else:
            owner = _absolute(rest.pop(0).text, origin, source=source, line=line)
        ttl, rtype, rdata = _parse_rr(rest, origin, source=source, line=line)
        # RFC 1035 §5.1: an omitted TTL is the last one given; RFC 2308 §4: $TTL sets it.
        if ttl is None:
            ttl = default_ttl if default_ttl is not None else last_ttl
        else:
            last_ttl = ttl
        parsed.append((line, owner, ttl, rtype, rdata))

    return _build_zone(parsed, source=source)


def _build_zone(
    parsed: Sequence[tuple[int, str, int | None, RType, Rdata]], *, source: str
) -> Zone:
    soas = [(line, owner, rdata) for line, owner, _, _, rdata in parsed if isinstance(rdata, SOA)]
    if not soas:
        raise ZoneError(source, 1, "the zone has no SOA record")
    if len(soas) > 1:
        raise ZoneError(source, soas[1][0], "a second SOA record; a zone has exactly one")
    _, apex, soa_rdata = soas[0]
    assert isinstance(soa_rdata, SOA)

    groups: dict[str, dict[int, list[Record]]] = {}
    ttls: dict[tuple[str, int], int] = {}
    for line, owner, ttl, rtype, rdata in parsed:
        if ttl is None:
            if rtype != RType.SOA:
                raise ZoneError(source, line, "no TTL given and no $TTL before it")
            ttl = soa_rdata.minimum  # RFC 2308 §4: old files default to the SOA MINIMUM
        if not (owner == apex or apex == "." or owner.endswith("." + apex)):
            raise ZoneError(source, line, f"{owner} is outside the zone {apex}")
        if rtype == RType.NS and owner != apex:
            raise ZoneError(source, line, f"delegation at {owner} is not supported")
        node = groups.setdefault(owner, {})
        if (rtype == RType.CNAME and node) or (RType.CNAME in node and rtype != RType.CNAME):
            # RFC 1034 §3.6.2, RFC 2181 §10.1: a CNAME owner has no other data.
            raise ZoneError(source, line, f"{owner} has a CNAME and other data")
        # RFC 2181 §5.2: one TTL per RRset; the lowest wins.
        key = (owner, int(rtype))
        ttls[key] = min(ttl, ttls.get(key, ttl))
        rrset = node.setdefault(rtype, [])
        record = Record(owner, ttl, rdata)
        if all(r.rdata != rdata for r in rrset):  # RFC 2181 §5: no duplicate RRs
            rrset.append(record)

    rrsets: dict[str, dict[int, tuple[Record, ...]]] = {}
    names: set[str] = set()
    for owner, node in groups.items():
        rrsets[owner] = {
            t: tuple(Record(r.name, ttls[(owner, t)], r.rdata) for r in rs)
            for t, rs in node.items()
        }
        name = owner
        while name not in names:
            names.add(name)
            if name == apex:
                break
            name = name.split(".", 1)[1] or "."
    soa = rrsets[apex][RType.SOA][0]
    return Zone(apex, soa, rrsets, frozenset(names), source)


def load_zone(path: Path) -> Zone:
    """Read and parse one zone file; raises ZoneError (also for unreadable files)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ZoneError(str(path), 0, f"cannot read: {exc}") from None
    return parse_zone(text, source=str(path))


# --- answers (pure) ------------------------------------------------------------------


def _negative(zone: Zone, rcode: Rcode, answer: Sequence[Record]) -> Reply:
    # RFC 2308 §3: the SOA goes in the authority section with TTL min(SOA TTL, MINIMUM).
    soa = zone.soa
    assert isinstance(soa.rdata, SOA)
    authority = Record(soa.name, min(soa.ttl, soa.rdata.minimum), soa.rdata)
    return Reply(rcode=rcode, answer=tuple(answer), authority=(authority,))


def _glue(zone: Zone, records: Iterable[Record]) -> tuple[Record, ...]:
    """A/AAAA of in-zone NS, MX and SRV targets for the additional section (RFC 1035 §3.3)."""
    extra: list[Record] = []
    seen: set[str] = set()
    for record in records:
        rdata = record.rdata
        if isinstance(rdata, NS):
            target = rdata.target
        elif isinstance(rdata, MX):
            target = rdata.exchange
        elif isinstance(rdata, SRV):
            target = rdata.target
        else:
            continue
        if target in seen:
            continue
        seen.add(target)
        node = zone.rrsets.get(target, {})
        extra.extend(node.get(RType.A, ()))
        extra.extend(node.get(RType.AAAA, ()))
    return tuple(extra)


def answer_zone(zone: Zone, question: Question) -> Reply:
    """The authoritative answer for a name inside `zone` (RFC 1034 §4.3.2, RFC 2308)."""
    qtype = question.qtype
    name = question.lname
    answer: list[Record] = []
    chain: set[str] = set()
    for _ in range(MAX_CNAME_CHAIN + 1):
        node = zone.rrsets.get(name)
        if node is None:
            # RFC 8020 / D3: a name with descendants exists (empty non-terminal): NODATA.
            rcode = Rcode.NOERROR if name in zone.names else Rcode.NXDOMAIN
            # RFC 6604: after a CNAME the rcode is the one of the last name.
            return _negative(zone, rcode, answer)
        if qtype == RType.ANY:
            found = [r for rrset in node.values() for r in rrset]
        else:
            found = list(node.get(qtype, ()))
        if found:
            answer.extend(found)
            return Reply(answer=tuple(answer), additional=_glue(zone, found))
        cname = node.get(RType.CNAME)
        if not cname:
            return _negative(zone, Rcode.NOERROR, answer)  # NODATA
        # RFC 1034 §4.3.2 step 3a: answer with the CNAME and restart at its target.
        answer.append(cname[0])
        chain.add(name)
        target = cname[0].rdata
        assert isinstance(target, CNAME)
        name = target.target
        if name in chain:
            break  # a CNAME loop: what we have is the answer (RFC 1034 §3.6.2)
        if not zone.contains(name):
            # Out of zone: the handler may resolve the target upstream, as CoreDNS's file
            # plugin does; the reply then depends on upstream and must not be kept.
            return Reply(answer=tuple(answer), chase=name, cacheable=False)
    return Reply(answer=tuple(answer))


# --- names the cluster answers ------------------------------------------------------

Network = IPv4Network | IPv6Network
Protected = str | Network
"""A name kdns answers from the cluster: a zone apex ("cluster.local.") or a network whose
reverse names it answers (the service and pod CIDRs)."""

_REVERSE = (("in-addr.arpa.", 4), ("ip6.arpa.", 6))


def _reverse_network(apex: str) -> Network | None:
    """The addresses whose reverse names lie in the zone at `apex` (a reverse zone apex is a
    network: `96.10.in-addr.arpa.` is 10.96.0.0/16), or None for a zone holding no reverse
    name of an address (a forward zone, or labels that are not octets or nibbles)."""
    for suffix, version in _REVERSE:
        if apex == suffix:
            labels: list[str] = []
        elif apex.endswith("." + suffix):
            labels = apex[: -len(suffix) - 1].split(".")[::-1]
        else:
            continue
        bits, step = (32, 8) if version == 4 else (128, 4)
        value = 0
        prefix = 0
        for label in labels[: bits // step]:  # deeper names lie inside one address's node
            if version == 4:
                ok = label.isdigit() and int(label) < 256 and (label == "0" or label[0] != "0")
                number = int(label) if ok else 0
            else:
                ok = len(label) == 1 and label in "0123456789abcdef"
                number = int(label, 16) if ok else 0
            if not ok:
                return None
            value = value << step | number
            prefix += step
        value <<= bits - prefix
        if version == 4:
            return IPv4Network((value, prefix))
        return IPv6Network((value, prefix))
    return None


def _normalized(protected: Iterable[Protected]) -> tuple[Protected, ...]:
    out: list[Protected] = []
    for item in protected:
        if isinstance(item, str):
            name = item.lower()
            out.append(name if name.endswith(".") else name + ".")
        else:
            out.append(item)
    return tuple(out)


def hidden_by(apex: str, protected: Iterable[Protected]) -> str | None:
    """What a static zone at `apex` would hide of the cluster's names, as words for a log
    line, or None when it hides nothing (see the module docstring for the rule)."""
    network = _reverse_network(apex)
    for item in protected:
        if isinstance(item, str):
            if apex == item:
                return f"the cluster zone {item}"
            if item == "." or apex.endswith("." + item):
                return f"names of the cluster zone {item}"
        elif network is not None and network.version == item.version and network.overlaps(item):
            return f"the reverse names of the cluster network {item}"
    return None


# --- the set of zone files -----------------------------------------------------------

_Stamp = tuple[int, int, int]  # (mtime_ns, size, inode)


@dataclass(slots=True)
class _Loaded:
    stamp: _Stamp | None  # of the last attempt, good or bad, so a broken file logs once
    zone: Zone | None  # the last good version
    failed: bool = False  # the last attempt to read it failed
    duplicate: bool = False  # read, but its zone is already served from another file


@dataclass(slots=True)
class ZoneSet:
    """The static zones kdns serves: zone files and folders of them, reloaded on change.

    A file that fails to parse, or whose zone would hide `protected` cluster names, raises
    ZoneError at start (refuse to start); on a reload the last good version stays in
    service and the error is logged once.
    """

    paths: tuple[Path, ...]
    protected: tuple[Protected, ...] = ()
    clock: Callable[[], float] = field(default=time.time, repr=False)
    generation: int = 0
    last_success: float = field(default=0.0, init=False)
    """Unix time of the last load after which every file was served as it is on disk."""
    failures: int = field(default=0, init=False)
    """Failed attempts to read a file (or a folder) so far."""
    _scan_failed: bool = field(default=False, init=False, repr=False)
    _files: dict[Path, _Loaded] = field(default_factory=dict, init=False, repr=False)
    _by_apex: dict[str, Zone] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.protected = _normalized(self.protected)
        for path in self._expand():
            zone = self._load(path)
            self._files[path] = _Loaded(_stat(path), zone)
        self._index(strict=True)
        for zone in self._by_apex.values():
            logger.info("static zone %s loaded from %s", zone.apex, zone.source)
        self.last_success = self.clock()

    @classmethod
    def load(cls, paths: Iterable[Path | str], *, protected: Iterable[Protected] = ()) -> ZoneSet:
        """Load zone files and folders of them (`--zone-file`); raises ZoneError.

        `protected`: the cluster zone(s) and the service and pod networks; a file whose
        zone would hide any of their names is refused."""
        return cls(tuple(Path(p) for p in paths), _normalized(protected))

    @property
    def zones(self) -> Mapping[str, Zone]:
        return self._by_apex

    @property
    def failing(self) -> bool:
        """True while the last attempt to read some file (or folder) failed."""
        return self._scan_failed or any(f.failed or f.duplicate for f in self._files.values())

    def status(self) -> tuple[bool, float]:
        """(failing, last_success), the shape the metrics' reload callbacks take."""
        return self.failing, self.last_success

    def _load(self, path: Path) -> Zone:
        zone = load_zone(path)
        hidden = hidden_by(zone.apex, self.protected)
        if hidden is not None:
            raise ZoneError(
                str(path),
                0,
                f"zone {zone.apex} would hide {hidden}, which kdns answers from the cluster; "
                "remove the file or serve only other names from it",
            )
        return zone

    def find(self, lname: str) -> str | None:
        """The apex of the static zone holding `lname` (lower-case, absolute), else None."""
        if not self._by_apex:
            return None
        name = lname
        while True:
            if name in self._by_apex:
                return name
            if name == ".":
                return None
            name = name.split(".", 1)[1] or "."

    def answer(self, question: Question) -> Reply:
        apex = self.find(question.lname)
        if apex is None:
            return Reply(rcode=Rcode.REFUSED, authoritative=False)  # not ours (RFC 1034 §4.3.1)
        return answer_zone(self._by_apex[apex], question)

    def reload_if_changed(self) -> bool:
        """Re-read files whose mtime, size or inode changed; True if any zone changed."""
        was_failing = self.failing
        try:
            present = set(self._expand())
        except OSError as exc:  # a folder that vanished: keep serving what we have
            if not self._scan_failed:
                logger.warning("static zones not reloaded, keeping the last good: %s", exc)
            self._scan_failed = True
            self.failures += 1
            return False
        self._scan_failed = False
        changed = self._reload(present)
        if not self.failing and (changed or was_failing):
            self.last_success = self.clock()
        return changed

    def _reload(self, present: set[Path]) -> bool:
        changed = False
        for path in list(self._files):
            if path not in present and not self._named(path):
                logger.info("static zone file %s removed from its folder; dropping it", path)
                del self._files[path]
                changed = True
        for path in sorted(present):
            stamp = _stat(path)
            loaded = self._files.get(path)
            if loaded is not None and stamp == loaded.stamp:
                continue
            if loaded is None:
                loaded = self._files[path] = _Loaded(None, None)
            loaded.stamp = stamp
            if stamp is None:
                logger.warning("static zone file %s is gone; keeping the last good zone", path)
                loaded.failed = True
                self.failures += 1
                continue
            try:
                zone = self._load(path)
            except ZoneError as exc:
                logger.warning("static zone file not reloaded, keeping the last good: %s", exc)
                loaded.failed = True
                self.failures += 1
                continue
            loaded.zone = zone
            loaded.failed = False
            changed = True
            logger.info("static zone %s reloaded from %s (serial %s)", zone.apex, path,
                        getattr(zone.soa.rdata, "serial", "?"))  # fmt: skip
        if changed:
            self._index(strict=False)
            self.generation += 1
        return changed

    def _named(self, path: Path) -> bool:
        return path in self.paths

    def _expand(self) -> list[Path]:
        files: list[Path] = []
        for path in self.paths:
            if path.is_dir():
                files.extend(
                    p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")
                )
            else:
                files.append(path)
        return files

    def _index(self, *, strict: bool) -> None:
        by_apex: dict[str, Zone] = {}
        for path, loaded in self._files.items():
            zone = loaded.zone
            if zone is None:
                continue
            other = by_apex.get(zone.apex)
            if other is not None:
                message = f"zone {zone.apex} is already served from {other.source}"
                if strict:
                    raise ZoneError(str(path), 0, message)
                logger.warning("static zone file %s ignored: %s", path, message)
                if not loaded.duplicate:
                    self.failures += 1
                loaded.duplicate = True
                continue
            loaded.duplicate = False
            by_apex[zone.apex] = zone
        self._by_apex = by_apex


def _stat(path: Path) -> _Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


async def run_reload(zones: ZoneSet, *, poll_seconds: float = 1.0) -> None:
    """Poll the zone files forever, like CoreDNS's `file` plugin `reload` (default 1 min)."""
    while True:
        await asyncio.sleep(poll_seconds)
        zones.reload_if_changed()
