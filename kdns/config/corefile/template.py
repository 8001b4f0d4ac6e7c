"""`template CLASS TYPE [ZONES...] { ... }` (CoreDNS's README and setup.go).

Every `template` line of a block is one template, tried in order. CLASS and TYPE are
upper-case mnemonics as CoreDNS reads them; CLASS is IN or ANY here, since kdns answers
class IN only (other classes are REFUSED before any plugin runs). Options: `match
REGEX...` (default `.*`), `answer RR...`, `additional RR...`, `authority RR...`, `rcode
CODE`, `fallthrough [ZONES...]`. Records are Go templates in the subset of
`kdns.config.gotemplate`; a template that uses anything else is refused, naming it, and so
is a record type kdns cannot write when it is spelled out in the template.

Refused: `var`, `expr` and `ederror` (not implemented yet) and `upstream` (deprecated in
CoreDNS, which ignores it: CNAME answers to A/AAAA queries are always resolved).

No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdns.config import gotemplate
from kdns.config.corefile import common
from kdns.config.corefile.common import BlockView
from kdns.config.corefile.parser import Line
from kdns.config.goregex import compile_go
from kdns.config.model import Template, TemplateConfig
from kdns.config.rrtypes import ANSWERABLE_RCODES, CLASSES, RCODES, TYPES

_TAKES = (
    "`match REGEX...`, `answer RR...`, `additional RR...`, `authority RR...`, "
    "`rcode CODE` and `fallthrough [ZONES...]`"
)
_NOT_YET = {
    "var": "expressions are not implemented in kdns yet",
    "expr": "expressions are not implemented in kdns yet",
    "ederror": "extended DNS errors are not implemented in kdns yet",
}
# The record types kdns can write from text (what a zone file may hold).
RECORD_TYPES = ("A", "AAAA", "CNAME", "NS", "PTR", "MX", "TXT", "SRV", "SOA")
_NEVER_ASKED = ("AXFR", "IXFR", "OPT")  # refused before plugins run, or not a question


def read_template(lines: Sequence[Line], block: BlockView) -> TemplateConfig | None:
    templates: list[Template] = []
    ok = True
    for line in lines:
        template = _template(line, block)
        ok = ok and template is not None
        if template is not None:
            templates.append(template)
    if not ok:
        return None
    return TemplateConfig(templates=tuple(templates), origin=lines[0].origin)


def _template(line: Line, block: BlockView) -> Template | None:
    if len(line.args) < 2:
        block.add(
            line.origin,
            "template takes CLASS TYPE [ZONES...], e.g. `template IN A example.org`",
        )
        return None
    qclass, type_text = line.args[0], line.args[1]
    ok = True
    if qclass not in CLASSES:
        block.add(
            line.origin,
            f"template: invalid query class {qclass} (write IN or ANY, upper-case)",
        )
        ok = False
    elif qclass not in ("IN", "ANY"):
        block.add(
            line.origin,
            f"template: class {qclass} is not served by kdns, which answers class IN only "
            "(queries of other classes are REFUSED before plugins run): write IN or ANY",
        )
        ok = False
    qtype = TYPES.get(type_text)
    if qtype is None:
        block.add(
            line.origin,
            f"template: invalid query type {type_text} (write e.g. A, AAAA, ANY, upper-case)",
        )
        ok = False
    elif type_text in _NEVER_ASKED:
        block.add(
            line.origin,
            f"template: {type_text} never reaches a plugin in kdns (zone transfers are "
            "refused); use another TYPE",
        )
        ok = False
    zones = common.zones_or_block("template", line.args[2:], line, block)
    if zones is None or not ok or qtype is None:
        return None
    sections: dict[str, list[str]] = {"answer": [], "additional": [], "authority": []}
    regexes: list[str] = []
    rcode = 0
    fallthrough: tuple[str, ...] | None = None
    for option in line.block or ():
        if not common.no_block(option, block, plugin="template"):
            ok = False
            continue
        name, args = option.name, option.args
        if name == "match":
            if not args:
                block.add(option.origin, "template: match takes one or more REGEX")
                ok = False
            for regex in args:
                try:
                    compile_go(regex)
                except ValueError as exc:
                    block.add(option.origin, f"template: match: {exc}")
                    ok = False
                else:
                    regexes.append(regex)
        elif name in sections:
            if not args:
                block.add(option.origin, f"template: {name} takes one or more RR templates")
                ok = False
            for text in args:
                if _record(name, text, option, block):
                    sections[name].append(text)
                else:
                    ok = False
        elif name == "rcode":
            found = _rcode(option, block)
            ok = ok and found is not None
            rcode = found if found is not None else rcode
        elif name == "fallthrough":
            found_zones = common.fallthrough("template", option, block)
            ok = ok and found_zones is not None
            fallthrough = found_zones
        elif name == "upstream":
            block.add(
                option.origin,
                "template: upstream is deprecated (CoreDNS ignores it): remove it; CNAME "
                "answers to A and AAAA queries are resolved through the rest of the chain",
            )
            ok = False
        elif name in _NOT_YET:
            block.add(
                option.origin,
                f"template: option {name}: {_NOT_YET[name]}; template takes {_TAKES}",
            )
            ok = False
        else:
            block.add(
                option.origin,
                f"template: unknown option {name!r}; template takes {_TAKES}",
            )
            ok = False
    if not ok:
        return None
    return Template(
        qclass=qclass,
        qtype=qtype,
        zones=tuple(zones),
        regexes=tuple(regexes) or (".*",),
        answer=tuple(sections["answer"]),
        additional=tuple(sections["additional"]),
        authority=tuple(sections["authority"]),
        rcode=rcode,
        fallthrough=fallthrough,
        origin=line.origin,
    )


def _rcode(option: Line, block: BlockView) -> int | None:
    if len(option.args) != 1:
        block.add(option.origin, "template: rcode takes one CODE, e.g. `rcode NXDOMAIN`")
        return None
    text = option.args[0]
    if text not in RCODES:
        block.add(option.origin, f"template: unknown rcode {text} (upper-case, e.g. NXDOMAIN)")
        return None
    if text not in ANSWERABLE_RCODES:
        block.add(
            option.origin,
            f"template: rcode {text} is not one kdns answers with; it takes "
            f"{', '.join(ANSWERABLE_RCODES)}",
        )
        return None
    return RCODES[text]


def _record(section: str, text: str, option: Line, block: BlockView) -> bool:
    """The template compiles, and a record type written out in it is one kdns writes."""
    try:
        nodes = gotemplate.compile_template(text)
    except gotemplate.TemplateError as exc:
        block.add(option.origin, f"template: {section}: {exc}")
        return False
    # The literal words, an action standing as one word: owner [TTL] [CLASS] TYPE RDATA.
    words = "".join(n.text if isinstance(n, gotemplate.Text) else "\x00" for n in nodes).split()
    for word in words[1:4]:
        if "\x00" in word:
            return True  # the type may come from the query: checked when answering
        upper = word.upper()
        if upper in CLASSES or word[:1].isdigit():
            if upper not in ("IN", "ANY") and upper in CLASSES:
                block.add(
                    option.origin,
                    f"template: {section}: class {word} records are not served by kdns "
                    "(class IN only)",
                )
                return False
            continue
        if upper in RECORD_TYPES:
            return True
        kind = "is not a record type" if upper not in TYPES else "records cannot be written by kdns"
        block.add(
            option.origin,
            f"template: {section}: {word} {kind}; kdns writes {', '.join(RECORD_TYPES)}",
        )
        return False
    block.add(
        option.origin,
        f"template: {section}: {text!r} is not a record (NAME [TTL] [CLASS] TYPE RDATA)",
    )
    return False
