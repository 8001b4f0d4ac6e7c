"""Corefile structure: server blocks, keys, plugin lines, imports and snippets, with the
file and line each line was written at (the Caddyfile grammar CoreDNS uses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.config.corefile.parser import Line, parse
from kdns.config.model import Origin


def shape(lines: tuple[Line, ...] | None) -> list[object] | None:
    """Lines as nested lists: [name, *args] or [name, *args, [options...]]."""
    if lines is None:
        return None
    out: list[object] = []
    for line in lines:
        item: list[object] = [line.name, *line.args]
        if line.block is not None:
            item.append(shape(line.block))
        out.append(item)
    return out


def parse_ok(text: str, source: str = "Corefile", **environ: str):
    parsed = parse(text, source=source, environ=environ)
    assert [str(p) for p in parsed.problems] == []
    return parsed


def problems(text: str, source: str = "Corefile") -> list[str]:
    return [str(p) for p in parse(text, source=source, environ={}).problems]


def test_keys_plugins_and_options() -> None:
    parsed = parse_ok(
        ".:53 {\n    health {\n       lameduck 5s\n    }\n    forward . /etc/resolv.conf\n}\n"
    )
    (block,) = parsed.blocks
    assert [k.text for k in block.keys] == [".:53"]
    assert shape(block.lines) == [
        ["health", [["lameduck", "5s"]]],
        ["forward", ".", "/etc/resolv.conf"],
    ]
    assert [line.origin for line in block.lines] == [Origin("Corefile", 2), Origin("Corefile", 5)]
    assert block.lines[0].block is not None
    assert block.lines[0].block[0].origin == Origin("Corefile", 3)


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("cluster.local:53 example.org:53 {\n}", ["cluster.local:53", "example.org:53"]),
        ("a.org, b.org {\n}", ["a.org", "b.org"]),
        ("a.org,\nb.org,\n  c.org {\n}", ["a.org", "b.org", "c.org"]),  # trailing commas
        ("example.org\n{\n  log\n}", ["example.org"]),  # '{' on the next line
    ],
)
def test_server_block_keys(text: str, keys: list[str]) -> None:
    (block,) = parse_ok(text).blocks
    assert [k.text for k in block.keys] == keys


def test_several_blocks_and_an_empty_one() -> None:
    parsed = parse_ok("a.org {\n  log\n}\nb.org {\n}\nc.org { }\n")
    assert [[k.text for k in b.keys] for b in parsed.blocks] == [["a.org"], ["b.org"], ["c.org"]]
    assert [shape(b.lines) for b in parsed.blocks] == [[["log"]], [], []]


def test_a_single_block_may_leave_out_its_braces() -> None:
    (block,) = parse_ok(".:1053\nlog\nforward . 10.0.0.1\n").blocks
    assert shape(block.lines) == [["log"], ["forward", ".", "10.0.0.1"]]


def test_an_option_may_follow_the_brace_on_its_line() -> None:
    (block,) = parse_ok(". {\n  health { lameduck 5s\n  }\n}\n").blocks
    assert shape(block.lines) == [["health", [["lameduck", "5s"]]]]


def test_nested_option_blocks_are_kept_for_the_plugin_to_judge() -> None:
    (block,) = parse_ok(". {\n  p a {\n    o b {\n      x\n    }\n  }\n}\n").blocks
    assert shape(block.lines) == [["p", "a", [["o", "b", [["x"]]]]]]


def test_environment_references_are_replaced_in_keys_plugins_and_arguments() -> None:
    parsed = parse_ok(
        "{$ZONE}:{$PORT} {\n  prometheus localhost:{%METRICS%}\n  {$PLUGIN}\n}\n",
        ZONE="example.org",
        PORT="1053",
        METRICS="9253",
        PLUGIN="loop",
    )
    (block,) = parsed.blocks
    assert [k.text for k in block.keys] == ["example.org:1053"]
    assert shape(block.lines) == [["prometheus", "localhost:9253"], ["loop"]]


def test_an_unset_variable_in_an_argument_leaves_an_empty_argument() -> None:
    (block,) = parse_ok(". {\n  log {$UNSET}\n}\n").blocks
    assert shape(block.lines) == [["log", ""]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (".:53 {\n  log\n", "Corefile:1: the '{' of the server block is never closed: add '}'"),
        (
            ". {\n  health {\n    lameduck 5s\n",
            "Corefile:2: the '{' of health is never closed: add '}'",
        ),
        (". {\n  log\n}\n}\n", "Corefile:4: '}' closes nothing: no '{' is open here"),
        (
            ". {\n  health\n  {\n    lameduck 5s\n  }\n}\n",
            "Corefile:3: '{' must be on the same line as the plugin or option it belongs to "
            "(health)",
        ),
        (
            ". {\n  cache {\n    success 100\n  } 30\n}\n",
            "Corefile:4: unexpected '30' after the '}' that closes cache: start a new line",
        ),
        (
            "a.org, {\n}\n",
            "Corefile:1: a server block key ends with ',' but no key follows: remove the comma",
        ),
        (
            "{$UNSET} {\n  log\n}\n",
            "Corefile:1: the server block has no key (an unset environment variable?): write a "
            "zone, e.g. `.:53 {`",
        ),
    ],
)
def test_structure_errors_name_the_line(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_a_one_line_block_is_closed_by_its_brace() -> None:
    (block,) = parse_ok(". { forward . 10.0.0.1 }\n").blocks
    assert shape(block.lines) == [["forward", ".", "10.0.0.1"]]


# ---- imports and snippets ---------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_import_of_a_file_keeps_the_imported_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "common.conf", "# shared\n\nprometheus\nerrors\n")
    corefile = write(tmp_path / "Corefile", ".:53 {\n    import conf/common.conf\n    log\n}\n")
    (block,) = parse_ok(corefile.read_text(), source=str(corefile)).blocks
    assert shape(block.lines) == [["prometheus"], ["errors"], ["log"]]
    common = str(tmp_path / "conf" / "common.conf")
    assert [line.origin for line in block.lines] == [
        Origin(common, 3),
        Origin(common, 4),
        Origin(str(corefile), 3),
    ]


def test_imports_inside_an_imported_file_are_relative_to_that_file(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "a.conf", "import sub/b.conf\n")
    write(tmp_path / "conf" / "sub" / "b.conf", "loop\n")
    corefile = write(tmp_path / "Corefile", ". {\n  import conf/a.conf\n}\n")
    (block,) = parse_ok(corefile.read_text(), source=str(corefile)).blocks
    assert [(line.name, line.origin) for line in block.lines] == [
        ("loop", Origin(str(tmp_path / "conf" / "sub" / "b.conf"), 1))
    ]


def test_a_top_level_glob_import_adds_server_blocks_in_name_order(tmp_path: Path) -> None:
    write(tmp_path / "zones" / "b.server", "b.org {\n  log\n}\n")
    write(tmp_path / "zones" / "a.server", "a.org {\n  log\n}\n")
    write(tmp_path / "zones" / "notes.txt", "not imported\n")
    corefile = write(tmp_path / "Corefile", ". {\n  log\n}\nimport zones/*.server\n")
    parsed = parse_ok(corefile.read_text(), source=str(corefile))
    assert [b.keys[0].text for b in parsed.blocks] == [".", "a.org", "b.org"]
    assert parsed.blocks[1].origin == Origin(str(tmp_path / "zones" / "a.server"), 1)


def test_a_glob_that_matches_nothing_is_not_an_error(tmp_path: Path) -> None:
    corefile = write(tmp_path / "Corefile", ". {\n  log\n  import custom/*.override\n}\n")
    (block,) = parse_ok(corefile.read_text(), source=str(corefile)).blocks
    assert shape(block.lines) == [["log"]]


def test_import_inside_a_plugin_block(tmp_path: Path) -> None:
    write(tmp_path / "k8s.conf", "pods insecure\nttl 30\n")
    corefile = write(tmp_path / "Corefile", ". {\n  kubernetes cluster.local {\n"
                     "    import k8s.conf\n  }\n}\n")  # fmt: skip
    (block,) = parse_ok(corefile.read_text(), source=str(corefile)).blocks
    assert shape(block.lines) == [["kubernetes", "cluster.local", [["pods", "insecure"],
                                                                    ["ttl", "30"]]]]  # fmt: skip


def test_snippets_replay_their_lines_at_the_line_they_were_written(tmp_path: Path) -> None:
    text = (
        "(defaults) {\n"  # 1
        "    errors\n"  # 2
        "    cache {$TTL}\n"  # 3
        "}\n"  # 4
        "a.org {\n"  # 5
        "    import defaults\n"  # 6
        "    forward . 10.0.0.1\n"  # 7
        "}\n"  # 8
        "b.org { import defaults\n"  # 9
        "}\n"
    )
    parsed = parse_ok(text, source=str(tmp_path / "Corefile"), TTL="30")
    assert [shape(b.lines) for b in parsed.blocks] == [
        [["errors"], ["cache", "30"], ["forward", ".", "10.0.0.1"]],
        [["errors"], ["cache", "30"]],
    ]
    source = str(tmp_path / "Corefile")
    assert [line.origin.line for line in parsed.blocks[0].lines] == [2, 3, 7]
    assert parsed.blocks[0].lines[0].origin.source == source


def test_a_snippet_defined_on_one_line_still_starts_lines_where_imported() -> None:
    parsed = parse_ok("(s) { log\n  errors }\n. {\n  import s\n  loop\n}\n")
    assert shape(parsed.blocks[0].lines) == [["log"], ["errors"], ["loop"]]


@pytest.mark.parametrize(
    ("files", "corefile", "expected"),
    [
        ({}, ". {\n  import missing.conf\n}\n", "Corefile:2: import missing.conf: no such file "
         "or snippet ({dir}/missing.conf does not exist; a snippet must be defined above its "
         "import)"),
        ({}, ". {\n  import a b\n}\n", "Corefile:2: import takes one argument: a file, a glob "
         "pattern (one * at most) or a snippet name"),
        ({}, ". {\n  import *.d/*.conf\n}\n", "Corefile:2: import *.d/*.conf: a pattern may hold "
         "one wildcard (* or ?) at most, as in CoreDNS"),
        ({"d/x": "log\n"}, ". {\n  import d\n}\n", "Corefile:2: import d: {dir}/d is a folder; "
         "import the files in it with a glob, e.g. `import dir/*`"),
        ({"loop.conf": "import loop.conf\n"}, ". {\n  import loop.conf\n}\n",
         "{dir}/loop.conf:1: import loop.conf: {dir}/loop.conf imports itself (through the "
         "files it imports)"),
        ({}, "(s) {\n  import s\n}\n. {\n  import s\n}\n", "Corefile:2: import s: the snippet "
         "imports itself; remove the import from its block"),
        ({}, "(s) {\n log\n}\n(s) {\n errors\n}\n", "Corefile:4: snippet (s) is already defined "
         "at Corefile:1: give it another name"),
    ],
)  # fmt: skip
def test_import_problems(tmp_path: Path, files: dict[str, str], corefile: str, expected: str):
    for name, text in files.items():
        write(tmp_path / name, text)
    source = tmp_path / "Corefile"
    found = [str(p) for p in parse(corefile, source=str(source), environ={}).problems]
    assert found == [expected.replace("{dir}", str(tmp_path)).replace("Corefile:", f"{source}:")]


def test_import_of_the_corefile_itself_is_a_cycle(tmp_path: Path) -> None:
    corefile = write(tmp_path / "Corefile", ". {\n  log\n}\nimport Corefile\n")
    found = [str(p) for p in parse(corefile.read_text(), source=str(corefile), environ={}).problems]
    assert found == [f"{corefile}:4: import Corefile: {corefile} imports itself (through the "
                     "files it imports)"]  # fmt: skip


# ---- digest -----------------------------------------------------------------------------


def digest(text: str, tmp_path: Path, **environ: str) -> str:
    return parse(text, source=str(tmp_path / "Corefile"), environ=environ).digest


def test_the_digest_ignores_comments_and_follows_imports_and_variables(tmp_path: Path) -> None:
    base = ". {\n  import common.conf\n  cache {$TTL}\n}\n"
    write(tmp_path / "common.conf", "errors\n")
    first = digest(base, tmp_path, TTL="30")
    assert len(first) == 128
    assert digest(base.replace("{\n", "{  # comment\n", 1), tmp_path, TTL="30") == first
    assert digest(base, tmp_path, TTL="60") != first
    write(tmp_path / "common.conf", "log\n")
    assert digest(base, tmp_path, TTL="30") != first
