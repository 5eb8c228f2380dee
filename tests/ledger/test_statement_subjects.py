"""Statement subjects: the quick path for well-formed subjects accepts exactly what the checking path does."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from anchorlog.ledger.dsse import strict_json
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.statement import STATEMENT_TYPE_V1, Subject, _parse_subject, parse_statement
from hypothesis import given, settings
from hypothesis import strategies as st

GOOD_HEX = hashlib.sha256(b"good").hexdigest()

hex_values = st.one_of(
    st.just(GOOD_HEX),
    st.just(GOOD_HEX.upper()),
    st.just(GOOD_HEX[:63]),
    st.just(GOOD_HEX + "0"),
    st.just("g" * 64),
    st.just(GOOD_HEX[:-1] + "\n"),
    st.text(alphabet="0123456789abcdefABCDEF \n", min_size=62, max_size=66),
    st.integers(),
    st.none(),
    st.lists(st.just(GOOD_HEX), max_size=1),
)
digest_sets = st.one_of(
    st.fixed_dictionaries({"sha256": hex_values}),
    st.fixed_dictionaries({"sha256": hex_values, "sha512": st.just("00")}),
    st.fixed_dictionaries({"SHA256": hex_values}),
    st.just({}),
    st.just([GOOD_HEX]),
    st.just(GOOD_HEX),
)
names = st.one_of(st.text(max_size=5), st.just("n" * 1024), st.just("n" * 1025), st.integers(), st.none())
raw_subjects = st.one_of(
    st.fixed_dictionaries({"digest": digest_sets}, optional={"name": names, "uri": st.text(max_size=3)}),
    st.fixed_dictionaries({"digest": digest_sets, "extra": st.just(1)}),
    st.just([]),
    st.just("subject"),
)


def _statement(subjects: list[Any]) -> bytes:
    doc = {"_type": STATEMENT_TYPE_V1, "subject": subjects, "predicateType": "p", "predicate": {}}
    return json.dumps(doc).encode()


@settings(max_examples=300, deadline=None)
@given(raw=raw_subjects)
def test_quick_path_agrees_with_the_checking_path(raw: Any) -> None:
    other = {"digest": {"sha256": hashlib.sha256(b"other").hexdigest()}}
    try:
        expected: Subject | InvalidInput = _parse_subject(raw, "statement.subject[1]")
    except InvalidInput as exc:
        expected = exc
    if isinstance(expected, InvalidInput):
        with pytest.raises(InvalidInput) as caught:
            parse_statement(_statement([other, raw]))
        assert caught.value.field == expected.field
    else:
        parsed = parse_statement(_statement([other, raw]))
        assert parsed.subjects[1] == expected


def test_duplicate_subject_digest_is_refused_on_the_quick_path() -> None:
    subject = {"digest": {"sha256": GOOD_HEX}}
    with pytest.raises(InvalidInput, match=r"already subject\[0\]"):
        parse_statement(_statement([subject, {"name": "again", **subject}]))


@pytest.mark.parametrize(
    "text",
    ['{"a": 1, "a": 2}', '{"x": {"b": 1, "c": 2, "b": 3}}', '[{"k": 1}, {"k": 2, "k": 2}]'],
)
def test_duplicate_json_keys_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="duplicate JSON key"):
        strict_json(text.encode(), "doc")


def test_distinct_keys_parse() -> None:
    assert strict_json(b'{"a": 1, "b": {"a": 2}}', "doc") == {"a": 1, "b": {"a": 2}}
