"""`hosts [FILE [ZONES...]]`: A, AAAA and PTR answers from /etc/hosts-style lines, from
the file and from lines written in the Corefile (CoreDNS `hosts`).

What it answers, as CoreDNS's hosts.go does:

* a name outside ZONES passes on, unless the query is PTR (reverse names need not be in
  ZONES);
* PTR: the names of the address a full reverse name stands for; when there are none the
  query passes on, `fallthrough` or not;
* A / AAAA: the addresses of the name (the file's, then the inline lines'); wildcards
  (`*.example.com`) match one more label;
* a name that has entries but none of the asked type: NODATA (NOERROR, empty, AA), for
  any type; with `fallthrough_unsupported`, types other than A/AAAA/PTR pass on instead;
* a name with no entry: passes on with `fallthrough` (for its zones); without, SERVFAIL.
  CoreDNS answers SERVFAIL rather than NXDOMAIN on purpose: it has no SOA to put in a
  negative answer, and an NXDOMAIN without one could not be cached properly (RFC 2308).

Answers are authoritative, with the configured TTL, and keep to the data: the fast path
may keep them, and a reload that changes the data bumps the shared `Generation`, which
drops what it kept.

The file is checked every `reload` seconds (size and modification time, as CoreDNS) and
read again when it changed. When it is missing, the last data read stays in service (at
start: none, with a warning), as in CoreDNS.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from kdns.config.model import HostsConfig
from kdns.dns.records import AAAA, PTR, A, Rcode, Record, Reply, RType
from kdns.plugins.kubernetes import in_zone
from kdns.serve.chain import Generation, Plugin, Request, Response, Result
from kdns.zones.hostsfile import Address, HostsData, address_of_reverse, parse_hosts

log = logging.getLogger(__name__)

Stamp = tuple[int, int]  # modification time (ns) and size


class HostsPlugin(Plugin):
    name = "hosts"

    def __init__(self, config: HostsConfig, *, generation: Generation) -> None:
        super().__init__()
        self.config = config
        self._generation = generation
        self.inline = parse_hosts(
            "\n".join(config.inline), zones=config.zones, reverse=config.reverse
        )
        self.file = HostsData()
        self._stamp: Stamp | None = None
        self._missing_logged = False
        found = self._read()
        if found is not None:
            self.file = found
            log.info("hosts: %s: %d entries", config.path, len(found))

    # ---- answering ----------------------------------------------------------------------

    def serve(self, request: Request) -> Result:
        config = self.config
        question = request.question
        lname = question.lname
        qtype = question.qtype
        if qtype != RType.PTR and not any(in_zone(lname, z) for z in config.zones):
            return self.next.serve(request)
        answer: tuple[Record, ...] = ()
        if qtype == RType.PTR:
            address = address_of_reverse(lname)
            names = self._names(address) if address is not None else ()
            if not names:
                return self.next.serve(request)
            answer = tuple(Record(lname, config.ttl, PTR(n)) for n in names)
        elif qtype == RType.A:
            answer = tuple(
                Record(lname, config.ttl, A(a))
                for a in self._addresses(lname, v6=False)
                if isinstance(a, IPv4Address)
            )
        elif qtype == RType.AAAA:
            answer = tuple(
                Record(lname, config.ttl, AAAA(a))
                for a in self._addresses(lname, v6=True)
                if isinstance(a, IPv6Address)
            )
        elif config.fallthrough_unsupported and self._falls(lname):
            return self.next.serve(request)
        if not answer and not self._exists(lname):
            if self._falls(lname):
                return self.next.serve(request)
            reply = Reply(rcode=Rcode.SERVFAIL, authoritative=False)
            return Response(reply, plugin=self.name, cacheable=True)
        return Response(Reply(answer=answer), plugin=self.name, cacheable=True)

    def _addresses(self, lname: str, *, v6: bool) -> list[Address]:
        found = [*self.file.addresses(lname, v6=v6), *self.inline.addresses(lname, v6=v6)]
        return list(dict.fromkeys(found))

    def _names(self, address: Address) -> list[str]:
        found = [*self.file.names.get(address, ()), *self.inline.names.get(address, ())]
        return list(dict.fromkeys(found))

    def _exists(self, lname: str) -> bool:
        return bool(self._addresses(lname, v6=False) or self._addresses(lname, v6=True))

    def _falls(self, lname: str) -> bool:
        zones = self.config.fallthrough
        if zones is None:
            return False
        return not zones or any(in_zone(lname, z) for z in zones)

    # ---- the file -----------------------------------------------------------------------

    def _read(self) -> HostsData | None:
        """The file's data if it changed since the last read; None when it did not, or
        cannot be read (then the last data stays)."""
        path = self.config.path
        try:
            stat = os.stat(path)
            if not os.path.isfile(path):
                raise IsADirectoryError(21, "not a regular file", str(path))
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return None
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            if not self._missing_logged:
                log.warning(
                    "hosts: cannot read %s (%s); serving %s until it can be read",
                    path,
                    exc.strerror or exc,
                    "the inline lines" if self._stamp is None else "its last content",
                )
                self._missing_logged = True
            return None
        self._missing_logged = False
        self._stamp = stamp
        return parse_hosts(text, zones=self.config.zones, reverse=self.config.reverse)

    def background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [self._reload] if self.config.reload > 0 else []

    async def _reload(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload)
            found = await asyncio.to_thread(self._read)
            if found is None or found == self.file:
                continue
            self.file = found
            self._generation.generation += 1
            log.info("hosts: reloaded %s: %d entries", self.config.path, len(found))
