"""log.head on a real SQLite log: written before callers are answered; a failed write acknowledges nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.errors import TamperedStoreError
from anchorlog.ledger.keys import KeyRegistry
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.store import LogStore, PendingEntry, SignedCheckpoint
from anchorlog.server.head import HeadFile, LogBehindHead, check_store_reaches_head
from anchorlog.server.sequencer import SequencedItem, Sequencer

ORIGIN = "test.example/head"


def _item(i: int) -> SequencedItem:
    envelope = b'{"n":%d}' % i
    return SequencedItem(pending=PendingEntry(
        kind=EntryKind.ATTESTATION, submitter="vendor-a", envelope=envelope,
        dedup_key=hashlib.sha256(envelope).digest(),
    ))


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


def test_head_is_durable_before_each_caller_is_answered(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "ledger.db", origin=ORIGIN)
    head = HeadFile(tmp_path)

    def sign(cp: Checkpoint) -> bytes:
        return sign_checkpoint(cp, signer)

    sequencer = Sequencer(store, KeyRegistry(), sign, on_commit=head.write)
    try:
        futures = [sequencer.submit([_item(i)]) for i in range(20)]
        for future in futures:
            ((result, _),) = future.result()  # type: ignore[misc]
            recorded = head.read(signer.verifier())
            assert recorded is not None
            assert recorded.size >= result.checkpoint.size
    finally:
        sequencer.close()
    final = head.read(signer.verifier())
    assert final is not None and final.size == store.size == 20 and final.root_hash == store.root_hash
    check_store_reaches_head(store, final, head.path)  # the live database passes
    store.close()


def test_a_failed_head_write_acknowledges_nothing(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "ledger.db", origin=ORIGIN)

    def sign(cp: Checkpoint) -> bytes:
        return sign_checkpoint(cp, signer)

    def failing_write(cp: SignedCheckpoint) -> None:
        raise OSError("disk full writing log.head")

    sequencer = Sequencer(store, KeyRegistry(), sign, on_commit=failing_write)
    try:
        with pytest.raises(OSError, match="log.head"):
            sequencer.submit([_item(1)]).result()
    finally:
        sequencer.close()
    store.close()


def test_a_database_behind_or_beside_the_head_is_refused(tmp_path: Path, signer: NoteSigner) -> None:
    def sign(cp: Checkpoint) -> bytes:
        return sign_checkpoint(cp, signer)

    ahead = LogStore(tmp_path / "ahead.db", origin=ORIGIN)
    ahead.append([_item(i).pending for i in range(5)], now_ms=1, sign=sign)
    signed = ahead.latest_checkpoint()
    assert signed is not None
    head = HeadFile(tmp_path)
    head.write(signed)
    recorded = head.read(signer.verifier())
    assert recorded is not None

    behind = LogStore(tmp_path / "behind.db", origin=ORIGIN)
    behind.append([_item(i).pending for i in range(3)], now_ms=1, sign=sign)
    with pytest.raises(LogBehindHead, match="holds 3 entries .* at size 5"):
        check_store_reaches_head(behind, recorded, head.path)
    behind.append([_item(i).pending for i in range(10, 13)], now_ms=2, sign=sign)
    with pytest.raises(LogBehindHead, match="tree at size 5 has a different root"):
        check_store_reaches_head(behind, recorded, head.path)

    # A head signed by another key is not trusted as this log's mark.
    other = NoteSigner.generate(ORIGIN)
    with pytest.raises(TamperedStoreError, match="not a checkpoint signed by this log's key"):
        head.read(other.verifier())
    for store in (ahead, behind):
        store.close()
