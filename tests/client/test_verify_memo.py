"""The client's verification memos: same answers as the plain functions, nothing bad remembered."""

from __future__ import annotations

import pytest
from anchorlog.client.receipts import verify_entries
from anchorlog.client.verify import (
    CheckpointError,
    CheckpointMemo,
    KeyStateMemo,
    check_checkpoint,
    key_state,
)
from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.note import NoteSigner

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
