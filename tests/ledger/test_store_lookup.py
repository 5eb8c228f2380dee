"""The store's batched lookup reads answer exactly like the one-at-a-time reads.

Real SQLite files; proofs are also checked with the RFC 9162 verifier.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from anchorlog.ledger.checkpoint import sign_checkpoint
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.merkle import verify_inclusion
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.store import LogStore, PendingEntry

ORIGIN = "test.example/lookup"


def _digest(i: int) -> bytes:
    return hashlib.sha256(b"sample %d" % i).digest()


def _attestation(n: int, subjects: tuple[bytes, ...], batch: bytes = b"") -> PendingEntry:
    envelope = b'{"n":%d}' % n
    return PendingEntry(
        kind=EntryKind.ATTESTATION, submitter="vendor-a", envelope=envelope,
        dedup_key=hashlib.sha256(envelope).digest(), subject_digests=subjects, batch_digests=batch,
    )


def _revocation(n: int, targets: tuple[int, ...]) -> PendingEntry:
    envelope = b'{"revoke":%d}' % n
    return PendingEntry(
        kind=EntryKind.REVOCATION, submitter="vendor-a", envelope=envelope,
        dedup_key=hashlib.sha256(envelope).digest(), revokes=targets,
    )


@pytest.mark.parametrize("hot_level", [0, 3, 8])
def test_inclusion_proofs_equal_single_proofs(tmp_path: Path, hot_level: int) -> None:
    signer = NoteSigner.generate(ORIGIN)
    store = LogStore(tmp_path / "log.db", origin=ORIGIN, hot_level=hot_level)
    rng = random.Random(hot_level)
    sizes = []
    for _ in range(8):
        store.append(
            [_attestation(store.size + i, (_digest(store.size + i),)) for i in range(rng.randrange(1, 150))],
            now_ms=0, sign=lambda cp: sign_checkpoint(cp, signer),
        )
        sizes.append((store.size, store.root_hash))
    for size, root in [*sizes[-3:], sizes[0]]:
        wanted = rng.sample(range(size), min(size, 300)) + [0, size - 1]
        proofs = store.inclusion_proofs(wanted, size)
        assert sorted(proofs) == sorted(set(wanted))
        for index in set(wanted):
            assert proofs[index] == store.inclusion_proof(index, size)
            verify_inclusion(store.entry(index).leaf_hash, index, size, proofs[index], root)
    assert store.inclusion_proofs([], store.size) == {}
    with pytest.raises(InvalidInput):
        store.inclusion_proofs([0, store.size], store.size)
    store.close()


@pytest.mark.parametrize("hot_level", [0, 3, 8])
def test_runs_of_neighbours_are_proved_like_single_leaves(tmp_path: Path, hot_level: int) -> None:
    """Receipts ask for a group's new leaves together: runs of neighbours take one walk
    of the tree when every node is in memory, else the single-leaf path."""
    signer = NoteSigner.generate(ORIGIN)
    path = tmp_path / "log.db"
    store = LogStore(path, origin=ORIGIN, hot_level=hot_level)
    rng = random.Random(hot_level)
    groups = []
    for _ in range(6):
        begin = store.size
        store.append(
            [_attestation(store.size + i, (_digest(store.size + i),)) for i in range(rng.randrange(1, 300))],
            now_ms=0, sign=lambda cp: sign_checkpoint(cp, signer),
        )
        groups.append((begin, store.size, store.root_hash))

    def check(store: LogStore, wanted: list[int], size: int, root: bytes) -> None:
        proofs = store.inclusion_proofs(wanted, size)
        assert sorted(proofs) == sorted(set(wanted))
        for index in set(wanted):
            assert proofs[index] == store.inclusion_proof(index, size)
            verify_inclusion(store.entry(index).leaf_hash, index, size, proofs[index], root)

    begin, end, root = groups[-1]
    # The newest group's nodes are all in memory: its receipts come from the walk.
    if end - begin >= 2:
        assert store._walk_range(begin, end, end, store._proofs.edges[end]) is not None
    check(store, list(range(begin, end)), end, root)
    # Runs across group boundaries, from the first leaf, short runs and lone leaves mixed.
    for size, at_size in [(end, root), (groups[-2][1], groups[-2][2])]:
        wanted = [*range(min(size, 40)), *range(size // 2, size // 2 + 9), size - 1, size // 3]
        wanted += rng.sample(range(size), min(size, 30))
        check(store, wanted, size, at_size)
    store.close()
    # Reopened, only the levels from hot_level up are in memory: below it the
    # walk cannot run, and the same answers come from the single-leaf path.
    store = LogStore(path, origin=ORIGIN, hot_level=hot_level)
    if end - begin >= 2 and hot_level > 0:
        assert store._walk_range(begin, end, end, store._proofs.edges[end]) is None
    check(store, list(range(begin, end)), end, root)
    store.close()


def test_runs_whose_nodes_left_memory_while_open_fall_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest leaves' nodes below hot_level are kept for a bounded number of
    leaves: a run whose left neighbours' nodes were dropped takes the single-leaf
    path, with the same answers."""
    import anchorlog.ledger.store as store_module

    monkeypatch.setattr(store_module, "RECENT_LEAVES", 100)
    signer = NoteSigner.generate(ORIGIN)
    store = LogStore(tmp_path / "log.db", origin=ORIGIN, hot_level=3)
    for _ in range(3):
        store.append(
            [_attestation(store.size + i, (_digest(store.size + i),)) for i in range(70)],
            now_ms=0, sign=lambda cp: sign_checkpoint(cp, signer),
        )
    size, root = store.size, store.root_hash  # 210: only the newest group's low nodes are kept
    edges = store._proofs.edges[size]
    # Leaves 144-159 need low nodes of the newest group only (levels from 3 up are all kept).
    assert store._walk_range(144, 160, size, edges) is not None
    assert store._walk_range(64, 74, size, edges) is None  # low nodes of dropped groups
    proofs = store.inclusion_proofs([*range(60, 80), *range(140, 210)], size)
    for index, proof in proofs.items():
        assert proof == store.inclusion_proof(index, size)
        verify_inclusion(store.entry(index).leaf_hash, index, size, proof, root)
    store.close()


