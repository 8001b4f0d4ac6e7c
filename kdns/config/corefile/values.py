"""The values a Corefile holds, read as CoreDNS reads them: Go durations, zone names,
reverse zones written as CIDRs, `HOST:PORT` listen addresses.

Each parser raises ValueError with a message that says what is expected. No I/O here.
"""

from __future__ import annotations

import ipaddress
import math
import re

from kdns.config.settings import HostPort

# Go's time.ParseDuration units, in seconds.
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 MICRO SIGN
    "μs": 1e-6,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]*)")
_INTEGER = re.compile(r"[+-]?\d+")
_LABEL = re.compile(r"[a-z0-9_*-](?:[a-z0-9_-]{0,61}[a-z0-9_-])?")


def parse_duration(text: str) -> float:
    """A Go duration (`5s`, `1m30s`, `500ms`, `1.5h`, `0`) in seconds."""
    rest = text
    sign = 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"{text!r} is not a duration: write e.g. 5s, 1m30s or 500ms")
    total = 0.0
    pos = 0
    while pos < len(rest):
        match = _DURATION_PART.match(rest, pos)
        if match is None:
            raise ValueError(f"{text!r} is not a duration: write e.g. 5s, 1m30s or 500ms")
        number, unit = match.groups()
        if not unit:
            raise ValueError(f"{text!r} has no unit: write e.g. {number}s")
        if unit not in _UNITS:
            raise ValueError(
                f"{text!r} has an unknown unit {unit!r}: the units are ns, us, ms, s, m and h"
            )
        total += float(number) * _UNITS[unit]
        pos = match.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Seconds the way Go prints a duration: 30s, 1m0s, 1h30m0s, 500ms, 0s."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        ms = seconds * 1000
        return f"{sign}{ms:g}ms" if ms >= 1 else f"{sign}{seconds * 1e6:g}µs"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:g}s"
    if hours or minutes:
        text = f"{int(minutes)}m{text}"
    if hours:
        text = f"{int(hours)}h{text}"
    return sign + text


def parse_int(text: str, *, what: str) -> int:
    """A decimal integer as Go's strconv.Atoi reads it (an optional sign, digits)."""
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"{what} must be a whole number, not {text!r}")
    return int(text)


def normalize_zone(text: str) -> str:
    """A domain name lower-cased and fully qualified ("." for the root)."""
    name = text.lower()
    if name in (".", ""):
        if not name:
            raise ValueError("a zone name cannot be empty (an unset environment variable?)")
        return "."
    if name.startswith(".") or ".." in name:
        raise ValueError(f"{text!r} is not a valid zone name: it has an empty label")
    if not name.endswith("."):
        name += "."
    if len(name) > 254:
        raise ValueError(f"{text!r} is not a valid zone name: longer than 253 characters")
    for label in name[:-1].split("."):
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"{text!r} is not a valid zone name: label {label!r} must be "
                "1 to 63 letters, digits, '-' or '_'"
            )
    return name


def zones_from(text: str) -> list[str]:
    """The zones a zone argument stands for: a name, or a CIDR written for its reverse zones.

    As in CoreDNS, a CIDR on an octet (IPv4) or nibble (IPv6) boundary is one zone
    (`10.0.0.0/8` -> `10.in-addr.arpa.`); any other prefix length is split into the
    zones of the next boundary (`10.0.0.0/23` -> `0.0.10.in-addr.arpa.`,
    `1.0.10.in-addr.arpa.`)."""
    if "/" not in text:
        return [normalize_zone(text)]
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is neither a zone name nor a CIDR (e.g. 10.0.0.0/8)") from None
    return reverse_zones(network)


def reverse_zones(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    step = 8 if network.version == 4 else 4
    bits = math.ceil(network.prefixlen / step) * step
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [network]
    if bits != network.prefixlen:
        nets = list(network.subnets(new_prefix=bits))
    suffix = "in-addr.arpa." if network.version == 4 else "ip6.arpa."
    zones = []
    for net in nets:
        if network.version == 4:
            labels = str(net.network_address).split(".")[: bits // 8]
        else:
            labels = list(net.network_address.exploded.replace(":", ""))[: bits // 4]
        zones.append(".".join([*reversed(labels), suffix]) if labels else suffix)
    return zones


def is_reverse(zone: str) -> bool:
    return zone.endswith(("in-addr.arpa.", "ip6.arpa."))


def is_subdomain(name: str, zone: str) -> bool:
    """True when normalized `name` is `zone` or below it."""
    return zone == "." or name == zone or name.endswith("." + zone)


def split_host_port(text: str) -> tuple[str, str]:
    """`host:port`, `[v6]:port` or `:port`, as Go's net.SplitHostPort splits them."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"{text!r} is not HOST:PORT: write [IPV6]:PORT")
        return text[1:end], text[end + 2 :]
    if text.count(":") != 1:
        if ":" not in text:
            raise ValueError(f"{text!r} has no port: write HOST:PORT or :PORT")
        raise ValueError(f"{text!r} is not HOST:PORT: write an IPv6 address as [IPV6]:PORT")
    host, port = text.split(":")
    return host, port


def parse_port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"port {text!r} is not a number from 0 to 65535")
    return int(text)


def parse_listen(text: str) -> HostPort:
    """An HTTP listen address (`:8080`, `127.0.0.1:8080`, `[::1]:8080`, `localhost:9153`)."""
    host, port = split_host_port(text)
    if host.lower() == "localhost":
        host = "127.0.0.1"
    elif host:
        host = parse_ip(host, what="the host of a listen address")
    return HostPort(host, parse_port(port))


def parse_ip(text: str, *, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{what} must be an IP address, not {text!r}") from None
