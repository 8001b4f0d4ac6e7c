"""The Corefile front end: read a CoreDNS Corefile unchanged into a `Config`.

    config = load_corefile(Path("/etc/coredns/Corefile"))   # raises CorefileError
    print(render(config))                                    # `kdns corefile PATH`

`CorefileError.problems` holds every mistake found, each printed `FILE:LINE: message`.
Modules: `lexer` (tokens), `parser` (blocks, imports, snippets), `values` (durations,
zones, addresses), `directives` (one reader per plugin), `load` (keys and the rules
between blocks), `report` (the text of `kdns corefile`).
"""

from kdns.config.corefile.load import corefile_digest, load_corefile, parse_corefile_text
from kdns.config.corefile.problems import CorefileError, Problem
from kdns.config.corefile.report import render

__all__ = [
    "CorefileError",
    "Problem",
    "corefile_digest",
    "load_corefile",
    "parse_corefile_text",
    "render",
]
