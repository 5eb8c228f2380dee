"""Idempotent appends: the dedup key's two homes, and version-1 files migrated in place."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from anchorlog.ledger.checkpoint import sign_checkpoint
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.errors import StorageUnavailable
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.store import (
    _KEYED_SUBJECT_ROWS,
    _SUBJECTS_IN_SQL,
    SCHEMA_VERSION,
    LogStore,
    PendingEntry,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ORIGIN = "test.anchorlog.local/dedup"
SIGNER = NoteSigner.generate(ORIGIN)
POOL = [hashlib.sha256(b"dedup pool %d" % i).digest() for i in range(8)]
# Written by the version-1 store (commit be00d7e): a key event, one- and
# two-sample entries, 20 subjects (the in-SQL path) and a batch (see V1_ITEMS).
V1_FILE = Path(__file__).parent / "data" / "schema-v1.db"
V1_ORIGIN = "test.anchorlog.local/schema-v1"
V1_SIGNER = NoteSigner.from_seed(V1_ORIGIN, b"\x07" * 32)


def _sign(cp):  # type: ignore[no-untyped-def]
    return sign_checkpoint(cp, SIGNER)


def _sign_v1(cp):  # type: ignore[no-untyped-def]
    return sign_checkpoint(cp, V1_SIGNER)


def _item(n: int) -> PendingEntry:
    """Entry ``n``: its shape cycles through every way subjects are stored."""
    envelope = b'{"entry":%d}' % n
    shape = n % 5
    subjects: tuple[bytes, ...] = ()
    batch = b""
    if shape == 1:
        subjects = (POOL[n % 8],)
    elif shape == 2:  # a repeated digest, smallest not first
        subjects = (POOL[(n + 1) % 8], POOL[n % 8], POOL[(n + 1) % 8])
    elif shape == 3:  # at the threshold: inserted from one blob, and naming a pool digest
        subjects = (POOL[n % 8], *(hashlib.sha256(b"many %d %d" % (n, i)).digest() for i in range(_SUBJECTS_IN_SQL - 1)))
    elif shape == 4:  # a batch entry whose batch digests include pool digests
        subjects = (hashlib.sha256(b"root %d" % n).digest(),)
        batch = b"".join(sorted({POOL[n % 8], POOL[(n + 3) % 8]}))
    return PendingEntry(
        kind=EntryKind.ATTESTATION, submitter="vendor", envelope=envelope,
        dedup_key=hashlib.sha256(envelope).digest(), subject_digests=subjects, batch_digests=batch,
    )


def _keyed_rows_are_first_rows(path: Path) -> None:
    """Every key on a subjects row is among its digest's first rows (what a check reads)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT digest, idx, dedup FROM subjects ORDER BY digest, idx").fetchall()
    finally:
        conn.close()
    position: dict[bytes, int] = {}
    for digest, _, key in rows:
        place = position[digest] = position.get(digest, -1) + 1
        if key is not None:
            assert place < _KEYED_SUBJECT_ROWS, "a key sits beyond the rows a duplicate check reads"


