"""Answer equivalence: every server must give the workload's expected answers before timing.

Owns the list of probe queries and their expected results, derived from the generated
workload and the spec (docs/rules.md R9/R10/R17/R22, D1 NODATA, D2 SOA in negative answers,
D4 case echo), and the comparison. It only queries 127.0.0.1 and never starts processes.

A failed check is a mismatch; a server's known, documented deviation (dnsmasq with
`local=` sends no SOA in negative answers) is reported as a note instead, and
optional behaviour (R13 additional records, D3 empty non-terminals) is informational.
The same probes run over TCP for a TCP row and with EDNS DO for a DO row (where the reply
must carry an OPT record with DO copied, RFC 6891 §6.1.1, RFC 3225 §3). Forwarders
(`check_forwarder`) are probed with external names the upstream's wildcard answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from bench import dnsclient
from bench.workload import (
    EXT_ADDRESS,
    EXT_TTL,
    EXT_ZONE,
    NAMESPACE,
    SEARCH_LIST,
    SOA_MNAME,
    SOA_RNAME,
    TTL,
    ZONE,
    Service,
    Workload,
    ext_name,
    search_miss_name,
    unique_label,
    unique_miss_name,
)

# Servers allowed to omit the SOA in negative answers (docs/benchmarking.md#the-anchors).
NO_SOA_OK = {"dnsmasq"}


@dataclass(frozen=True, slots=True)
class Probe:
    label: str
    name: str
    qtype: str
    rcode: str
    answer: tuple[str, ...]  # expected sorted rdata texts of the asked type; () = none
    needs_soa: bool = False
    informational: bool = False


@dataclass(slots=True)
class Outcome:
    server: str
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signatures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def mixed_case(name: str, *, seed: int) -> str:
    """Flip letters pseudo-randomly (DNS 0x20 style), always at least one upper-case."""
    rng = random.Random(seed)
    out = [c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in name]
    first = next(i for i, c in enumerate(out) if c.isalpha())
    out[first] = out[first].upper()
    return "".join(out)


def probes(workload: Workload) -> list[Probe]:
    rng = random.Random(workload.seed + 17)
    svcs = workload.services
    picks: list[Service] = [svcs[0], svcs[-1]]
    picks += [svcs[rng.randrange(len(svcs))] for _ in range(3)]
    headless = [s for s in svcs if not s.cluster_ip]
    if headless:
        picks.append(headless[0])
    out: list[Probe] = []
    for svc in picks:
        out.append(Probe(f"A {svc.name}", svc.fqdn, "A", "NOERROR", tuple(svc.a_rdata())))
        out.append(Probe(f"SRV {svc.name}", svc.srv_name, "SRV", "NOERROR", tuple(svc.srv_rdata())))
    missing = f"missing-0.{NAMESPACE}.svc.{ZONE}."
    out.append(Probe("NXDOMAIN + SOA", missing, "A", "NXDOMAIN", (), needs_soa=True))
    fresh = unique_miss_name("check", rng.randrange(1 << 32))  # the unique-miss shape
    out.append(Probe("new name NXDOMAIN + SOA", fresh, "A", "NXDOMAIN", (), needs_soa=True))
    label = rng.randrange(1 << 32)
    for i, domain in enumerate(SEARCH_LIST):  # (search-misses: one name per search domain)
        name = search_miss_name("check", 3 * label + i)
        out.append(Probe(f"search miss {domain}", name, "A", "NXDOMAIN", (), needs_soa=True))
    out.append(Probe("NODATA AAAA + SOA", svcs[0].fqdn, "AAAA", "NOERROR", (), needs_soa=True))
    case = mixed_case(svcs[-1].fqdn, seed=workload.seed)
    out.append(Probe("case echo", case, "A", "NOERROR", tuple(svcs[-1].a_rdata())))
    ent = f"{NAMESPACE}.svc.{ZONE}."
    out.append(Probe("empty non-terminal", ent, "A", "NOERROR", (), informational=True))
    return out


def check_server(
    label: str,
    kind: str,
    port: int,
    workload: Workload,
    *,
    tcp: bool = False,
    edns_do: bool | None = None,
) -> Outcome:
    """Run every probe against one server and compare with the expectation.

    `tcp` sends the probes over TCP; `edns_do` adds an OPT record with that DO bit.
    """
    outcome = Outcome(label)
    for probe in probes(workload):
        try:
            reply = dnsclient.query(
                "127.0.0.1", port, probe.name, probe.qtype, timeout=2.0, tcp=tcp, edns_do=edns_do
            )
        except (TimeoutError, OSError) as exc:
            outcome.failures.append(f"{probe.label}: no reply ({exc})")
            continue
        problems: list[str] = []
        problems += _edns_problems(reply, edns_do)
        got = tuple(sorted(rr.rdata for rr in reply.answer if rr.rtype == probe.qtype))
        if not probe.informational:
            outcome.signatures[probe.label] = f"{reply.rcode} {' | '.join(got)}"
        if reply.rcode != probe.rcode:
            problems.append(f"rcode {reply.rcode}, expected {probe.rcode}")
        if got != probe.answer:
            problems.append(f"answer {got}, expected {probe.answer}")
        ttls = {rr.ttl for rr in reply.answer}
        if ttls - {TTL}:
            problems.append(f"answer TTLs {sorted(ttls)}, expected {TTL}")
        if probe.label == "case echo":
            sent = dnsclient.encode_name(probe.name)
            if not reply.question.startswith(sent):
                problems.append("question not echoed byte for byte (0x20 case lost)")
        if probe.needs_soa:
            soas = [rr for rr in reply.authority if rr.rtype == "SOA"]
            if not soas:
                if kind in NO_SOA_OK:
                    outcome.notes.append(f"{probe.label}: no SOA in authority (known deviation)")
                else:
                    problems.append("no SOA in the authority section (D2)")
            elif not soas[0].rdata.startswith(f"{SOA_MNAME} {SOA_RNAME}"):
                problems.append(f"SOA {soas[0].rdata!r}, expected {SOA_MNAME} {SOA_RNAME} ...")
        if probe.qtype == "SRV" and reply.answer:
            targets = {rr.rdata.split()[-1] for rr in reply.answer if rr.rtype == "SRV"}
            glued = {rr.name for rr in reply.additional if rr.rtype == "A"}
            note = "SRV target A records not all in additional (optional, R13)"
            if not targets <= glued and note not in outcome.notes:
                outcome.notes.append(note)
        if problems:
            where = f"{probe.label} ({probe.name} {probe.qtype})"
            if probe.informational:
                outcome.notes.append(f"{where}: " + "; ".join(problems))
            else:
                outcome.failures.append(f"{where}: " + "; ".join(problems))
    return outcome


def _edns_problems(reply: dnsclient.Response, edns_do: bool | None) -> list[str]:
    """With EDNS in the query the reply carries an OPT record (RFC 6891 §6.1.1) with the
    query's DO bit copied (RFC 3225 §3)."""
    if edns_do is None:
        return []
    if reply.edns_do is None:
        return ["no OPT record in the reply to an EDNS query (RFC 6891)"]
    if reply.edns_do != edns_do:
        return [f"DO bit {reply.edns_do} in the reply, query had {edns_do} (RFC 3225)"]
    return []


