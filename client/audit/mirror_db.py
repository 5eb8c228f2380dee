"""The local SQLite mirror of a log.

The tables that hold log data (``entries``, ``checkpoints``, ``batches``) have
the same columns as the server's own store, so ``audit verify`` reads a mirror
and a server database file alike. Mirror-only tables:

* ``meta``: the origin and the pinned verifier key the mirror was made with;
* ``consistency``: every consistency proof the server gave between two stored
  checkpoints, so ``verify`` can re-check them offline;
* ``tree_state``: the recomputed tree frontier and last leaf hash at the
  mirrored size, written in the same transaction as each page of entries, so an
  interrupted mirror resumes exactly where it stopped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
from anchorlog.ledger.entry import ZERO_HASH
from anchorlog.ledger.errors import InvalidInput

MIRROR_FORMAT = "anchorlog-audit-mirror-v1"


@dataclass(frozen=True)
class TreeState:
    size: int
    frontier: tuple[bytes, ...]
    last_hash: bytes


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: bytes


def _pack(hashes: Sequence[bytes]) -> bytes:
    return b"".join(hashes)


def _unpack(blob: bytes) -> tuple[bytes, ...]:
    return tuple(blob[i : i + 32] for i in range(0, len(blob), 32))


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to a mirror or a server database (never modifies it)."""
    if not path.is_file():
        raise InvalidInput("mirror", f"{path} does not exist")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = {"entries", "checkpoints"} - tables
    if missing:
        conn.close()
        raise InvalidInput("mirror", f"{path} is not an anchorlog log: no table {sorted(missing)}")
    return conn


class MirrorDB:
    """Read/write access to a mirror file; pages are appended transactionally."""

    def __init__(self, path: Path, *, origin: str, verifier_key: str) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        db = sqlite_utils.Database(self.conn)
        db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
        db["entries"].create(
            {"idx": int, "leaf_hash": bytes, "data": bytes}, pk="idx", not_null={"leaf_hash", "data"},
            if_not_exists=True,
        )
        db["checkpoints"].create(
            {"size": int, "root": bytes, "note": bytes, "fetched_ms": int}, pk="size",
            not_null={"root", "note"}, if_not_exists=True,
        )
        db["consistency"].create(
            {"first_size": int, "second_size": int, "proof": bytes},
            pk=("first_size", "second_size"), not_null={"proof"}, if_not_exists=True,
        )
        db["batches"].create({"idx": int, "digests": bytes}, pk="idx", not_null={"digests"}, if_not_exists=True)
        db["tree_state"].create(
            {"id": int, "size": int, "frontier": bytes, "last_hash": bytes}, pk="id", if_not_exists=True,
        )
        meta = dict(self.conn.execute("SELECT key, value FROM meta"))
        expected = {"format": MIRROR_FORMAT, "origin": origin, "verifier_key": verifier_key}
        if not meta:
            self.conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", expected.items())
        else:
            for key, value in expected.items():
                if meta.get(key) != value:
                    self.conn.close()
                    raise InvalidInput(
                        "mirror", f"{path} was made with {key} {meta.get(key)!r}, not {value!r}"
                    )

    def close(self) -> None:
        self.conn.close()

    def tree_state(self) -> TreeState:
        row = self.conn.execute("SELECT size, frontier, last_hash FROM tree_state WHERE id = 1").fetchone()
        if row is None:
            return TreeState(0, (), ZERO_HASH)
        return TreeState(row[0], _unpack(row[1]), row[2])

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self.conn.execute(
            "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else StoredCheckpoint(*row)

    def append_page(
        self,
        entries: Sequence[tuple[int, bytes, bytes]],
        batches: Sequence[tuple[int, bytes]],
        state: TreeState,
    ) -> None:
        """Store a page of ``(index, leaf hash, data)`` and the tree state after it, atomically."""
        with self._transaction():
            self.conn.executemany("INSERT INTO entries(idx, leaf_hash, data) VALUES (?, ?, ?)", entries)
            self.conn.executemany("INSERT INTO batches(idx, digests) VALUES (?, ?)", batches)
            self.conn.execute(
                "INSERT OR REPLACE INTO tree_state(id, size, frontier, last_hash) VALUES (1, ?, ?, ?)",
                (state.size, _pack(state.frontier), state.last_hash),
            )

    def store_checkpoint(
        self, checkpoint: StoredCheckpoint, fetched_ms: int, consistency: tuple[int, Sequence[bytes]] | None
    ) -> None:
        with self._transaction():
            self.conn.execute(
                "INSERT OR IGNORE INTO checkpoints(size, root, note, fetched_ms) VALUES (?, ?, ?, ?)",
                (checkpoint.size, checkpoint.root, checkpoint.note, fetched_ms),
            )
            if consistency is not None:
                first, proof = consistency
                self.conn.execute(
                    "INSERT OR IGNORE INTO consistency(first_size, second_size, proof) VALUES (?, ?, ?)",
                    (first, checkpoint.size, _pack(proof)),
                )

    def _transaction(self) -> _Tx:
        return _Tx(self.conn)


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def iter_entries(
    conn: sqlite3.Connection, start: int = 0, end: int = 1 << 62, page: int = 5000
) -> Iterator[tuple[int, bytes, bytes]]:
    """``(idx, leaf_hash, data)`` for ``start <= idx < end`` in index order, in keyset pages.

    CAST: an edited row may hold TEXT, which must be checked, not crash the reader.
    """
    after = start - 1
    while True:
        rows = conn.execute(
            "SELECT idx, CAST(leaf_hash AS BLOB), CAST(data AS BLOB) FROM entries "
            "WHERE idx > ? AND idx < ? ORDER BY idx LIMIT ?",
            (after, end, page),
        ).fetchall()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def unpack_hashes(blob: bytes) -> tuple[bytes, ...]:
    return _unpack(blob)