# Values 0..79 over a pool of 8 digests: popular digests pass _KEYED_SUBJECT_ROWS,
# and long groups cross the statements' chunk sizes.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.lists(
        st.one_of(
            st.lists(st.integers(0, 79), min_size=1, max_size=10),
            st.lists(st.integers(0, 79), min_size=100, max_size=160),
        ),
        min_size=1, max_size=4,
    )
)
def test_every_repeat_maps_to_the_first_entry_with_its_key(groups: list[list[int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = LogStore(Path(tmp) / "log.db", origin=ORIGIN)
        first: dict[int, int] = {}
        for group in groups:
            result = store.append([_item(n) for n in group], now_ms=1, sign=_sign)
            for n, entry, duplicate in zip(group, result.entries, result.duplicate, strict=True):
                assert duplicate == (n in first)
                first.setdefault(n, entry.index)
                assert entry.index == first[n]
                assert entry.data == store.entry(first[n]).data
        assert store.size == len(first)
        store.close()
        _keyed_rows_are_first_rows(Path(tmp) / "log.db")


def test_a_popular_sample_keeps_later_keys_in_the_dedup_table(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = LogStore(path, origin=ORIGIN)
    popular = POOL[0]

    def one(n: int) -> PendingEntry:
        envelope = b'{"popular":%d}' % n
        return PendingEntry(
            kind=EntryKind.ATTESTATION, submitter="vendor", envelope=envelope,
            dedup_key=hashlib.sha256(envelope).digest(), subject_digests=(popular,),
        )

    total = 3 * _KEYED_SUBJECT_ROWS
    store.append([one(n) for n in range(5)], now_ms=1, sign=_sign)
    store.append([one(n) for n in range(5, total)], now_ms=2, sign=_sign)
    again = store.append([one(n) for n in range(total - 1, -1, -1)], now_ms=3, sign=_sign)
    assert again.duplicate == (True,) * total
    assert [e.index for e in again.entries] == list(range(total - 1, -1, -1))
    assert store.size == total
    store.close()
    conn = sqlite3.connect(path)
    tagged = [i for (i,) in conn.execute("SELECT idx FROM subjects WHERE dedup IS NOT NULL ORDER BY idx")]
    in_table = [i for (i,) in conn.execute("SELECT idx FROM dedup ORDER BY idx")]
    conn.close()
    assert tagged == list(range(_KEYED_SUBJECT_ROWS))
    assert in_table == list(range(_KEYED_SUBJECT_ROWS, total))


def test_a_few_subjects_carry_the_key_on_the_smallest_digest_row(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "log.db", origin=ORIGIN)
    items = [_item(n) for n in range(4)]
    store.append(items, now_ms=1, sign=_sign)
    store.close()
    conn = sqlite3.connect(tmp_path / "log.db")
    tagged = conn.execute("SELECT idx, digest, dedup FROM subjects WHERE dedup IS NOT NULL ORDER BY idx").fetchall()
    in_table = conn.execute("SELECT idx, key FROM dedup ORDER BY idx").fetchall()
    conn.close()
    assert tagged == [
        (1, min(items[1].subject_digests), items[1].dedup_key),
        (2, min(items[2].subject_digests), items[2].dedup_key),
    ]
    # No subjects, or enough to be cut inside SQLite: the dedup table.
    assert in_table == [(0, items[0].dedup_key), (3, items[3].dedup_key)]


def _v1_items() -> list[PendingEntry]:
    """The pending entries V1_FILE was built from, in order."""

    def item(n: int, subjects: list[bytes], batch: bytes = b"", kind: EntryKind = EntryKind.ATTESTATION) -> PendingEntry:
        envelope = b'{"schema-v1 entry":%d}' % n
        return PendingEntry(
            kind=kind, submitter="vendor", envelope=envelope, dedup_key=hashlib.sha256(envelope).digest(),
            subject_digests=tuple(subjects), batch_digests=batch,
        )

    def d(i: int) -> bytes:
        return hashlib.sha256(b"v1 sample %d" % i).digest()

    return [
        item(0, [], kind=EntryKind.KEY_EVENT), item(1, [d(1)]), item(2, [d(2), d(3)]),
        item(3, [d(i) for i in range(10, 30)]), item(4, [d(4)], b"".join(sorted(d(i) for i in range(40, 45)))),
        item(5, [d(1)]),
    ]


def _schema_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])
    finally:
        conn.close()


def test_a_version_1_file_is_migrated_and_still_refuses_its_old_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copy(V1_FILE, path)
    assert _schema_version(path) == 1
    v1_items = _v1_items()
    store = LogStore(path, origin=V1_ORIGIN)
    assert _schema_version(path) == SCHEMA_VERSION == 2
    before = store.latest_checkpoint()
    again = store.append(v1_items, now_ms=3000, sign=_sign_v1)
    assert again.duplicate == (True,) * 6
    assert [e.index for e in again.entries] == list(range(6))
    assert store.size == 6
    assert again.checkpoint == before
    # New entries use the new layout; their repeats are found there, and the
    # old subjects are still looked up.
    new = [_item(n) for n in (1, 2)]
    assert store.append(new, now_ms=4000, sign=_sign_v1).duplicate == (False, False)
    assert store.append([new[1], v1_items[1], new[0]], now_ms=5000, sign=_sign_v1).duplicate == (True,) * 3
    assert store.size == 8
    assert store.lookup(hashlib.sha256(b"v1 sample 1").digest()) == [1, 5]
    assert store.lookup(hashlib.sha256(b"v1 sample 42").digest()) == [4]
    store.close()
    reopened = LogStore(path, origin=V1_ORIGIN)
    assert reopened.size == 8 and _schema_version(path) == 2
    reopened.close()


def test_a_read_only_version_1_file_is_read_without_migrating(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copy(V1_FILE, path)
    path.chmod(0o444)
    store = LogStore(path, origin=V1_ORIGIN)
    assert store.size == 6
    assert store.lookup(hashlib.sha256(b"v1 sample 12").digest()) == [3]
    # Old entries are still recognised; a new one is refused as a write, nothing else.
    assert store.append(_v1_items()[1:3], now_ms=3000, sign=_sign_v1).duplicate == (True, True)
    with pytest.raises(StorageUnavailable, match="readonly|read-only"):
        store.append([_item(1)], now_ms=3000, sign=_sign_v1)
    assert store.size == 6
    store.close()
    assert _schema_version(path) == 1


def test_bulk_entries_earlier_in_the_group_count_towards_a_digests_first_rows(tmp_path: Path) -> None:
    # Bulk entries (inserted from a blob) naming D, then a one-sample entry of D,
    # all in one group: its key must not land beyond the rows a check reads.
    path = tmp_path / "log.db"
    store = LogStore(path, origin=ORIGIN)
    d = POOL[5]

    def bulk(n: int) -> PendingEntry:
        envelope = b'{"bulk":%d}' % n
        others = tuple(hashlib.sha256(b"bulk %d %d" % (n, i)).digest() for i in range(_SUBJECTS_IN_SQL))
        return PendingEntry(
            kind=EntryKind.ATTESTATION, submitter="vendor", envelope=envelope,
            dedup_key=hashlib.sha256(envelope).digest(), subject_digests=(d, *others),
        )

    single_envelope = b'{"single":1}'
    single = PendingEntry(
        kind=EntryKind.ATTESTATION, submitter="vendor", envelope=single_envelope,
        dedup_key=hashlib.sha256(single_envelope).digest(), subject_digests=(d,),
    )
    store.append([*(bulk(n) for n in range(_KEYED_SUBJECT_ROWS)), single], now_ms=1, sign=_sign)
    again = store.append([single], now_ms=2, sign=_sign)
    assert again.duplicate == (True,)
    assert again.entries[0].index == _KEYED_SUBJECT_ROWS
    assert store.size == _KEYED_SUBJECT_ROWS + 1
    store.close()
    _keyed_rows_are_first_rows(path)