def forward_probes(seed: int) -> list[Probe]:
    """External names the upstream's wildcard `*.ext.test. A` answers, through a forwarder."""
    rng = random.Random(seed + 29)
    out = [
        Probe(f"A ext-{i}", ext_name(i), "A", "NOERROR", (EXT_ADDRESS,))
        for i in (0, rng.randrange(1000), 999)
    ]
    fresh = f"{unique_label('check', rng.randrange(1 << 32))}.{EXT_ZONE}."
    out.append(Probe("A new name", fresh, "A", "NOERROR", (EXT_ADDRESS,)))
    case = mixed_case(ext_name(7), seed=seed)
    out.append(Probe("case echo", case, "A", "NOERROR", (EXT_ADDRESS,)))
    return out


def check_forwarder(label: str, port: int, seed: int) -> Outcome:
    """Probe a forwarder with recursion desired: the upstream's answer, a TTL that a cache
    may have counted down but not raised (1..EXT_TTL), the question echoed (D4)."""
    outcome = Outcome(label)
    for probe in forward_probes(seed):
        try:
            reply = dnsclient.query(
                "127.0.0.1", port, probe.name, probe.qtype, timeout=3.0, rd=True
            )
        except (TimeoutError, OSError) as exc:
            outcome.failures.append(f"{probe.label}: no reply ({exc})")
            continue
        problems: list[str] = []
        got = tuple(sorted(rr.rdata for rr in reply.answer if rr.rtype == probe.qtype))
        outcome.signatures[probe.label] = f"{reply.rcode} {' | '.join(got)}"
        if reply.rcode != probe.rcode:
            problems.append(f"rcode {reply.rcode}, expected {probe.rcode}")
        if got != probe.answer:
            problems.append(f"answer {got}, expected {probe.answer}")
        bad_ttls = sorted(rr.ttl for rr in reply.answer if not 0 < rr.ttl <= EXT_TTL)
        if bad_ttls:
            problems.append(f"answer TTLs {bad_ttls}, expected 1..{EXT_TTL}")
        sent = dnsclient.encode_name(probe.name)
        if probe.label == "case echo" and not reply.question.startswith(sent):
            problems.append("question not echoed byte for byte (0x20 case lost)")
        if problems:
            outcome.failures.append(
                f"{probe.label} ({probe.name} {probe.qtype}): " + "; ".join(problems)
            )
    return outcome


def compare(outcomes: list[Outcome]) -> list[str]:
    """Cross-server differences of (rcode, answer rdata) per non-informational probe."""
    diffs: list[str] = []
    if not outcomes:
        return diffs
    for probe_label, sig in outcomes[0].signatures.items():
        for other in outcomes[1:]:
            theirs = other.signatures.get(probe_label)
            if theirs != sig:
                diffs.append(
                    f"{probe_label}: {outcomes[0].server}={sig!r} vs {other.server}={theirs!r}"
                )
    return diffs
