"""The SQLite log store: a real file, real transactions, proofs against recomputed roots."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from pathlib import Path

import pytest
from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.entry import ZERO_HASH, EntryKind, decode_entry
from anchorlog.ledger.errors import InvalidInput, NotFound, TamperedStoreError
from anchorlog.ledger.merkle import verify_consistency, verify_inclusion
from anchorlog.ledger.note import NoteSigner, open_note
from anchorlog.ledger.store import LogStore, PendingEntry

ORIGIN = "test.example/log"


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH from leaf hashes, the textbook recursion (independent of the store)."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def _levels_root(hashes: list[bytes]) -> bytes:
    """Same root, computed level by level (fast enough for 10k leaves)."""
    level = list(hashes)
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0] if level else hashlib.sha256(b"").digest()


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


def _sign(signer: NoteSigner):  # type: ignore[no-untyped-def]
    return lambda cp: sign_checkpoint(cp, signer)


def _pending(i: int, digest: bytes | None = None) -> PendingEntry:
    envelope = b'{"n":%d}' % i
    return PendingEntry(
        kind=EntryKind.ATTESTATION,
        submitter="vendor-a",
        envelope=envelope,
        dedup_key=hashlib.sha256(envelope).digest(),
        subject_digests=(digest or hashlib.sha256(b"sample %d" % i).digest(),),
    )


def test_ten_thousand_entries_prove_against_recomputed_roots(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    rng = random.Random(6962)
    total = 10_240
    appended = 0
    while appended < total:
        n = min(rng.choice([1, 7, 64, 500, 1500]), total - appended)
        result = store.append([_pending(appended + i) for i in range(n)], now_ms=1_700_000_000_000, sign=_sign(signer))
        appended += n
        assert result.checkpoint.size == appended
    store.close()

    # Reopen: state is loaded from the file, not from memory.
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    assert store.size == total
    leaves = store.leaf_hashes(0, total)
    for i, stored in enumerate(store.entries(0, total)):
        assert _leaf(stored.data) == leaves[i]
        entry = decode_entry(stored.data)
        assert entry.index == i
        assert entry.previous_hash == (ZERO_HASH if i == 0 else leaves[i - 1])
    assert store.root_hash == _levels_root(leaves)
    latest = store.latest_checkpoint()
    assert latest is not None and latest.root_hash == store.root_hash
    Checkpoint.parse(open_note(latest.note, [signer.verifier()]).text)

    sizes = sorted(rng.sample(range(1, total + 1), 25)) + [total]
    roots = {size: _levels_root(leaves[:size]) for size in sizes}
    for size in sizes:
        assert store.root_at(size) == roots[size]
        for index in rng.sample(range(size), min(size, 8)):
            proof = store.inclusion_proof(index, size)
            assert len(proof) <= size.bit_length() + 1
            verify_inclusion(leaves[index], index, size, proof, roots[size])
    for _ in range(60):
        old, new = sorted(rng.sample(sizes, 2))
        verify_consistency(old, new, roots[old], roots[new], store.consistency_proof(old, new))
    store.close()


def test_small_roots_match_textbook_recursion(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    for i in range(40):
        store.append([_pending(i)], now_ms=1, sign=_sign(signer))
        leaves = store.leaf_hashes(0, i + 1)
        assert store.root_hash == _mth(leaves)


def test_duplicates_map_to_the_original_entry(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    first = store.append([_pending(1), _pending(2)], now_ms=1, sign=_sign(signer))
    again = store.append([_pending(2), _pending(3), _pending(3)], now_ms=2, sign=_sign(signer))
    assert again.duplicate == (True, False, True)
    assert again.entries[0] == first.entries[1]
    assert again.entries[1] == again.entries[2]
    assert store.size == 3


def test_digest_index_and_lookup(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    shared = hashlib.sha256(b"shared").digest()
    store.append([_pending(0, shared), _pending(1), _pending(2, shared)], now_ms=1, sign=_sign(signer))
    assert store.lookup(shared) == [0, 2]
    assert store.lookup(shared, below=2) == [0]
    assert store.lookup(hashlib.sha256(b"nothing").digest()) == []


def test_append_only_at_the_database_level(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    store.append([_pending(0), _pending(1)], now_ms=1, sign=_sign(signer))
    conn = sqlite3.connect(tmp_path / "log.db")
    for statement in (
        "UPDATE entries SET data = x'00' WHERE idx = 0",
        "DELETE FROM entries WHERE idx = 1",
        "DELETE FROM checkpoints",
        "UPDATE nodes SET hash = x'00'",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    conn.close()


def test_failed_batch_writes_nothing(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    store.append([_pending(0)], now_ms=1, sign=_sign(signer))
    before = (store.size, store.root_hash, store.latest_checkpoint())

    def broken_signer(cp: Checkpoint) -> bytes:
        raise RuntimeError("signing key unavailable")

    with pytest.raises(RuntimeError):
        store.append([_pending(1), _pending(2)], now_ms=2, sign=broken_signer)
    assert (store.size, store.root_hash, store.latest_checkpoint()) == before
    store.close()
    reopened = LogStore(tmp_path / "log.db", origin=ORIGIN)
    assert reopened.size == 1
    assert reopened.lookup(_pending(1).subject_digests[0]) == []


def test_bad_proof_arguments(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    store.append([_pending(i) for i in range(5)], now_ms=1, sign=_sign(signer))
    with pytest.raises(InvalidInput):
        store.inclusion_proof(5, 5)
    with pytest.raises(InvalidInput):
        store.inclusion_proof(0, 6)
    with pytest.raises(InvalidInput):
        store.consistency_proof(4, 3)
    with pytest.raises(NotFound):
        store.entry(99)


def test_wrong_origin_is_refused(tmp_path: Path, signer: NoteSigner) -> None:
    LogStore(tmp_path / "log.db", origin=ORIGIN).close()
    with pytest.raises(InvalidInput, match="belongs to log"):
        LogStore(tmp_path / "log.db", origin="other.example/log")


def test_edited_entry_is_detected_on_open(tmp_path: Path, signer: NoteSigner) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    store.append([_pending(i) for i in range(10)], now_ms=1, sign=_sign(signer))
    store.close()
    conn = sqlite3.connect(tmp_path / "log.db")
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET data = data || x'00' WHERE idx = 4")
    conn.commit()
    conn.close()
    with pytest.raises(TamperedStoreError, match="entry 4"):
        LogStore(tmp_path / "log.db", origin=ORIGIN)
