"""The store's fast paths: cached tree levels and right-edge hashes, batched queries.

Every answer from a fast path is checked against an independent computation
(the RFC 9162 verifier and textbook roots), on a real SQLite file.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from pathlib import Path

import pytest
from anchorlog.ledger.checkpoint import sign_checkpoint
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.errors import TamperedStoreError
from anchorlog.ledger.merkle import inclusion_plan, verify_inclusion
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.store import LogStore, PendingEntry

ORIGIN = "test.example/cache"


def _pending(i: int, *, batch: bytes = b"") -> PendingEntry:
    envelope = b'{"n":%d}' % i
    return PendingEntry(
        kind=EntryKind.ATTESTATION,
        submitter="vendor-a",
        envelope=envelope,
        dedup_key=hashlib.sha256(envelope).digest(),
        subject_digests=() if batch else (hashlib.sha256(b"sample %d" % i).digest(),),
        batch_digests=batch,
    )


@pytest.fixture
def sign():  # type: ignore[no-untyped-def]
    signer = NoteSigner.generate(ORIGIN)
    return lambda cp: sign_checkpoint(cp, signer)


def _grow(store: LogStore, sizes: list[int], sign) -> dict[int, bytes]:  # type: ignore[no-untyped-def]
    roots = {}
    for n in sizes:
        base = store.size
        store.append([_pending(base + i) for i in range(n)], now_ms=0, sign=sign)
        roots[store.size] = store.root_hash
    return roots


@pytest.mark.parametrize("hot_level", [0, 2, 8])
def test_cached_proofs_equal_planned_proofs_and_verify(tmp_path: Path, sign, hot_level: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(hot_level)
    store = LogStore(tmp_path / "log.db", origin=ORIGIN, hot_level=hot_level)
    roots = _grow(store, [rng.choice([1, 2, 3, 5, 8, 13, 64, 100]) for _ in range(60)], sign)
    for size, root in roots.items():
        for _ in range(5):
            index = rng.randrange(size)
            proof = store.inclusion_proof(index, size)
            plan = inclusion_plan(index, size)
            planned = plan.assemble(store._read_nodes(store._reader(), plan.node_ids()))
            assert proof == planned
            verify_inclusion(store.entry(index).leaf_hash, index, size, proof, root)
    store.close()
    # Reopened: nothing cached but the hot levels; old and new sizes still prove.
    reopened = LogStore(tmp_path / "log.db", origin=ORIGIN, hot_level=hot_level)
    for size in rng.sample(sorted(roots), 10) + [reopened.size]:
        index = rng.randrange(size)
        proof = reopened.inclusion_proof(index, size)
        verify_inclusion(reopened.entry(index).leaf_hash, index, size, proof, roots[size])
    reopened.close()


def test_every_leaf_of_a_small_tree(tmp_path: Path, sign) -> None:  # type: ignore[no-untyped-def]
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    for _ in range(70):
        store.append([_pending(store.size)], now_ms=0, sign=sign)
        size, root = store.size, store.root_hash
        for index in range(size):
            verify_inclusion(store.entry(index).leaf_hash, index, size, store.inclusion_proof(index, size), root)
    store.close()


def test_duplicates_found_in_one_batch_and_across_batches(tmp_path: Path, sign) -> None:  # type: ignore[no-untyped-def]
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    first = store.append([_pending(i) for i in range(600)], now_ms=0, sign=sign)
    again = store.append([_pending(i) for i in range(590, 1200)] + [_pending(3)], now_ms=0, sign=sign)
    assert again.duplicate[:10] == (True,) * 10 and not any(again.duplicate[10:-1]) and again.duplicate[-1]
    assert again.entries[0] == first.entries[590]
    assert again.entries[-1] == first.entries[3]
    assert store.size == 1200
    store.close()


def test_lookup_many_and_batched_agree_with_single_queries(tmp_path: Path, sign) -> None:  # type: ignore[no-untyped-def]
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    store.append([_pending(i) for i in range(700)], now_ms=0, sign=sign)
    members = sorted(hashlib.sha256(b"member %d" % i).digest() for i in range(10))
    store.append([_pending(10_000, batch=b"".join(members))], now_ms=0, sign=sign)
    digests = [hashlib.sha256(b"sample %d" % i).digest() for i in range(0, 700, 3)] + members + [b"\x00" * 32]
    many = store.lookup_many(digests)
    assert many == {d: store.lookup(d) for d in digests if store.lookup(d)}
    assert store.lookup_many(digests, below=100) == {d: store.lookup(d, below=100) for d in digests if store.lookup(d, below=100)}
    assert store.batched(range(store.size)) == {700}
    store.close()


def test_missing_recent_entry_is_refused_on_open(tmp_path: Path, sign) -> None:  # type: ignore[no-untyped-def]
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    _grow(store, [40], sign)
    store.close()
    for victim, message in ((17, "entries 17..17 are missing"), (39, "entries 39..39 are missing")):
        copy = tmp_path / f"copy-{victim}.db"
        copy.write_bytes((tmp_path / "log.db").read_bytes())
        conn = sqlite3.connect(copy)
        conn.execute("DROP TRIGGER entries_no_delete")
        conn.execute("DELETE FROM entries WHERE idx = ?", (victim,))
        conn.commit()
        conn.close()
        with pytest.raises(TamperedStoreError, match=message if victim != 39 else "no longer matches"):
            LogStore(copy, origin=ORIGIN)


def test_appends_after_reopen_keep_proving(tmp_path: Path, sign) -> None:  # type: ignore[no-untyped-def]
    store = LogStore(tmp_path / "log.db", origin=ORIGIN, hot_level=1)
    _grow(store, [300], sign)
    store.close()
    store = LogStore(tmp_path / "log.db", origin=ORIGIN, hot_level=1)
    roots = _grow(store, [1, 7, 250], sign)
    for size, root in roots.items():
        for index in (0, size // 2, size - 1):
            verify_inclusion(store.entry(index).leaf_hash, index, size, store.inclusion_proof(index, size), root)
    store.close()


def test_cache_changes_no_answer(tmp_path: Path, sign) -> None:  # type: ignore[no-untyped-def]
    cached = LogStore(tmp_path / "a.db", origin=ORIGIN, hot_level=0)
    plain = LogStore(tmp_path / "b.db", origin=ORIGIN, hot_level=64)
    for store in (cached, plain):
        _grow(store, [5, 9, 33], sign)
    assert cached.root_hash == plain.root_hash
    for size in (5, 14, 47):
        for index in range(size):
            assert cached.inclusion_proof(index, size) == plain.inclusion_proof(index, size)
        assert cached.consistency_proof(3, size) == plain.consistency_proof(3, size)
    cached.close()
    plain.close()


@pytest.mark.parametrize("hot_level", [0, 2])
def test_node_missing_on_disk_is_not_papered_over_by_the_dense_cache(tmp_path: Path, sign, hot_level: int) -> None:  # type: ignore[no-untyped-def]
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    roots = _grow(store, [300], sign)
    store.close()
    conn = sqlite3.connect(tmp_path / "log.db")
    conn.execute("DROP TRIGGER nodes_no_delete")
    conn.execute("DELETE FROM nodes WHERE level = 3 AND idx = 5")  # leaves 40..47, not on the frontier
    conn.commit()
    conn.close()
    store = LogStore(tmp_path / "log.db", origin=ORIGIN, hot_level=hot_level)
    # Proofs that need the missing node are refused; the nodes after it on
    # its level still give right proofs (they are not shifted into its place).
    for index in (32, 39):
        with pytest.raises(TamperedStoreError, match="missing"):
            store.inclusion_proof(index, 300)
    for index in (0, 55, 56, 299):
        verify_inclusion(store.entry(index).leaf_hash, index, 300, store.inclusion_proof(index, 300), roots[300])
    store.close()


def test_the_hot_level_is_chosen_from_the_size() -> None:
    from anchorlog.ledger.store import HOT_LEVEL, HOT_NODES, hot_level_for, nodes_at_or_above

    assert nodes_at_or_above(8, 1) == 4 + 2 + 1 and nodes_at_or_above(7, 1) == 3 + 1 and nodes_at_or_above(1, 1) == 0
    assert [hot_level_for(n) for n in (0, 1, 10**5, 3 * 10**5, 10**6, 10**7, 10**9)] == [0, 0, 0, 1, 2, 6, HOT_LEVEL]
    for size in (10**5, 3 * 10**5, 10**6, 10**7, 3 * 10**7):
        level = hot_level_for(size)
        assert level == HOT_LEVEL or nodes_at_or_above(size, level) <= HOT_NODES
        assert level == 0 or nodes_at_or_above(size, level - 1) > HOT_NODES


def test_a_small_log_proves_from_memory_alone(tmp_path: Path, sign) -> None:  # type: ignore[no-untyped-def]
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    roots = _grow(store, [300, 200, 37], sign)
    store.close()
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)  # reopened: only what load_hot read is cached
    plain = LogStore(tmp_path / "log.db", origin=ORIGIN, hot_level=64)  # nothing cached: all from disk
    assert store._proofs.hot_level == 0
    for size, root in roots.items():
        edges = store._proofs.edges.get(size)
        for index in range(size):
            if edges is not None:
                _, unread = store._path_from_edges(index, size, edges)
                assert unread == []
            proof = store.inclusion_proof(index, size)
            assert proof == plain.inclusion_proof(index, size)
            verify_inclusion(store.entry(index).leaf_hash, index, size, proof, root)
    plain.close()
    store.close()


def test_a_log_outgrowing_the_budget_gives_up_its_lowest_level(
    tmp_path: Path, sign, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    import anchorlog.ledger.store as store_module

    monkeypatch.setattr(store_module, "HOT_NODES", 64)
    monkeypatch.setattr(store_module, "RECENT_LEAVES", 16)
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    assert store._proofs.hot_level == 0
    roots = _grow(store, [40] * 12, sign)
    # 480 leaves: levels 0 up hold 956 nodes, 1 up 476 and 2 up 236, over twice 64; 3 up hold 116.
    assert store._proofs.hot_level == 3
    assert store._proofs.levels[0] == store._proofs.levels[1] == store._proofs.levels[2] == []
    rng = random.Random(5)
    for size, root in roots.items():
        for index in rng.sample(range(size), min(size, 12)):
            proof = store.inclusion_proof(index, size)
            verify_inclusion(store.entry(index).leaf_hash, index, size, proof, root)
        batch = store.inclusion_proofs(range(size), size)
        for index, proof in batch.items():
            assert proof == store.inclusion_proof(index, size)
    store.close()


@pytest.mark.parametrize("half", ["level emptied first", "hot level raised first"])
def test_a_reader_caught_while_a_level_is_given_up_still_gets_every_proof_right(
    tmp_path: Path, sign, half: str  # type: ignore[no-untyped-def]
) -> None:
    # _give_up_lowest_level makes two writes, without a lock: a reader may see either alone.
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    roots = _grow(store, [137, 200, 200], sign)
    plain = LogStore(tmp_path / "log.db", origin=ORIGIN, hot_level=64)  # nothing cached: all from disk
    cache = store._proofs
    lowest = cache.hot_level
    if half == "level emptied first":
        cache.levels[lowest] = []
    else:
        cache.hot_level = lowest + 1
    for size, root in roots.items():
        for index in range(0, size, 3):
            proof = store.inclusion_proof(index, size)
            assert proof == plain.inclusion_proof(index, size)
            verify_inclusion(store.entry(index).leaf_hash, index, size, proof, root)
        assert store.inclusion_proofs(range(size), size) == plain.inclusion_proofs(range(size), size)
    plain.close()
    store.close()
