"""`autopath [ZONES...] RESOLV-CONF`: server-side search path completion (CoreDNS `autopath`).

A pod's resolv.conf (kubelet: `search <ns>.svc.<zone> svc.<zone> <zone> <node's domains>`,
`options ndots:5`) makes a client try every search domain before the name itself: up to
five queries, each an A and an AAAA, for every external name. When a query is for a name
under the first domain of the asking client's search path, autopath walks that path here
instead: it asks the rest of the chain for `<base>.<domain>` for each domain in turn, then
for `<base>.` itself, and answers the first reply that is not NXDOMAIN, with a CNAME from
the asked name to the owner of that reply's first record. The client stops searching at
once: one query instead of up to five.

The algorithm is CoreDNS's (autopath.go), for every query type:

* The search path: with `@kubernetes`, the asking pod's (`KubernetesPlugin.search_path`,
  None when the client is no known pod: the query passes on untouched); with a file, its
  `search` list for everyone. Either ends with "" (the name itself).
* A query applies when its name lies under the path's first domain (and is not that
  domain itself: CoreDNS answers SERVFAIL there, kdns passes it on).
* A reply that failed (the rest of the chain said why: no upstream answered) is answered
  at once, as SERVFAIL. A candidate answered SERVFAIL, REFUSED, FORMERR or NOTIMP (no
  reply written, in CoreDNS's terms) or NXDOMAIN is skipped. When every candidate is
  skipped, the first reply (the asked name's own) is answered, and the client walks its
  search path itself.
* The CNAME (TTL of the record it points at) goes first; a reply without records (NODATA)
  gets none. `coredns_autopath_success_total{server}` counts every query answered from
  the walk, the asked name's own reply included.

kdns's choices: the asked name's own reply goes out as it came, without CoreDNS's extra
CNAME (CoreDNS adds a second copy of an ExternalName's CNAME); an upstream reply with
records kdns cannot rewrite (types it does not know, e.g. RRSIG for DO queries) is not
used, and the first reply goes out instead.

The fast path keys replies by name and type, not by client, so with `@kubernetes` a reply
that autopath may change for some client is never kept there: every reply built from the
walk, and every negative reply to a name under `<ns>.svc.<zone>` (the first search domain
of any pod of namespace `<ns>`), whoever asked. Positive replies to such names are the same
for every client and stay cacheable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from kdns.config.model import AutopathConfig
from kdns.dns import wire
from kdns.dns.records import CNAME, Rcode, Record, Reply
from kdns.observe.stats import Stats
from kdns.plugins.kubernetes import in_zone
from kdns.serve.chain import Plugin, Request, Response, Result, then

log = logging.getLogger(__name__)

SearchPath = Callable[[Request, Sequence[str]], Sequence[str] | None]

# Rcodes with which CoreDNS's plugins leave the reply to the server (plugin.ClientWrite
# false): the walk goes on to the next candidate.
_NOT_WRITTEN = frozenset({Rcode.SERVFAIL, Rcode.REFUSED, Rcode.FORMERR, Rcode.NOTIMP})


class AutopathPlugin(Plugin):
    name = "autopath"

    def __init__(
        self,
        config: AutopathConfig,
        *,
        stats: Stats,
        search_path: SearchPath | None = None,
        cluster_zones: Sequence[str] = (),
    ) -> None:
        """`search_path`: the kubernetes plugin's, for `@kubernetes` (None: the plugin
        answers nothing of its own); `cluster_zones`: that plugin's forward zones."""
        super().__init__()
        self.config = config
        self.stats = stats
        self.search_path = search_path
        self._static = (*config.search, "") if config.plugin is None else None
        self.per_client = self._static is None  # the search path depends on who asks
        self._svc: tuple[str, ...] = ()
        self.set_cluster_zones(cluster_zones)

    def set_cluster_zones(self, zones: Sequence[str]) -> None:
        self._svc = tuple(f"svc.{z}" if z != "." else "svc." for z in zones)

    def serve(self, request: Request) -> Result:
        lname = request.question.lname
        if not any(in_zone(lname, z) for z in self.config.zones):
            return self.next.serve(request)
        if self._static is not None:
            search: Sequence[str] | None = self._static
        elif self.search_path is not None:
            search = self.search_path(request, self.config.search)
        else:
            search = None
        if not search or not _under(lname, search[0]) or "\\" in lname:
            result = self.next.serve(request)
            if self.per_client and self._pod_shaped(lname):
                return then(result, _not_kept_if_negative)
            return result
        base = lname[:-1] if search[0] == "." else lname[: -len(search[0]) - 1]
        return _Walk(self, request, base, search).run()

    def _pod_shaped(self, lname: str) -> bool:
        """`lname` lies under `<ns>.svc.<zone>` for some namespace: under the first
        search domain of that namespace's pods."""
        for svc in self._svc:
            if lname.endswith("." + svc) and lname[: -len(svc) - 1].count(".") >= 1:
                return True
        return False


