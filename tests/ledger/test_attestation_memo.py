"""PredicateMemo: the parser's own verdicts, alone and inside check_attestation, however warm."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import rfc8785
from anchorlog.ledger.attestation import check_attestation
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.predicates import (
    BATCH_RULE_V1,
    PROVENANCE_V1,
    PredicateMemo,
    ProvenancePredicate,
)
from hypothesis import given, settings
from hypothesis import strategies as st

_PREDICATE = {
    "claim": "human-created",
    "canonicalization": "utf8-nfc-v1",
    "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCreation",
    "actorId": "author-1",
    "method": "written by staff",
    "performedAt": "2026-11-01T09:30:00Z",
}


def _envelope(predicate: dict[str, Any]) -> bytes:
    payload = rfc8785.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "sample/1", "digest": {"sha256": "ab" * 32}}],
        "predicateType": PROVENANCE_V1,
        "predicate": predicate,
    })
    return json.dumps({
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE_INTOTO,
        "signatures": [{"keyid": "k", "sig": base64.b64encode(b"s" * 64).decode()}],
    }, separators=(",", ":")).encode()


def _verdict(envelope: bytes, memo: PredicateMemo | None) -> object:
    try:
        return check_attestation(envelope, max_subjects=10, max_batch=10, predicates=memo)
    except InvalidInput as exc:
        return ("refused", str(exc))


# Edits of a valid predicate: fields dropped, replaced by near-valid or wrong-typed values, added.
_changes = st.lists(
    st.tuples(
        st.sampled_from([*_PREDICATE, "evidence", "generatorModel", "parentDigests", "batch", "extra"]),
        st.one_of(
            st.none(),
            st.sampled_from(
                ["human-validated", "synthetic", "raw-bytes", "", "2026-13-01T00:00:00Z", "x" * 300, "a\nb"]
            ),
            st.integers(-2, 2),
            st.booleans(),
            st.lists(st.text(max_size=3), max_size=2),
            st.dictionaries(st.sampled_from(["size", "rule"]), st.integers(0, 3), max_size=2),
        ),
    ),
    max_size=4,
)


def _edited(changes: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The predicate after each change in turn."""
    doc: dict[str, Any] = dict(_PREDICATE)
    out = []
    for name, value in changes:
        if value is None:
            doc.pop(name, None)
        else:
            doc[name] = value
        out.append(dict(doc))
    return out


def _parsed(parse: Any, doc: Any) -> object:
    try:
        return parse(doc)
    except InvalidInput as exc:
        return ("refused", str(exc))


@settings(max_examples=150, deadline=None)
@given(changes=_changes)
def test_memo_parses_like_the_parser_even_when_warm(changes: list[tuple[str, Any]]) -> None:
    memo = PredicateMemo(capacity=8)
    assert memo.parse(dict(_PREDICATE)) == ProvenancePredicate.parse(dict(_PREDICATE))
    for doc in _edited(changes):
        for _ in range(2):  # the second answer may come from the memo
            assert _parsed(memo.parse, dict(doc)) == _parsed(ProvenancePredicate.parse, dict(doc))


@settings(max_examples=100, deadline=None)
@given(changes=_changes)
def test_warm_memo_gives_check_attestations_own_verdicts(changes: list[tuple[str, Any]]) -> None:
    memo = PredicateMemo(capacity=4)
    assert _verdict(_envelope(_PREDICATE), memo) == _verdict(_envelope(_PREDICATE), None)
    for doc in _edited(changes):
        envelope = _envelope(doc)
        plain = _verdict(envelope, None)
        for _ in range(2):
            assert _verdict(envelope, memo) == plain


def test_memo_remembers_only_string_valued_predicates() -> None:
    memo = PredicateMemo()
    first = memo.parse(dict(_PREDICATE))
    assert memo.parse(dict(reversed(list(_PREDICATE.items())))) == first
    assert memo.parse(dict(_PREDICATE)) is first
    batch = {**_PREDICATE, "batch": {"size": 3, "rule": BATCH_RULE_V1}}
    assert memo.parse(batch) is not memo.parse(batch)  # holds an object: parsed every time
    with pytest.raises(InvalidInput):
        memo.parse({**_PREDICATE, "claim": "human-made"})
    with pytest.raises(InvalidInput):  # refused again: a refusal is never remembered
        memo.parse({**_PREDICATE, "claim": "human-made"})
