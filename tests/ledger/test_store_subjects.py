"""The subjects index: rows inserted per row and cut from one blob inside SQLite agree."""

from __future__ import annotations

import hashlib
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
