"""The Go text/template subset of `template` records, and Go regexes read by Python's `re`:
what each construct renders to in Go (text/template and strconv.ParseUint docs), and that
everything else is refused by name."""

from __future__ import annotations

import pytest

from kdns.config.goregex import compile_go
from kdns.config.gotemplate import Data, TemplateError, compile_template, fields_used, render

DATA = Data(
    name="ip-10-1-2-3.example.",
    zone="example.",
    qclass="IN",
    qtype="A",
    regex="^ip-(?P<a>[0-9]+)",
    remote="192.0.2.9",
    match=["ip-10", "10"],
    group={"0": "ip-10", "1": "10", "a": "10", "hex": "ff"},
)

RENDERED = [
    ("{{ .Name }} 60 IN A 10.0.0.1", "ip-10-1-2-3.example. 60 IN A 10.0.0.1"),
    ("{{.Zone}} {{ .Class }} {{ .Type }}", "example. IN A"),
    ("{{ index .Match 1 }}/{{ index .Match 0 }}", "10/ip-10"),
    ('{{ .Group.a }}-{{ index .Group "hex" }}-{{ index .Group "1" }}', "10-ff-10"),
    ('{{ .Group.missing }}|{{ index .Group "missing" }}|', "<no value>||"),
    ("{{ parseInt .Group.hex 16 8 }}", "255"),
    ('{{ parseInt "0x1f" 0 64 }} {{ parseInt "017" 0 8 }}', "31 15"),
    ("{{ .Remote }}", "192.0.2.9"),
    ("a {{- /* gone */ -}} b", "ab"),
    ("a  {{- .Type }}  {{ .Type -}}  b", "aA  Ab"),
    ("no actions at all", "no actions at all"),
]


@pytest.mark.parametrize(("text", "expected"), RENDERED)
def test_renders_as_go(text: str, expected: str) -> None:
    assert render(compile_template(text), DATA) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{{ index .Match 2 }}", "index .Match 2: out of range (the regex gave 2)"),
        ("{{ parseInt .Group.hex 10 8 }}", "parseInt 'ff' 10 8: invalid syntax"),
        ("{{ parseInt .Group.hex 16 4 }}", "parseInt 'ff' 16 4: value out of range"),
        ('{{ parseInt "+1" 10 8 }}', "parseInt '+1' 10 8: invalid syntax"),
    ],
)
def test_render_errors_are_go_execution_errors(text: str, error: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(compile_template(text), DATA)
    assert str(caught.value) == error


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "{{ .Message }}",
            "{{ .Message }} uses .Message (the whole query message), which kdns does not support",
        ),
        (
            "{{ .Var.ip }}",
            "{{ .Var.ip }} uses .Var (variables set by `var` (kdns does not implement `var`)), "
            "which kdns does not support",
        ),
        ("{{ if .Name }}x{{ end }}", "{{ if .Name }} uses 'if', which kdns does not support"),
        ("{{ $x := 1 }}", "{{ $x := 1 }} uses variables, which kdns does not support"),
        (
            "{{ (index .Match 1) }}",
            "{{ (index .Match 1) }} uses parentheses, which kdns does not support",
        ),
        ("{{ .Name | len }}", "{{ .Name | len }} uses pipelines, which kdns does not support"),
        ("{{ .Match }}", "{{ .Match }}: write `index .Match N` for one match"),
        ("{{ index .Group 1 }}", '{{ index .Group 1 }}: .Group keys are strings: index .Group "1"'),
        ("{{ .Name", "unclosed action: '{{ .Name' has no }}"),
        (
            '{{ printf "%s" .Name }}',
            "{{ printf \"%s\" .Name }} uses 'printf', which kdns does not support",
        ),
    ],
)
def test_anything_else_is_refused_by_name(text: str, error: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(text)
    assert str(caught.value) == error


def test_fields_used_says_when_a_reply_depends_on_the_client() -> None:
    assert fields_used(compile_template("{{ .Name }} A {{ .Remote }}")) == {"Name", "Remote"}
    assert fields_used(compile_template("{{ parseInt .Group.x 10 8 }}")) == {"Group"}


@pytest.mark.parametrize(
    ("go", "name", "groups"),
    [
        ("^ip-(?P<a>[[:digit:]]+)[.]", "ip-12.example.", {"a": "12"}),
        ("(?<a>[[:alpha:]]+)-x\\z", "ab-x", {"a": "ab"}),
        ("(?i)^WWW", "www.example.", {}),
    ],
)
def test_go_regexes_mean_the_same_in_python(go: str, name: str, groups: dict[str, str]) -> None:
    found = compile_go(go).search(name)
    assert found is not None
    assert found.groupdict() == groups


def test_go_regexes_python_cannot_mean_are_refused() -> None:
    with pytest.raises(ValueError, match="POSIX class"):
        compile_go("[[:^space:]]")
    with pytest.raises(ValueError, match="10000"):
        compile_go("a" * 10001)
