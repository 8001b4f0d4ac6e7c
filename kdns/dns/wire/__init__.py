"""The DNS wire format: query bytes -> `Query`, `Reply` -> reply bytes, upstream replies.

Owns every byte-level rule: header flags, the question echo (0x20 case kept, RFC 1035
§4.1.2, docs/rules.md D4), name compression (RFC 1035 §4.1.4), EDNS (RFC 6891), truncation
(RFC 1035 §4.2.1, RFC 2181 §9), the strict parsing of hostile input, and the few byte
operations the forwarder needs to relay and cache upstream replies. Records are written
from their typed rdata, never by re-parsing text. Pure: no sockets, no asyncio, no
logging. The only package that imports dnslib, the project's chosen wire codec (the
import-linter contracts in pyproject.toml enforce it).

One module per concern; each docstring says what dnslib does there and what is
hand-written, and why:

* `query`: the decoder of client queries, the boundary for hostile input (hand-written).
* `encode`: replies to clients, with our name compression and truncation to whole records.
* `upstream`: queries kdns sends to upstreams and the decoding of their replies.
* `relay`: byte operations on upstream replies (match, TTL rewriting, ID and question).
* `common`: the header layout, the two errors, names, and the strict name reader.
* `edit`: queries with another question, payload or EDNS options, and replies taken
  apart and written again (`rewrite`, `bufsize`).

Import everything from `kdns.dns.wire`; the split is an internal matter.

Decisions (docs/rules.md, "kdns's own choices", Protocol; applied by `kdns.handler`): the
query decoder's in `query`, the reply's in `encode`; and QCLASS other than IN (CH, HS,
ANY, ...) is REFUSED: kdns serves data of class IN only.
"""

from kdns.dns.wire.common import (
    BADVERS,
    CLASS_IN,
    EDNS_PAYLOAD,
    MAX_LABEL,
    MAX_NAME,
    FormatError,
    QueryError,
    labels_to_text,
    name_to_wire,
    rcode_name,
)
from kdns.dns.wire.edit import (
    WireMessage,
    WireRecord,
    build_message,
    join_options,
    parse_message,
    query_options,
    requery,
    split_options,
    with_options,
    with_payload,
)
from kdns.dns.wire.encode import encode_badvers, encode_error, encode_reply, encode_truncated
from kdns.dns.wire.query import Edns, Query, decode_query, with_qname
from kdns.dns.wire.relay import (
    ReplyScan,
    answers,
    cap_ttls,
    header_rcode,
    question_key,
    reply_matches,
    rewrite_ttls,
    scan_reply,
    truncate_for,
    truncated,
    ttl_offsets,
    with_id,
    with_question,
)
from kdns.dns.wire.upstream import DecodedReply, build_query, decode_reply

__all__ = [
    "BADVERS",
    "CLASS_IN",
    "EDNS_PAYLOAD",
    "MAX_LABEL",
    "MAX_NAME",
    "DecodedReply",
    "Edns",
    "FormatError",
    "Query",
    "QueryError",
    "ReplyScan",
    "WireMessage",
    "WireRecord",
    "answers",
    "build_message",
    "build_query",
    "cap_ttls",
    "decode_query",
    "decode_reply",
    "encode_badvers",
    "encode_error",
    "encode_reply",
    "encode_truncated",
    "header_rcode",
    "join_options",
    "labels_to_text",
    "name_to_wire",
    "parse_message",
    "query_options",
    "question_key",
    "rcode_name",
    "reply_matches",
    "requery",
    "rewrite_ttls",
    "scan_reply",
    "split_options",
    "truncate_for",
    "truncated",
    "ttl_offsets",
    "with_id",
    "with_options",
    "with_payload",
    "with_qname",
    "with_question",
]
