"""`mirror_log` against logs served straight from real stores, including forked ones.

An honest server cannot present a fork; two real log files signed with one key
can, which is what a compromised log would show an auditor.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from anchorlog.client.audit.findings import Check
from anchorlog.client.audit.mirror import commits_to_batch, mirror_log
from anchorlog.client.audit.verify import verify_mirror
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.note import NoteSigner, NoteVerifier
from anchorlog.ledger.predicates import Claim
from anchorlog.ledger.store import LogStore
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.client.audit_log import ORIGIN, LogBuilder


@dataclass
class StoreSource:
    """Serves a log from its store with the service's paging (here: at most 7 per page)."""

    store: LogStore
    requests: int = 0

    def latest_raw_checkpoint(self) -> bytes:
        latest = self.store.latest_checkpoint()
        assert latest is not None
        return latest.note

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        return self.store.consistency_proof(first_size, second_size)

    def raw_entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        self.requests += 1
        return [(e.index, e.data) for e in self.store.entries(start, min(end, start + 7))]

    def batch_digests(self, entry_index: int) -> bytes:
        return self.store.batch_digests(entry_index)


def _grow(log: LogBuilder, count: int, actor: str = "r") -> None:
    key = log.vendor("acme")
    for i in range(count):
        log.attest("acme", key, [f"{actor}{i}"], Claim.HUMAN_VALIDATED, actor)
    log.attest_batch("acme", key, [f"{actor}-batch-{i}" for i in range(20)], Claim.HUMAN_VALIDATED, actor)


def test_paged_mirror_then_incremental(tmp_path: Path) -> None:
    log = LogBuilder(tmp_path / "log.db")
    try:
        _grow(log, 10)
        source = StoreSource(log.store)
        verifier = NoteVerifier.from_vkey(log.log_key)
        first = mirror_log(source, tmp_path / "m.db", verifier, page_size=5)
        assert first.findings.total == 0 and (first.fetched, first.size) == (13, 13)
        assert source.requests == 3  # pages of 5, 5, 3
        key = log.vendor("beta")
        log.attest("beta", key, ["late"], Claim.HUMAN_CREATED, "q")
        second = mirror_log(source, tmp_path / "m.db", verifier, page_size=100)
        assert second.findings.total == 0 and (second.previous_size, second.fetched) == (13, 3)
        assert source.requests == 4  # one more page, capped at 7 by the source
    finally:
        log.close()
    result = verify_mirror(tmp_path / "m.db", verifier)
    assert result.findings.total == 0 and result.entries == 16


def test_forked_log_is_caught_and_its_checkpoint_not_stored(tmp_path: Path) -> None:
    signer = NoteSigner.generate(ORIGIN)
    honest, fork = LogBuilder(tmp_path / "a.db", signer=signer), LogBuilder(tmp_path / "b.db", signer=signer)
    try:
        _grow(honest, 2, "h")
        _grow(fork, 4, "f")
        verifier = NoteVerifier.from_vkey(honest.log_key)
        assert mirror_log(StoreSource(honest.store), tmp_path / "m.db", verifier).findings.total == 0
        result = mirror_log(StoreSource(fork.store), tmp_path / "m.db", verifier)
    finally:
        honest.close()
        fork.close()
    checks = {(f.check, f.index) for f in result.findings.findings}
    assert (Check.CHECKPOINT_CONSISTENCY, None) in checks
    # The first entry the fork appended does not chain to what the mirror holds.
    assert (Check.HASH_CHAIN, 5) in checks
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert [r[0] for r in conn.execute("SELECT size FROM checkpoints")] == [5]


