"""DNS mnemonics a Corefile may write: record types, classes and response codes, as the
IANA registries name them (the names CoreDNS accepts in `rewrite`, `template`, ...).

`rtype_code("TYPE65")` also takes RFC 3597's generic form. No I/O here.
"""

from __future__ import annotations

import re

# IANA "Resource Record (RR) TYPEs" (plus the query types), mnemonic -> value.
TYPES: dict[str, int] = {
    "A": 1,
    "NS": 2,
    "MD": 3,
    "MF": 4,
    "CNAME": 5,
    "SOA": 6,
    "MB": 7,
    "MG": 8,
    "MR": 9,
    "NULL": 10,
    "PTR": 12,
    "HINFO": 13,
    "MINFO": 14,
    "MX": 15,
    "TXT": 16,
    "RP": 17,
    "AFSDB": 18,
    "X25": 19,
    "ISDN": 20,
    "RT": 21,
    "NSAPPTR": 23,
    "SIG": 24,
    "KEY": 25,
    "PX": 26,
    "GPOS": 27,
    "AAAA": 28,
    "LOC": 29,
    "NXT": 30,
    "EID": 31,
    "NIMLOC": 32,
    "SRV": 33,
    "ATMA": 34,
    "NAPTR": 35,
    "KX": 36,
    "CERT": 37,
    "DNAME": 39,
    "OPT": 41,
    "APL": 42,
    "DS": 43,
    "SSHFP": 44,
    "IPSECKEY": 45,
    "RRSIG": 46,
    "NSEC": 47,
    "DNSKEY": 48,
    "DHCID": 49,
    "NSEC3": 50,
    "NSEC3PARAM": 51,
    "TLSA": 52,
    "SMIMEA": 53,
    "HIP": 55,
    "NINFO": 56,
    "RKEY": 57,
    "TALINK": 58,
    "CDS": 59,
    "CDNSKEY": 60,
    "OPENPGPKEY": 61,
    "CSYNC": 62,
    "ZONEMD": 63,
    "SVCB": 64,
    "HTTPS": 65,
    "SPF": 99,
    "UINFO": 100,
    "UID": 101,
    "GID": 102,
    "UNSPEC": 103,
    "NID": 104,
    "L32": 105,
    "L64": 106,
    "LP": 107,
    "EUI48": 108,
    "EUI64": 109,
    "TKEY": 249,
    "TSIG": 250,
    "IXFR": 251,
    "AXFR": 252,
    "MAILB": 253,
    "MAILA": 254,
    "ANY": 255,
    "URI": 256,
    "CAA": 257,
    "AVC": 258,
    "AMTRELAY": 260,
    "TA": 32768,
    "DLV": 32769,
}
TYPE_NAMES: dict[int, str] = {code: name for name, code in TYPES.items()}

CLASSES: dict[str, int] = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}

# Response codes (RFC 1035, 2136, 2845, 2930, 6891, 7873), mnemonic -> value.
RCODES: dict[str, int] = {
    "NOERROR": 0,
    "FORMERR": 1,
    "SERVFAIL": 2,
    "NXDOMAIN": 3,
    "NOTIMP": 4,
    "REFUSED": 5,
    "YXDOMAIN": 6,
    "YXRRSET": 7,
    "NXRRSET": 8,
    "NOTAUTH": 9,
    "NOTZONE": 10,
    "BADSIG": 16,
    "BADVERS": 16,
    "BADKEY": 17,
    "BADTIME": 18,
    "BADMODE": 19,
    "BADNAME": 20,
    "BADALG": 21,
    "BADTRUNC": 22,
    "BADCOOKIE": 23,
}
# The response codes kdns's plugins can answer with (the replies it builds hold these).
ANSWERABLE_RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")

_GENERIC = re.compile(r"TYPE(\d{1,5})")


def rtype_code(text: str) -> int | None:
    """The value of a type mnemonic (case-insensitive) or of `TYPEnnn`; None if neither."""
    upper = text.upper()
    if upper in TYPES:
        return TYPES[upper]
    match = _GENERIC.fullmatch(upper)
    if match and int(match.group(1)) <= 0xFFFF:
        return int(match.group(1))
    return None


def rtype_name(code: int) -> str:
    return TYPE_NAMES.get(code, f"TYPE{code}")


__all__ = [
    "ANSWERABLE_RCODES",
    "CLASSES",
    "RCODES",
    "TYPES",
    "TYPE_NAMES",
    "rtype_code",
    "rtype_name",
]
