"""`Question` is a value: equal and hashed by name as spelled and type, with the
lower-cased name beside it (it is a plain slotted class, not a dataclass, for speed)."""

from __future__ import annotations

from kdns.dns.records import Question, RType


def test_equal_by_spelling_and_type() -> None:
    assert Question("Web.Default.svc.cluster.local.", RType.A) == Question(
        "Web.Default.svc.cluster.local.", 1
    )
    assert Question("web.default.", RType.A) != Question("WEB.default.", RType.A)  # spelling
    assert Question("web.default.", RType.A) != Question("web.default.", RType.AAAA)
    assert Question("web.default.", RType.A) != ("web.default.", 1)


def test_hashes_as_it_compares() -> None:
    seen = {Question("a.b.", 1): "first"}
    assert seen[Question("a.b.", 1)] == "first"
    assert Question("A.b.", 1) not in seen
    assert len({Question("x.", 1), Question("x.", 1), Question("x.", 28)}) == 2


def test_lname_is_the_lower_cased_name() -> None:
    question = Question("Web.DEFAULT.svc.", RType.SRV)
    assert question.lname == "web.default.svc."
    assert question.qname == "Web.DEFAULT.svc."
    assert repr(question) == "Question(qname='Web.DEFAULT.svc.', qtype=<RType.SRV: 33>)"