def test_lookup_hits_flags_batches_and_revocations(tmp_path: Path) -> None:
    signer = NoteSigner.generate(ORIGIN)
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)

    def sign(cp):  # type: ignore[no-untyped-def]
        return sign_checkpoint(cp, signer)

    batch = b"".join(sorted(_digest(i) for i in range(100, 110)))
    store.append([_attestation(i, (_digest(i),)) for i in range(5)], now_ms=0, sign=sign)  # 0..4
    store.append([_attestation(5, (bytes(32),), batch=batch)], now_ms=0, sign=sign)  # 5: batch root
    store.append([_attestation(6, (_digest(1), _digest(100)))], now_ms=0, sign=sign)  # 6: names 1 again
    before_revocation = store.size
    store.append([_revocation(7, (1,))], now_ms=0, sign=sign)  # 7 revokes 1
    asked = [_digest(i) for i in (0, 1, 2, 100, 105, 999)] + [_digest(1)]
    for below in (before_revocation, store.size, 6):
        hits = store.lookup_hits(asked, below=below)
        plain = store.lookup_many(asked, below=below)
        assert {d: [h.index for h in found] for d, found in hits.items()} == plain
        for found in hits.values():
            for h in found:
                assert h.batched == (h.index in store.batched([h.index]))
                assert h.maybe_revoked == bool(store.revocations([h.index]))
    hits = store.lookup_hits(asked)
    assert [h.index for h in hits[_digest(1)]] == [1, 6]
    assert hits[_digest(1)][0].maybe_revoked and not hits[_digest(1)][1].maybe_revoked
    assert [(h.index, h.batched) for h in hits[_digest(105)]] == [(5, True)]
    assert _digest(999) not in hits
    store.close()
