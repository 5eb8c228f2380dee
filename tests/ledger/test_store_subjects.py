"""The subjects index: rows inserted per row and cut from one blob inside SQLite agree."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from pathlib import Path

import pytest
from anchorlog.ledger.checkpoint import sign_checkpoint
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.store import _SUBJECTS_IN_SQL, LogStore, PendingEntry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ORIGIN = "test.anchorlog.local/subjects"
SIGNER = NoteSigner.generate(ORIGIN)
# A small pool, so that entries share digests and an entry repeats one.
POOL = [hashlib.sha256(b"pool %d" % i).digest() for i in range(64)]


def _sign(cp):  # type: ignore[no-untyped-def]
    return sign_checkpoint(cp, SIGNER)


def _entry(n: int, direct: list[bytes], batch: list[bytes]) -> PendingEntry:
    envelope = b'{"entry":%d}' % n
    return PendingEntry(
        kind=EntryKind.ATTESTATION, submitter="vendor", envelope=envelope,
        dedup_key=hashlib.sha256(envelope).digest(), subject_digests=tuple(direct),
        batch_digests=b"".join(sorted(set(batch))),
    )


shapes = st.lists(
    st.tuples(
        # Either side of the threshold where rows are cut inside SQLite.
        st.lists(st.sampled_from(POOL), max_size=2 * _SUBJECTS_IN_SQL),
        st.lists(st.sampled_from(POOL), max_size=40),
    ),
    min_size=1, max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=st.lists(shapes, min_size=1, max_size=3))
def test_lookups_match_a_model_of_every_subject(groups: list[list[tuple[list[bytes], list[bytes]]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = LogStore(Path(tmp) / "log.db", origin=ORIGIN)
        expected: dict[bytes, set[int]] = {}
        n = 0
        for group in groups:
            items = []
            for direct, batch in group:
                items.append(_entry(n, direct, batch))
                for digest in [*direct, *batch]:
                    expected.setdefault(digest, set()).add(n)
                n += 1
            store.append(items, now_ms=1, sign=_sign)
        found = store.lookup_many(POOL)
        assert {d: sorted(v) for d, v in expected.items()} == found
        for digest in POOL[:8]:
            assert store.lookup(digest) == sorted(expected.get(digest, ()))
        store.close()


@pytest.mark.parametrize(
    ("direct", "batch"),
    [
        ([*POOL[: _SUBJECTS_IN_SQL - 1], b"\x01" * 31], b""),  # a short digest among many
        ([*POOL[: _SUBJECTS_IN_SQL], b"\x01" * 33], b""),  # a long one, above the threshold
        ([], b"".join(POOL[:3]) + b"\x02" * 5),  # batch blob not a multiple of 32
    ],
)
def test_misshapen_digests_are_refused_with_nothing_written(
    tmp_path: Path, direct: list[bytes], batch: bytes
) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    store.append([_entry(0, [POOL[0]], [])], now_ms=1, sign=_sign)
    bad = PendingEntry(
        kind=EntryKind.ATTESTATION, submitter="vendor", envelope=b"{}", dedup_key=b"k" * 32,
        subject_digests=tuple(direct), batch_digests=batch,
    )
    with pytest.raises(InvalidInput):
        store.append([_entry(1, POOL[5:25], []), bad], now_ms=2, sign=_sign)
    assert store.size == 1
    assert store.lookup_many(POOL) == {POOL[0]: [0]}
    store.close()


def test_a_group_mixing_large_and_merged_bulk_entries_indexes_every_digest(tmp_path: Path) -> None:
    # One batch large enough to be inserted on its own, bulk entries merged into
    # two statements (the first passes the row threshold), and small entries:
    # every digest found under its own entry.
    from anchorlog.ledger.store import _DIRECT_BLOB_ROWS, _MERGED_ROWS

    def digests(tag: bytes, count: int) -> list[bytes]:
        return [hashlib.sha256(b"%s %d" % (tag, i)).digest() for i in range(count)]

    merged_size = _DIRECT_BLOB_ROWS - 1  # the largest entry that is merged
    merged_entries = _MERGED_ROWS // merged_size + 2
    assert (merged_entries - 1) * merged_size >= _MERGED_ROWS
    shapes = [([], digests(b"big", _DIRECT_BLOB_ROWS))]
    shapes += [(digests(b"bulk%d" % n, merged_size), []) for n in range(merged_entries)]
    shapes += [(digests(b"small", _SUBJECTS_IN_SQL), []), ([POOL[0]], [])]
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    store.append([_entry(n, direct, batch) for n, (direct, batch) in enumerate(shapes)], now_ms=1, sign=_sign)
    for index, (direct, batch) in enumerate(shapes):
        every = [*direct, *batch]
        probe = [every[0], every[len(every) // 2], every[-1]]
        assert store.lookup_many(probe) == {d: [index] for d in probe}
    total = sum(len(set(direct)) + len(set(batch)) for direct, batch in shapes)
    store.close()
    conn = sqlite3.connect(tmp_path / "log.db")
    assert conn.execute("SELECT count(*) FROM subjects").fetchone()[0] == total
    conn.close()


def test_merged_rows_keep_entry_indices_of_any_size() -> None:
    # The merged statement carries each row's index as 20 decimal digits.
    from anchorlog.ledger.store import _SCHEMA, LogStore

    conn = sqlite3.connect(":memory:")
    conn.executescript(_SCHEMA)
    runs = [(b"".join(POOL[:3]), 3, 2**63 - 1), (b"".join(POOL[3:5]), 2, 0), (POOL[5], 1, 10**12 + 7)]
    LogStore._insert_merged(conn, runs, 6)
    rows = conn.execute("SELECT digest, idx FROM subjects").fetchall()
    expected = [(d, 2**63 - 1) for d in POOL[:3]] + [(d, 0) for d in POOL[3:5]] + [(POOL[5], 10**12 + 7)]
    assert sorted(rows) == sorted(expected)
    assert all(type(idx) is int for _, idx in rows)
    conn.close()


@settings(max_examples=60, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=5000),
    st.integers(min_value=0, max_value=20_000).map(lambda n: bytes(range(256)) * (n // 256) + b"x" * (n % 256)),
))
def test_the_writers_leaf_hash_is_the_leaf_hash(data: bytes) -> None:
    from anchorlog.ledger.merkle import leaf_hash
    from anchorlog.ledger.store import _leaf_hash_keeping_gil

    assert _leaf_hash_keeping_gil(data) == leaf_hash(data) == hashlib.sha256(b"\x00" + data).digest()


def test_a_utf16_database_indexes_merged_bulk_entries_under_their_own_index(tmp_path: Path) -> None:
    # The merged statement reads indices as text through CAST, which decodes in the
    # file's encoding; a UTF-16 file (made by another tool) inserts entry by entry.
    path = tmp_path / "log.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA encoding = 'UTF-16le'")
    conn.execute("CREATE TABLE made_elsewhere (x)")
    conn.commit()
    conn.close()
    shapes = [
        ([hashlib.sha256(b"%d %d" % (n, i)).digest() for i in range(_SUBJECTS_IN_SQL)], []) for n in range(3)
    ]
    store = LogStore(path, origin=ORIGIN)
    store.append([_entry(n, direct, batch) for n, (direct, batch) in enumerate(shapes)], now_ms=1, sign=_sign)
    for index, (direct, _) in enumerate(shapes):
        assert store.lookup_many(direct) == {d: [index] for d in direct}
    store.close()
