"""`template CLASS TYPE [ZONES...]`: answers built from the query name by regex and Go
templates (CoreDNS `template`).

As CoreDNS's template.go does: a name outside every template's zones passes on. Otherwise
the templates are tried in the order written. A template whose zones, class or type do
not fit is skipped (a query of type ANY fits every TYPE, and `.Type` is then the
template's). A template that fits tries its regexes on the lower-cased name; the first
that matches answers: records rendered from `answer`, `authority` and `additional`, the
template's rcode, AA set. When none matches, the query goes to the next template with
`fallthrough` (for the name's zone), else the reply is SERVFAIL. After the last template
the query passes on. `rcode SERVFAIL` answers SERVFAIL without records.

A record that fails to render or to parse answers SERVFAIL and says why (for `errors`).
CNAME answers to A and AAAA queries are followed: the target is resolved by the rest of
the chain and its answer records appended (CoreDNS resolves through the whole server,
kdns through the plugins after `template`).

Replies may be kept by the fast path, except those that read `.Remote` (the client's
address) or followed a CNAME.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from kdns.config import gotemplate
from kdns.config.goregex import compile_go
from kdns.config.model import Template, TemplateConfig
from kdns.config.rrtypes import rtype_name
from kdns.dns.records import Rcode, Record, Reply, RType
from kdns.dns.wire import FormatError, build_query, decode_query, decode_reply
from kdns.plugins.kubernetes import in_zone
from kdns.serve.chain import Plugin, Request, Response, Result
from kdns.zones.zonefile import ZoneError, parse_record

ANY = int(RType.ANY)


@dataclass(frozen=True, slots=True)
class _Compiled:
    config: Template
    regexes: tuple[tuple[str, re.Pattern[str]], ...]
    sections: tuple[tuple[str, tuple[tuple[str, tuple[gotemplate.Node, ...]], ...]], ...]
    remote: bool  # a record reads .Remote: the reply depends on the client

    @classmethod
    def of(cls, template: Template) -> _Compiled:
        sections = tuple(
            (name, tuple((text, gotemplate.compile_template(text)) for text in texts))
            for name, texts in (
                ("answer", template.answer),
                ("authority", template.authority),
                ("additional", template.additional),
            )
        )
        remote = any(
            "Remote" in gotemplate.fields_used(nodes)
            for _, compiled in sections
            for _, nodes in compiled
        )
        regexes = tuple((r, compile_go(r)) for r in template.regexes)
        return cls(template, regexes, sections, remote)

    def falls(self, lname: str) -> bool:
        zones = self.config.fallthrough
        if zones is None:
            return False
        return not zones or any(in_zone(lname, z) for z in zones)

    def match(self, request: Request) -> tuple[gotemplate.Data | None, bool]:
        """(data, fall through) for a request: data when a regex matched."""
        question = request.question
        lname = question.lname
        zone = _longest(lname, self.config.zones)
        if zone is None:
            return None, True
        qtype = question.qtype
        if self.config.qtype != ANY and qtype not in (ANY, self.config.qtype):
            return None, True
        for pattern, regex in self.regexes:
            found = regex.search(lname)
            if found is None:
                continue
            groups = [found.group(0), *(g or "" for g in found.groups())]
            group = {str(i): g for i, g in enumerate(groups)}
            group.update({k: v or "" for k, v in found.groupdict().items()})
            data = gotemplate.Data(
                name=lname,
                zone=zone,
                qclass="IN",
                qtype=rtype_name(qtype if qtype != ANY else self.config.qtype),
                regex=pattern,
                remote=request.client[0] if request.client is not None else "",
                match=groups,
                group=group,
            )
            return data, False
        return None, self.falls(lname)


def _longest(lname: str, zones: Sequence[str]) -> str | None:
    best: str | None = None
    for zone in zones:
        if in_zone(lname, zone) and (best is None or len(zone) > len(best)):
            best = zone
    return best


class TemplatePlugin(Plugin):
    name = "template"

    def __init__(self, config: TemplateConfig) -> None:
        super().__init__()
        self.config = config
        self.templates = [_Compiled.of(t) for t in config.templates]
        self.zones = tuple(dict.fromkeys(z for t in config.templates for z in t.zones))

    def serve(self, request: Request) -> Result:
        lname = request.question.lname
        if not any(in_zone(lname, z) for z in self.zones):
            return self.next.serve(request)
        for template in self.templates:
            data, falls = template.match(request)
            if data is None:
                if not falls:
                    return self._servfail(None)
                continue
            if template.config.rcode == Rcode.SERVFAIL:
                return self._servfail(None)
            try:
                reply = self._reply(template, data)
            except (gotemplate.TemplateError, ZoneError) as exc:
                return self._servfail(f"template at {template.config.origin}: {exc}")
            if request.question.qtype in (RType.A, RType.AAAA) and any(
                r.rtype == RType.CNAME for r in reply.answer
            ):
                return self._chase(request, reply)
            return Response(reply, plugin=self.name, cacheable=not template.remote)
        return self.next.serve(request)

    def _servfail(self, why: str | None) -> Response:
        return Response(
            Reply(rcode=Rcode.SERVFAIL, authoritative=False), plugin=self.name, error=why
        )

    def _reply(self, template: _Compiled, data: gotemplate.Data) -> Reply:
        records: dict[str, list[Record]] = {}
        for section, compiled in template.sections:
            out = records.setdefault(section, [])
            for text, nodes in compiled:
                rendered = gotemplate.render(nodes, data)
                try:
                    out.append(parse_record(rendered))
                except ZoneError as exc:
                    raise ZoneError(section, 1, f"{text!r} gave {rendered!r}: {exc}") from None
        return Reply(
            rcode=Rcode(template.config.rcode),
            authoritative=True,
            answer=tuple(records["answer"]),
            authority=tuple(records["authority"]),
            additional=tuple(records["additional"]),
        )

    async def _chase(self, request: Request, reply: Reply) -> Response:
        """Each CNAME target resolved by the rest of the chain, its answers appended after
        the CNAME (CoreDNS's template does the same for A and AAAA queries)."""
        qtype = request.question.qtype
        answer: list[Record] = []
        for record in reply.answer:
            answer.append(record)
            if record.rtype != RType.CNAME:
                continue
            target = str(record.rdata)
            probe = build_query(target, qtype, qid=request.query.id)
            sub = Request(
                data=probe,
                query=decode_query(probe),
                tcp=request.tcp,
                family=request.family,
                max_size=65535,
                zone=request.zone,
                server=request.server,
                client=request.client,
            )
            found = self.next.serve(sub)
            got = found if isinstance(found, Response) else await found
            answer.extend(_answers(got))
        return Response(replace(reply, answer=tuple(answer)), plugin=self.name)


def _answers(response: Response) -> tuple[Record, ...]:
    if response.reply is not None:
        return response.reply.answer if response.reply.rcode == Rcode.NOERROR else ()
    assert response.wire is not None
    try:
        decoded = decode_reply(response.wire)
    except FormatError:
        return ()
    return decoded.answer if decoded.rcode == Rcode.NOERROR else ()