def _under(lname: str, domain: str) -> bool:
    """Strictly below `domain` (CoreDNS: at or below, then SERVFAIL at the domain itself)."""
    if domain == ".":
        return lname != "."
    return bool(domain) and lname.endswith("." + domain)


def _join(base: str, domain: str) -> str:
    """`base` (relative, no trailing dot) under `domain` ("" and "." being the root)."""
    return f"{base}." if domain in ("", ".") else f"{base}.{domain}"


def _not_kept_if_negative(response: Response) -> Response:
    if response.rcode != Rcode.NOERROR:
        response.cacheable = False
    return response


class _Walk:
    """One query's walk down its search path; synchronous until a candidate is pending."""

    def __init__(
        self, plugin: AutopathPlugin, request: Request, base: str, search: Sequence[str]
    ) -> None:
        self.plugin = plugin
        self.request = request
        self.base = base
        self.search = search
        self.first: Response | None = None

    def run(self) -> Result:
        for i, domain in enumerate(self.search):
            sub = self.request if i == 0 else self._sub(_join(self.base, domain))
            if sub is None:
                continue
            result = self.plugin.next.serve(sub)
            if not isinstance(result, Response):
                return self._later(result, i)
            done = self._step(i, result)
            if done is not None:
                return done
        return self._give_up()

    async def _later(self, pending: Awaitable[Response], at: int) -> Response:
        response = await pending
        done = self._step(at, response)
        if done is not None:
            return done
        for i in range(at + 1, len(self.search)):
            sub = self._sub(_join(self.base, self.search[i]))
            if sub is None:
                continue
            result = self.plugin.next.serve(sub)
            got = result if isinstance(result, Response) else await result
            done = self._step(i, got)
            if done is not None:
                return done
        return self._give_up()

    def _sub(self, name: str) -> Request | None:
        """The client's query asking `name` (same flags and EDNS); None when `name` has no
        wire form (over 255 octets: CoreDNS's lookup of it fails too)."""
        request = self.request
        try:
            data = wire.with_qname(request.data, request.query, name)
            query = wire.decode_query(data)
        except (ValueError, wire.QueryError):
            return None
        return Request(
            data=data,
            query=query,
            tcp=request.tcp,
            family=request.family,
            max_size=65535,  # the whole reply: the server fits the final one to the client
            zone=request.zone,
            server=request.server,
            client=request.client,
        )

    def _step(self, i: int, response: Response) -> Response | None:
        """The reply to send now, or None to try the next candidate."""
        if response.error is not None:
            # CoreDNS returns the error at once; the server answers SERVFAIL.
            return Response(
                Reply(rcode=Rcode.SERVFAIL, authoritative=False),
                plugin=response.plugin,
                error=response.error,
            )
        if i == 0:
            self.first = response
        rcode = response.rcode
        if rcode in _NOT_WRITTEN or rcode == Rcode.NXDOMAIN:
            return None
        if i == 0:
            answered = response  # the asked name's own reply, as it came
        else:
            rewritten = _with_cname(response, self.request.question.lname)
            if rewritten is None:
                return self._give_up()
            answered = rewritten
        if i == 0 and self.plugin.per_client:
            answered.cacheable = answered.cacheable and rcode == Rcode.NOERROR
        self.plugin.stats.count_autopath_success(self.request.server)
        return answered

    def _give_up(self) -> Response:
        """Every candidate was skipped: the asked name's own reply (the client searches)."""
        first = self.first
        if first is None:  # the name itself had no wire form: cannot happen for a query
            return Response(Reply(rcode=Rcode.SERVFAIL, authoritative=False), plugin="autopath")
        first.cacheable = False
        return first


def _with_cname(response: Response, original: str) -> Response | None:
    """A candidate's reply as the answer to the asked name `original`: a CNAME from it to
    the owner of the first answer record owned by another name, first (CoreDNS cnamer);
    None when an upstream reply holds records kdns cannot rewrite."""
    reply = response.reply
    if reply is None:
        assert response.wire is not None
        try:
            decoded = wire.decode_reply(response.wire)
        except wire.FormatError as exc:
            log.debug("autopath: unusable reply for %s: %s", original, exc)
            return None
        if decoded.answer_count != len(decoded.answer) or decoded.rcode != Rcode.NOERROR:
            return None  # a type kdns does not know (RRSIG, HTTPS, ...) would be lost
        reply = Reply(
            rcode=Rcode.NOERROR,
            authoritative=bool(decoded.flags & 0x0400),  # AA
            answer=decoded.answer,
            authority=decoded.authority,
            additional=decoded.additional,
        )
    answer: tuple[Record, ...] = reply.answer
    for record in answer:
        if record.name.lower() != original:
            cname = Record(original, record.ttl, CNAME(record.name.lower()))
            answer = (cname, *answer)
            break
    return Response(
        Reply(
            rcode=reply.rcode,
            authoritative=reply.authoritative,
            answer=answer,
            authority=reply.authority,
            additional=reply.additional,
            cacheable=False,
        ),
        plugin=response.plugin,
        cacheable=False,
    )


__all__ = ["AutopathPlugin"]
