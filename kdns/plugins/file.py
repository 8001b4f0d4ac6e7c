"""`file DBFILE [ZONES...] { reload DURATION }` (and `--zone-file`): authoritative answers
from zone files.

The files are parsed and reloaded by `kdns.zones.zonefile.ZoneSet` (keep-last-good on a bad
edit), checked every `reload` seconds (CoreDNS's default 1m; 0 = never; `--zone-file`
checks every second). Names in none of the loaded zones, or outside ZONES when given, pass
to the next plugin. A reload bumps the shared `Generation`, so the fast path drops what it
kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from kdns.config.model import FileConfig
from kdns.plugins.kubernetes import in_zone
from kdns.serve.chain import Generation, Plugin, Request, Response, Result
from kdns.zones.zonefile import ZoneSet

log = logging.getLogger(__name__)


class FilePlugin(Plugin):
    name = "file"

    def __init__(self, config: FileConfig, zones: ZoneSet, *, generation: Generation) -> None:
        super().__init__()
        self.config = config
        self.zones = zones
        self._generation = generation

    def serve(self, request: Request) -> Result:
        lname = request.question.lname
        apex = self.zones.find(lname)
        if apex is None or (
            self.config.zones and not any(in_zone(apex, z) for z in self.config.zones)
        ):
            return self.next.serve(request)
        reply = self.zones.answer(request.question)
        return Response(reply, plugin=self.name, cacheable=reply.cacheable)

    def background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [self._reload] if self.config.reload > 0 else []

    async def _reload(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload)
            try:
                changed = self.zones.reload_if_changed()
            except OSError as exc:  # a folder that vanished: keep serving what we have
                log.warning("zone files not reloaded: %s", exc)
                continue
            if changed:
                self._generation.generation += 1
