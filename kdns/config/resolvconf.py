"""Default upstreams: the `nameserver` lines of /etc/resolv.conf (CoreDNS's
`forward . /etc/resolv.conf`); and the search list, for `autopath`.

Only reads the file; never sends anything.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from kdns.config.settings import HostPort

logger = logging.getLogger(__name__)

MAX_UPSTREAMS = 15  # CoreDNS forward: at most 15 upstreams


def parse_resolv_conf(text: str, *, source: str = "resolv.conf") -> list[HostPort]:
    """The nameserver addresses, port 53, in file order, duplicates dropped, at most 15."""
    found: list[HostPort] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        host = fields[1]
        try:
            ipaddress.ip_address(host.split("%", 1)[0])  # resolv(5): an IP address, v4 or v6
        except ValueError:
            logger.warning("%s:%s: nameserver %r is not an IP address; skipped",
                           source, number, host)  # fmt: skip
            continue
        upstream = HostPort(host, 53)
        if upstream not in found:
            found.append(upstream)
    if len(found) > MAX_UPSTREAMS:
        logger.warning("%s lists %s nameservers; using the first %s", source, len(found),
                       MAX_UPSTREAMS)  # fmt: skip
    return found[:MAX_UPSTREAMS]


def parse_search(text: str) -> list[str]:
    """The search list: the last `search` or `domain` line wins (`domain X` means the list
    X), as CoreDNS reads resolv.conf; names lower-case and absolute, duplicates dropped."""
    found: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0][0] in "#;":
            continue
        if fields[0] == "search":
            found = fields[1:]
        elif fields[0] == "domain":
            found = fields[1:2]
    return list(dict.fromkeys(name.lower().rstrip(".") + "." for name in found if name != "."))


def upstreams_from_resolv_conf(path: Path | str = Path("/etc/resolv.conf")) -> list[HostPort]:
    """The nameservers of `path`; [] (and a warning) when it is missing or lists none."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        logger.warning("cannot read %s for upstreams: %s", path, exc)
        return []
    found = parse_resolv_conf(text, source=str(path))
    if not found:
        logger.warning("%s lists no nameserver; names outside the served zones get REFUSED",
                       path)  # fmt: skip
    return found


def search_from_resolv_conf(path: Path | str = Path("/etc/resolv.conf")) -> list[str]:
    """The search list of `path`; [] when it cannot be read (as CoreDNS)."""
    try:
        return parse_search(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []
