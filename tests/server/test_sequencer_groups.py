"""The sequencer's group commit on a real SQLite log: grouping, one checkpoint per
group, nothing acknowledged before it is committed, a failed group fails every caller."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.errors import StorageUnavailable
from anchorlog.ledger.keys import KeyRegistry
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.store import LogStore, PendingEntry
from anchorlog.server.sequencer import SequencedItem, Sequencer

ORIGIN = "test.example/sequencer"


def _item(i: int) -> SequencedItem:
    envelope = b'{"n":%d}' % i
    return SequencedItem(
        pending=PendingEntry(
            kind=EntryKind.ATTESTATION, submitter="vendor-a", envelope=envelope,
            dedup_key=hashlib.sha256(envelope).digest(),
        )
    )


class GatedStore(LogStore):
    """A real store whose first append waits for a gate, so later jobs pile up behind it."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.group_sizes: list[int] = []

    def append(self, items, *, now_ms, sign):  # type: ignore[no-untyped-def, override]
        self.entered.set()
        self.gate.wait(30)
        result = super().append(items, now_ms=now_ms, sign=sign)
        self.group_sizes.append(len(items))
        return result


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


def test_queued_submissions_share_one_group_and_one_checkpoint(tmp_path: Path, signer: NoteSigner) -> None:
    store = GatedStore(tmp_path / "log.db", origin=ORIGIN)

    def sign(cp: Checkpoint) -> bytes:
        return sign_checkpoint(cp, signer)

    sequencer = Sequencer(store, KeyRegistry(), sign, linger=0.05)
    try:
        first = sequencer.submit([_item(0)])
        assert store.entered.wait(30)
        later = [sequencer.submit([_item(i)]) for i in range(1, 200)]
        assert not any(f.done() for f in [first, *later])  # nothing acknowledged before the commit
        store.gate.set()
        answers = [f.result(30)[0] for f in [first, *later]]
    finally:
        store.gate.set()
        sequencer.close()
    assert store.group_sizes == [1, 199]
    checkpoints = {result.checkpoint.size for result, _ in answers}
    assert checkpoints == {1, 200}
    indices = sorted(result.entries[pos].index for result, pos in answers)
    assert indices == list(range(200))
    # One stored checkpoint per group, each the signed head of exactly the committed tree.
    assert [cp.size for cp in store.checkpoints()] == [1, 200]
    for result, pos in answers:
        assert store.entry(result.entries[pos].index).data == result.entries[pos].data
    store.close()


def test_a_failed_group_fails_every_caller_and_writes_nothing(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    calls = []

    def failing_sign(cp: Checkpoint) -> bytes:
        calls.append(cp.size)
        raise StorageUnavailable("signer offline")

    sequencer = Sequencer(store, KeyRegistry(), failing_sign)
    try:
        futures = [sequencer.submit([_item(i)]) for i in range(20)]
        for f in futures:
            with pytest.raises(StorageUnavailable, match="signer offline"):
                f.result(30)
    finally:
        sequencer.close()
    assert calls and store.size == 0 and store.checkpoints() == []
    store.close()
