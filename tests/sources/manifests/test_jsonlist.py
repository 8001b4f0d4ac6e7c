"""Big JSON Lists are read item by item, with the result and errors of a whole read."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.sources.manifests import (
    ManifestError,
)
from tests.sources.manifests.helpers import (
    list_objects,
    load,
    same,
    write,
)


def test_a_json_list_is_read_item_by_item_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import yaml

    objs = list_objects(30, 5)
    (tmp_path / "yaml").mkdir()
    write(tmp_path / "yaml", "all.yaml", yaml.safe_dump_all(objs))
    reference = load(tmp_path / "yaml")  # multi-document YAML: no JSON involved
    kind_first = {"apiVersion": "v1", "kind": "List", "items": objs, "metadata": {}}
    # kubectl get -o json sorts keys: items comes before kind.
    kubectl = {"apiVersion": "v1", "items": objs, "kind": "List", "metadata": {"x": [1]}}

    def no_whole_parse(*args: object, **kwargs: object) -> object:
        raise AssertionError("json.loads of the whole List")

    for n, doc in enumerate([kind_first, kubectl]):
        folder = tmp_path / f"json{n}"
        folder.mkdir()
        write(folder, "list.json", json.dumps(doc, indent=n or None))
        with monkeypatch.context() as m:
            m.setattr(json, "loads", no_whole_parse)
            same(load(folder), reference)
        assert len(reference.slices) == 30


def test_json_shapes_that_are_not_a_plain_list_are_read_whole(tmp_path: Path) -> None:
    import json

    objs = list_objects(2, 2)
    reference = load(write(tmp_path, "ref.json", json.dumps({"kind": "List", "items": objs})))
    # A top-level array is not a Kubernetes document (as before): an error naming it.
    write(tmp_path, "array.json", json.dumps(objs))
    with pytest.raises(ManifestError, match=r"document 1: is a list, not an object"):
        load(tmp_path / "array.json")
    # Duplicate keys: the last one wins, as in any JSON reader (RFC 8259 section 4).
    dup = '{"kind": "Service", "items": [], "kind": "List", "items": ' + json.dumps(objs) + "}"
    same(load(write(tmp_path, "dup.json", dup)), reference)
    # A kind that is not a List keeps `items` as an ordinary field.
    odd = '{"kind": "Namespace", "metadata": {"name": "odd"}, "items": [1, 2]}'
    assert "odd" in {n.name for n in load(write(tmp_path, "odd.json", odd)).namespaces}


LIST_ERRORS = [
    (  # a missing comma between two items: at the start of the third one
        '{"kind": "List", "items": [\n'
        '{"kind": "Namespace", "metadata": {"name": "a"}},\n'
        '{"kind": "Namespace", "metadata": {"name": "b"}}\n'
        '{"kind": "Namespace", "metadata": {"name": "c"}}\n]}\n',
        "line 4 column 1: JSON syntax error: Expecting ',' delimiter",
    ),
    (  # inside the second item: `}` (column 48) where a property name must be
        '{"kind": "List", "items": [\n'
        '{"kind": "Namespace", "metadata": {"name": "a"}},\n'
        '{"kind": "Namespace", "metadata": {"name": "b",}}\n]}\n',
        "line 3 column 48: JSON syntax error: Expecting property name enclosed in double quotes",
    ),
    (  # after the items: the object is never closed
        '{"kind": "List", "items": [\n{"kind": "Namespace", "metadata": {"name": "a"}}\n],\n',
        "line 4 column 1: JSON syntax error: Expecting property name enclosed in double quotes",
    ),
    (  # the second item is not an object
        '{"kind": "List", "items": [{"kind": "Namespace", "metadata": {"name": "a"}}, 7]}',
        "document 1 (List): items[1]: is not an object; each item must be a Kubernetes object",
    ),
]


@pytest.mark.parametrize(("text", "expected"), LIST_ERRORS)
def test_errors_in_a_streamed_json_list_name_the_place(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, "list.json", text)
    with pytest.raises(ManifestError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: {expected}")
