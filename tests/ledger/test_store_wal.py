"""The WAL is copied back into the database by a background checkpoint, and stays bounded.

Real SQLite files; a store with a small checkpoint threshold so a few appends cross it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.store import WAL_HARD_LIMIT_FACTOR, LogStore

from tests.ledger.test_store import ORIGIN, _pending, _sign

THRESHOLD_PAGES = 64


def _checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "anchorlog-wal-checkpoint"]


def _page_size(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def test_small_commits_are_checkpointed_once_per_threshold_of_wal_not_after_each(tmp_path: Path) -> None:
    signer = NoteSigner.generate(ORIGIN)
    db = tmp_path / "log.db"
    store = LogStore(db, origin=ORIGIN, wal_checkpoint_pages=THRESHOLD_PAGES)
    wal_frames = []
    for i in range(300):
        store.append([_pending(i)], now_ms=1_700_000_000_000, sign=_sign(signer))
        wal_frames.append((tmp_path / "log.db-wal").stat().st_size)
        time.sleep(0.002)
    done = store.background_checkpoints
    store.close()
    # A one-entry commit writes a few pages: the WAL crosses 64 pages every few
    # dozen commits. A checkpoint after every commit would be one per commit.
    assert 1 <= done <= 300 // 8, done
    assert max(wal_frames) <= WAL_HARD_LIMIT_FACTOR * THRESHOLD_PAGES * _page_size(db)


def test_appends_past_the_threshold_are_checkpointed_in_the_background_and_the_wal_stays_bounded(
    tmp_path: Path,
) -> None:
    signer = NoteSigner.generate(ORIGIN)
    db = tmp_path / "log.db"
    store = LogStore(db, origin=ORIGIN, wal_checkpoint_pages=THRESHOLD_PAGES)
    page = _page_size(db)
    wal = tmp_path / "log.db-wal"
    biggest = 0
    main_file_before = db.stat().st_size
    for group in range(40):
        store.append([_pending(group * 200 + i) for i in range(200)], now_ms=1_700_000_000_000, sign=_sign(signer))
        biggest = max(biggest, wal.stat().st_size)
        time.sleep(0.01)  # room for the checkpoint thread between groups, as between busy groups
    # The background thread ran checkpoints, and they copied pages into the database file itself.
    deadline = time.monotonic() + 10
    while store.background_checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.background_checkpoints > 0
    assert db.stat().st_size > main_file_before
    # The WAL never grew past the hard limit by more than a group's pages.
    assert biggest <= (WAL_HARD_LIMIT_FACTOR + 1) * THRESHOLD_PAGES * page
    assert store.size == 8000
    store.close()
    # Everything is there for a fresh reader, and proofs still check.
    reopened = LogStore(db, origin=ORIGIN)
    assert reopened.size == 8000
    assert reopened.entry(7999).index == 7999
    reopened.close()


def test_a_read_only_store_starts_no_checkpoint_thread_and_close_stops_it(tmp_path: Path) -> None:
    signer = NoteSigner.generate(ORIGIN)
    db = tmp_path / "log.db"
    before = len([t for t in _checkpointers() if t.is_alive()])
    store = LogStore(db, origin=ORIGIN)
    store.append([_pending(0)], now_ms=1_700_000_000_000, sign=_sign(signer))
    assert len([t for t in _checkpointers() if t.is_alive()]) == before + 1
    store.close()
    assert len([t for t in _checkpointers() if t.is_alive()]) == before
    os.chmod(db, 0o444)
    try:
        read_only = LogStore(db, origin=ORIGIN)
        assert read_only.read_only
        assert len([t for t in _checkpointers() if t.is_alive()]) == before
        assert read_only.size == 1
        read_only.close()
    finally:
        os.chmod(db, 0o644)


def test_the_threshold_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="wal_checkpoint_pages"):
        LogStore(tmp_path / "log.db", origin=ORIGIN, wal_checkpoint_pages=0)
