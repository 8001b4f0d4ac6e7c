"""Label selectors as the Kubernetes API reads them (labels.Parse through a LabelSelector,
CoreDNS's `labels` and `namespace_labels`): which label sets each selector matches, the
canonical text sent as `labelSelector`, and the texts refused."""

from __future__ import annotations

import pytest

from kdns.config.selector import SelectorError, parse_selector

APP = {"app": "nginx", "environment": "qa", "tier": "web"}
BARE: dict[str, str] = {}
EMPTY_ENV = {"environment": ""}

# selector text, then for each label set whether it matches: APP, BARE, EMPTY_ENV
MATCHES = [
    ("app=nginx", (True, False, False)),
    ("app==nginx", (True, False, False)),
    ("app!=nginx", (False, True, True)),
    ("app!=apache", (True, True, True)),
    ("environment in (staging, qa)", (True, False, False)),
    ("environment notin (staging, qa)", (False, True, True)),
    ("environment in (staging,qa),app=nginx", (True, False, False)),
    ("environment in (staging,qa),app=apache", (False, False, False)),
    ("app", (True, False, False)),
    ("!app", (False, True, True)),
    ("environment=", (False, False, True)),
    ("environment in (qa,)", (True, False, True)),
    ("example.com/team", (False, False, False)),
    ("!example.com/team", (True, True, True)),
    ("tier=web, !missing ,app", (True, False, False)),
]


@pytest.mark.parametrize(("text", "expected"), MATCHES)
def test_which_label_sets_a_selector_matches(text: str, expected: tuple[bool, ...]) -> None:
    selector = parse_selector(text)
    assert tuple(selector.matches(labels) for labels in (APP, BARE, EMPTY_ENV)) == expected


def test_no_labels_at_all_is_the_empty_set() -> None:
    assert parse_selector("!app").matches(None)
    assert not parse_selector("app").matches(None)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("app=nginx", "app=nginx"),
        ("app==nginx", "app=nginx"),
        ("environment in (staging, qa),app=nginx", "app=nginx,environment in (qa,staging)"),
        ("tier notin (b,a,b)", "tier notin (a,b)"),
        ("!a, b, c!=d", "!a,b,c!=d"),
        ("a=b,a=b", "a=b"),
    ],
)
def test_the_canonical_text_sorts_requirements_and_values(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical
    assert parse_selector(canonical) == parse_selector(text)  # the text reads back the same


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("a=b c=d", "found 'c'"),
        ("a in b", "the ( opening the values of a in"),
        ("a in ()", "give at least one value"),
        ("a in (b c)", "found 'c' in the values"),
        ("a in (b", "found the end in the values"),
        ("a > 3", "numeric comparisons are not allowed"),
        ("a <", "numeric comparisons are not allowed"),
        ("a=b,", "where a label key belongs"),
        (",a", "where a label key belongs"),
        ("!", "where a label key belongs"),
        ("=b", "where a label key belongs"),
        ("-a=b", "label key '-a'"),
        ("Example.com/a=b", "the prefix before / must be"),
        ("/a", "the prefix before / must be"),
        ("a/", "label key 'a/'"),
        ("a=" + "v" * 64, "at most 63 characters"),
        ("a=b!", "where a comma between requirements belongs"),
        ("a=-b", "label value '-b'"),
        ("a b", "found 'b' after a"),
    ],
)
def test_bad_selectors_are_refused_with_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert says in str(caught.value)