def test_rolled_back_log_is_caught(tmp_path: Path) -> None:
    signer = NoteSigner.generate(ORIGIN)
    big, small = LogBuilder(tmp_path / "a.db", signer=signer), LogBuilder(tmp_path / "b.db", signer=signer)
    try:
        _grow(big, 3)
        _grow(small, 1)
        verifier = NoteVerifier.from_vkey(big.log_key)
        mirror_log(StoreSource(big.store), tmp_path / "m.db", verifier)
        result = mirror_log(StoreSource(small.store), tmp_path / "m.db", verifier)
    finally:
        big.close()
        small.close()
    assert [(f.check, f.details) for f in result.findings.findings] == [
        (Check.CHECKPOINT_ROLLBACK, (("latest_size", 4), ("mirrored_size", 6)))
    ]
    assert result.fetched == 0


class _Interrupt(Exception):
    pass


class _InterruptFirstPage:
    def update(self, n: int) -> None:
        raise _Interrupt()

    def close(self) -> None:
        pass


def test_rollback_below_an_interrupted_mirror_is_caught(tmp_path: Path) -> None:
    """Entries mirrored before an interruption count, though no checkpoint was stored yet."""
    signer = NoteSigner.generate(ORIGIN)
    big, small = LogBuilder(tmp_path / "a.db", signer=signer), LogBuilder(tmp_path / "b.db", signer=signer)
    try:
        _grow(big, 12)
        _grow(small, 1)
        verifier = NoteVerifier.from_vkey(big.log_key)
        with pytest.raises(_Interrupt):
            mirror_log(StoreSource(big.store), tmp_path / "m.db", verifier, page_size=5,
                       progress=lambda total, initial: _InterruptFirstPage())
        result = mirror_log(StoreSource(small.store), tmp_path / "m.db", verifier)
    finally:
        big.close()
        small.close()
    assert [(f.check, f.details) for f in result.findings.findings] == [
        (Check.CHECKPOINT_ROLLBACK, (("latest_size", 4), ("mirrored_size", 5)))
    ]


def test_edited_mirror_is_caught_before_fetching(tmp_path: Path) -> None:
    log = LogBuilder(tmp_path / "log.db")
    try:
        _grow(log, 2)
        verifier = NoteVerifier.from_vkey(log.log_key)
        mirror_log(StoreSource(log.store), tmp_path / "m.db", verifier)
        with sqlite3.connect(tmp_path / "m.db") as conn:
            conn.execute("UPDATE tree_state SET frontier = ?", (bytes(32) * 2,))
        source = StoreSource(log.store)
        result = mirror_log(source, tmp_path / "m.db", verifier)
    finally:
        log.close()
    assert [(f.check, f.index) for f in result.findings.findings] == [(Check.CHECKPOINT_ROOT, None)]
    assert source.requests == 0


def test_mirror_made_with_another_key_is_refused(tmp_path: Path) -> None:
    log = LogBuilder(tmp_path / "log.db")
    try:
        _grow(log, 1)
        mirror_log(StoreSource(log.store), tmp_path / "m.db", NoteVerifier.from_vkey(log.log_key))
        other = NoteSigner.generate(ORIGIN).verifier()
        with pytest.raises(InvalidInput, match="verifier_key"):
            mirror_log(StoreSource(log.store), tmp_path / "m.db", other)
        with pytest.raises(InvalidInput, match="page_size"):
            mirror_log(StoreSource(log.store), tmp_path / "m.db", other, page_size=0)
    finally:
        log.close()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(predicate=st.dictionaries(st.sampled_from(["batch", "claim", "bätch", "x"]), _json_values, max_size=4),
       ascii_only=st.booleans())
def test_batch_detection_matches_the_statement(predicate: dict[str, object], ascii_only: bool) -> None:
    # ensure_ascii spells keys with \\u escapes: the pre-check must not be fooled by spelling.
    payload = json.dumps({"_type": "t", "predicate": predicate}, ensure_ascii=ascii_only).encode()
    if ascii_only and "batch" in predicate:
        payload = payload.replace(b'"batch"', b'"\\u0062atch"')
    envelope = json.dumps({"payload": base64.b64encode(payload).decode(), "payloadType": "x"}).encode()
    assert commits_to_batch(envelope) == ("batch" in predicate)
    assert commits_to_batch(envelope[:-1]) is False
