"""The client's verification memos: same answers as the plain functions, nothing bad remembered."""

from __future__ import annotations

from typing import Any

import pytest
from anchorlog.client.receipts import verify_entries
from anchorlog.client.verify import (
    CheckpointError,
    CheckpointMemo,
    KeyStateMemo,
    PredicateMemo,
    check_checkpoint,
    key_state,
)
from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.predicates import BATCH_RULE_V1, ProvenancePredicate
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.client.conftest import LedgerData


def test_checkpoint_memo_answers_like_check_checkpoint(ledger_data: LedgerData) -> None:
    memo = CheckpointMemo(ledger_data.verifier, capacity=2)
    for note in (ledger_data.early.note, ledger_data.late.note, ledger_data.early.note):
        assert memo.check(note) == check_checkpoint(note, ledger_data.verifier)
    assert memo.check(ledger_data.late.note) is memo.check(ledger_data.late.note)


def test_checkpoint_memo_refuses_a_forgery_every_time(ledger_data: LedgerData) -> None:
    memo = CheckpointMemo(ledger_data.verifier)
    memo.check(ledger_data.late.note)
    forger = NoteSigner.generate(ledger_data.verifier.name)
    forged = sign_checkpoint(
        Checkpoint(origin=ledger_data.verifier.name, size=ledger_data.late.size, root_hash=bytes(32)), forger
    )
    for _ in range(2):
        with pytest.raises(CheckpointError, match="not signed by the pinned log key"):
            memo.check(forged)


def test_key_state_memo_answers_like_key_state(ledger_data: LedgerData) -> None:
    checkpoint = check_checkpoint(ledger_data.bundle.checkpoint, ledger_data.verifier)
    entries = verify_entries(ledger_data.bundle.entries, checkpoint)
    memo = KeyStateMemo(ledger_data.verifier)
    first = memo.state(entries.values())
    assert first is memo.state(list(entries.values()))
    plain = key_state(entries.values(), ledger_data.verifier)
    assert first.keys == plain.keys and first.vendors == plain.vendors
    # Fewer key events is another key state, not the remembered one.
    key_events = sorted(i for i, e in entries.items() if e.entry.kind is EntryKind.KEY_EVENT)
    assert len(key_events) >= 2
    fewer = {i: e for i, e in entries.items() if i != key_events[-1]}
    other = memo.state(fewer.values())
    assert other is not first
    assert other.keys == key_state(fewer.values(), ledger_data.verifier).keys


_VALID_PREDICATE = {
    "claim": "human-created",
    "canonicalization": "utf8-nfc-v1",
    "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCreation",
    "actorId": "author-1",
    "method": "written by staff",
    "performedAt": "2026-11-01T09:30:00Z",
}


def _parse_or_refusal(parse: Any, doc: Any) -> object:
    try:
        return parse(doc)
    except InvalidInput as exc:
        return ("refused", str(exc))


@settings(max_examples=150, deadline=None)
@given(
    changes=st.lists(
        st.tuples(
            st.sampled_from([*_VALID_PREDICATE, "evidence", "generatorModel", "parentDigests", "batch", "extra"]),
            st.one_of(
                st.none(),
                st.sampled_from(["human-validated", "synthetic", "raw-bytes", "", "2026-13-01T00:00:00Z", "x" * 300]),
                st.integers(-2, 2),
                st.booleans(),
                st.lists(st.text(max_size=3), max_size=2),
                st.dictionaries(st.sampled_from(["size", "rule"]), st.integers(0, 3), max_size=2),
            ),
        ),
        max_size=4,
    )
)
def test_predicate_memo_answers_like_parse_even_when_warm(changes: list[tuple[str, Any]]) -> None:
    """Warm with the valid predicate, then near variants: every verdict is parse's own."""
    memo = PredicateMemo(capacity=8)
    assert memo.parse(dict(_VALID_PREDICATE)) == ProvenancePredicate.parse(dict(_VALID_PREDICATE))
    doc: dict[str, Any] = dict(_VALID_PREDICATE)
    for name, value in changes:
        if value is None:
            doc.pop(name, None)
        else:
            doc[name] = value
        for _ in range(2):  # the second time is answered from the memo if the first was remembered
            assert _parse_or_refusal(memo.parse, dict(doc)) == _parse_or_refusal(ProvenancePredicate.parse, dict(doc))


def test_predicate_memo_remembers_only_string_valued_predicates() -> None:
    memo = PredicateMemo()
    first = memo.parse(dict(_VALID_PREDICATE))
    assert memo.parse(dict(reversed(list(_VALID_PREDICATE.items())))) == first
    assert memo.parse(dict(_VALID_PREDICATE)) is first
    batch = {**_VALID_PREDICATE, "batch": {"size": 3, "rule": BATCH_RULE_V1}}
    assert memo.parse(batch) is not memo.parse(batch)  # holds an object: parsed every time
    with pytest.raises(InvalidInput):
        memo.parse({**_VALID_PREDICATE, "claim": "human-made"})
    with pytest.raises(InvalidInput):  # refused again: a refusal is never remembered
        memo.parse({**_VALID_PREDICATE, "claim": "human-made"})
