"""The log store: entries, tree nodes, the digest index and checkpoints in SQLite.

Invariants the schema and this module keep:

* Append-only. No code path updates or deletes an entry, a tree node or a
  checkpoint; triggers refuse it at the database level too.
* One append batch is one transaction, committed with ``synchronous=FULL`` in WAL
  mode before :meth:`LogStore.append` returns: nothing is acknowledged before it is
  durable, and a crash leaves either the whole batch or none of it.
* The checkpoint for a batch is stored in the same transaction as its entries, so
  the latest stored checkpoint always describes exactly the stored tree.
* Only perfect subtree nodes are stored (level 0 is ``entries.leaf_hash``); any
  inclusion or consistency proof needs O(log n) node reads, done in one query.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
from anchorlog.ledger.checkpoint import Checkpoint
from anchorlog.ledger.entry import ZERO_HASH, EntryKind, LogEntry, decode_entry
from anchorlog.ledger.errors import (
    InvalidInput,
    NotFound,
    StorageFull,
    StorageUnavailable,
    TamperedStoreError,
)
from anchorlog.ledger.merkle import (
    EMPTY_ROOT,
    NodeID,
    append_leaves,
    consistency_plan,
    fold_range,
    frontier_root,
    inclusion_plan,
    leaf_hash,
    range_nodes,
)

SCHEMA_VERSION = 1
# How many of the newest entries are re-hashed on open; a full check is `audit`.
OPEN_CHECK_ENTRIES = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    leaf_hash BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup (
    key BLOB PRIMARY KEY,
    idx INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subjects (
    digest BLOB NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (digest, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    idx INTEGER PRIMARY KEY,
    digests BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    target INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (target, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS key_events (
    idx INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note BLOB NOT NULL
);
"""

_APPEND_ONLY_TABLES = (
    "entries", "nodes", "dedup", "subjects", "batches", "revocations", "key_events", "checkpoints",
)


def _append_only_triggers() -> str:
    parts = []
    for table in _APPEND_ONLY_TABLES:
        for op in ("UPDATE", "DELETE"):
            parts.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'anchorlog: {table} is append-only'); END;"
            )
    return "\n".join(parts)


@dataclass(frozen=True)
class PendingEntry:
    """What the sequencer asks the store to append (already validated)."""

    kind: EntryKind
    submitter: str
    envelope: bytes
    # Identity for idempotence: the same submitter and signed statement is the
    # same entry, however the envelope JSON was spelled.
    dedup_key: bytes
    subject_digests: tuple[bytes, ...] = ()
    batch_digests: bytes = b""
    revokes: tuple[int, ...] = ()


@dataclass(frozen=True)
class StoredEntry:
    index: int
    data: bytes
    leaf_hash: bytes


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root_hash: bytes
    note: bytes


@dataclass(frozen=True)
class AppendResult:
    # Aligned with the input; a duplicate maps to the entry already in the log.
    entries: tuple[StoredEntry, ...]
    duplicate: tuple[bool, ...]
    checkpoint: SignedCheckpoint


CheckpointSigner = Callable[[Checkpoint], bytes]


def dedup_key(submitter: str, pae: bytes) -> bytes:
    return hashlib.sha256(submitter.encode() + b"\x00" + pae).digest()


def _map_write_error(exc: sqlite3.Error) -> Exception:
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("full" in text or "no space" in text):
        return StorageFull(f"database is full: {exc}")
    return StorageUnavailable(f"database write failed: {exc}")


class LogStore:
    """An append-only RFC 6962 log in one SQLite file.

    One writer (the sequencer) calls :meth:`append`; any number of threads read.
    Readers each get their own connection, so reads never wait for the writer
    beyond SQLite's WAL snapshot rules.
    """

    def __init__(self, path: str | Path, *, origin: str, check_on_open: bool = True) -> None:
        self.path = Path(path)
        self.origin = origin
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer = self._connect()
        self._migrate()
        self._size, self._frontier, self._last_hash = self._load_tree()
        self._latest = self._load_latest_checkpoint()
        if check_on_open:
            self.check_integrity(OPEN_CHECK_ENTRIES)

    # ------------------------------------------------------------ setup

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _migrate(self) -> None:
        db = sqlite_utils.Database(self._writer)
        current = 0
        if db["schema_version"].exists():
            row = self._writer.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
        if current > SCHEMA_VERSION:
            raise StorageUnavailable(
                f"database schema version {current} is newer than this anchorlog ({SCHEMA_VERSION})"
            )
        self._writer.executescript(_SCHEMA + _append_only_triggers())
        if current < SCHEMA_VERSION:
            import time

            db["schema_version"].insert(
                {"version": SCHEMA_VERSION, "applied_ms": int(time.time() * 1000)}
            )
        stored_origin = self._writer.execute(
            "SELECT value FROM meta WHERE key = 'origin'"
        ).fetchone()
        if stored_origin is None:
            self._writer.execute("INSERT INTO meta(key, value) VALUES ('origin', ?)", (self.origin,))
        elif stored_origin[0] != self.origin:
            raise InvalidInput(
                "origin", f"database belongs to log {stored_origin[0]!r}, not {self.origin!r}"
            )

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._all_readers.append(conn)
        return conn

    def close(self) -> None:
        with self._write_lock, self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()
            self._writer.close()

    def _load_tree(self) -> tuple[int, tuple[bytes, ...], bytes]:
        row = self._writer.execute("SELECT max(idx), count(*) FROM entries").fetchone()
        if row[0] is None:
            return 0, (), ZERO_HASH
        size = row[0] + 1
        if row[1] != size:
            raise TamperedStoreError(
                f"entries table has {row[1]} rows but its highest index is {row[0]}: entries are missing"
            )
        ids = range_nodes(0, size)
        found = self._read_nodes(self._writer, ids)
        missing = [n for n in ids if n not in found]
        if missing:
            raise TamperedStoreError(f"stored tree is missing nodes {missing}")
        last = self._writer.execute(
            "SELECT leaf_hash FROM entries WHERE idx = ?", (size - 1,)
        ).fetchone()[0]
        return size, tuple(found[n] for n in ids), last

    def _load_latest_checkpoint(self) -> SignedCheckpoint | None:
        row = self._writer.execute(
            "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else SignedCheckpoint(row[0], row[1], row[2])

    def check_integrity(self, newest_entries: int) -> None:
        """Refuse a database whose tree no longer matches its last signed checkpoint.

        Checks that the latest checkpoint covers the whole tree and that the root
        recomputed from stored nodes equals the signed root, then re-hashes the
        newest ``newest_entries`` entries and their hash-chain links.
        """
        latest = self._latest
        if latest is None:
            if self._size:
                raise TamperedStoreError(f"{self._size} entries but no signed checkpoint")
            return
        if latest.size != self._size:
            raise TamperedStoreError(
                f"last signed checkpoint has size {latest.size} but the database holds "
                f"{self._size} entries"
            )
        root = frontier_root(self._frontier)
        if not hmac.compare_digest(root, latest.root_hash):
            raise TamperedStoreError(
                f"stored tree root {root.hex()} does not match the last signed checkpoint "
                f"root {latest.root_hash.hex()} at size {latest.size}"
            )
        start = max(0, self._size - newest_entries)
        self.verify_entries(start, self._size)

    def verify_entries(self, start: int, end: int) -> None:
        """Re-hash entries [start, end): leaf hash, index field and chain link."""
        previous = ZERO_HASH
        if start > 0:
            previous = self.leaf_hashes(start - 1, start)[0]
        # CAST: an edited row may hold TEXT, which must be checked, not crash the decoder.
        for index, data, stored_hash in self._writer.execute(
            "SELECT idx, CAST(data AS BLOB), CAST(leaf_hash AS BLOB) FROM entries "
            "WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        ):
            if not hmac.compare_digest(leaf_hash(data), stored_hash):
                raise TamperedStoreError(f"entry {index}: bytes do not match the stored leaf hash")
            try:
                entry = decode_entry(data)
            except InvalidInput as exc:
                raise TamperedStoreError(f"entry {index}: undecodable ({exc})") from None
            if entry.index != index:
                raise TamperedStoreError(f"entry {index}: encodes index {entry.index}")
            if not hmac.compare_digest(entry.previous_hash, previous):
                raise TamperedStoreError(f"entry {index}: hash chain link to entry {index - 1} broken")
            previous = stored_hash

    # ------------------------------------------------------------ state

    @property
    def size(self) -> int:
        return self._size

    @property
    def root_hash(self) -> bytes:
        return frontier_root(self._frontier)

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        return self._latest

    def checkpoint(self, size: int) -> SignedCheckpoint:
        row = self._reader().execute(
            "SELECT size, root, note FROM checkpoints WHERE size = ?", (size,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no checkpoint was signed at size {size}")
        return SignedCheckpoint(row[0], row[1], row[2])

    def checkpoints(self) -> list[SignedCheckpoint]:
        rows = self._reader().execute("SELECT size, root, note FROM checkpoints ORDER BY size")
        return [SignedCheckpoint(*r) for r in rows]

    # ------------------------------------------------------------ append

    def append(
        self, items: Sequence[PendingEntry], *, now_ms: int, sign: CheckpointSigner
    ) -> AppendResult:
        """Append ``items`` in one durable transaction and sign one checkpoint.

        Duplicates (same dedup key, in the log or earlier in ``items``) map to
        the original entry. Raises StorageFull/StorageUnavailable with nothing
        written when the database cannot take the batch.
        """
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _map_write_error(exc) from exc
            try:
                result, state = self._append_locked(conn, items, now_ms, sign)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise _map_write_error(exc) from exc
            except BaseException:
                self._rollback(conn)
                raise
            self._size, self._frontier, self._last_hash, self._latest = state
            return result

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _append_locked(
        self,
        conn: sqlite3.Connection,
        items: Sequence[PendingEntry],
        now_ms: int,
        sign: CheckpointSigner,
    ) -> tuple[AppendResult, tuple[int, tuple[bytes, ...], bytes, SignedCheckpoint | None]]:
        size, previous = self._size, self._last_hash
        by_key: dict[bytes, StoredEntry] = {}
        out: list[StoredEntry] = []
        duplicate: list[bool] = []
        new_entries: list[tuple[int, bytes, bytes]] = []
        new_hashes: list[bytes] = []
        subject_rows: list[tuple[bytes, int]] = []
        batch_rows: list[tuple[int, bytes]] = []
        revocation_rows: list[tuple[int, int]] = []
        key_rows: list[tuple[int]] = []
        dedup_rows: list[tuple[bytes, int]] = []
        for item in items:
            known = by_key.get(item.dedup_key) or self._find_duplicate(conn, item.dedup_key)
            if known is not None:
                out.append(known)
                duplicate.append(True)
                by_key[item.dedup_key] = known
                continue
            index = size + len(new_entries)
            data = LogEntry(
                index=index, kind=item.kind, previous_hash=previous, integrated_ms=now_ms,
                submitter=item.submitter, envelope=item.envelope,
            ).encode()
            lh = leaf_hash(data)
            stored = StoredEntry(index, data, lh)
            new_entries.append((index, lh, data))
            new_hashes.append(lh)
            dedup_rows.append((item.dedup_key, index))
            subject_rows.extend((d, index) for d in item.subject_digests)
            if item.batch_digests:
                batch_rows.append((index, item.batch_digests))
                blob = item.batch_digests
                subject_rows.extend((blob[i : i + 32], index) for i in range(0, len(blob), 32))
            revocation_rows.extend((target, index) for target in item.revokes)
            if item.kind is EntryKind.KEY_EVENT:
                key_rows.append((index,))
            by_key[item.dedup_key] = stored
            out.append(stored)
            duplicate.append(False)
            previous = lh
        if not new_entries:
            latest = self._latest
            if latest is None:
                latest = self._sign_and_store(conn, 0, EMPTY_ROOT, sign)
            state = (self._size, self._frontier, self._last_hash, latest)
            return AppendResult(tuple(out), tuple(duplicate), latest), state
        for target, _ in revocation_rows:
            if target >= size + len(new_entries):
                raise InvalidInput("revocation", f"target entry {target} does not exist")
        grown = append_leaves(size, self._frontier, new_hashes)
        conn.executemany("INSERT INTO entries(idx, leaf_hash, data) VALUES (?, ?, ?)", new_entries)
        conn.executemany(
            "INSERT INTO nodes(level, idx, hash) VALUES (?, ?, ?)",
            [(n.level, n.index, h) for n, h in grown.new_nodes if n.level > 0],
        )
        conn.executemany("INSERT INTO dedup(key, idx) VALUES (?, ?)", dedup_rows)
        conn.executemany("INSERT OR IGNORE INTO subjects(digest, idx) VALUES (?, ?)", subject_rows)
        conn.executemany("INSERT INTO batches(idx, digests) VALUES (?, ?)", batch_rows)
        conn.executemany("INSERT INTO revocations(target, idx) VALUES (?, ?)", revocation_rows)
        conn.executemany("INSERT INTO key_events(idx) VALUES (?)", key_rows)
        new_size = size + len(new_entries)
        checkpoint = self._sign_and_store(conn, new_size, grown.root, sign)
        state = (new_size, grown.frontier, previous, checkpoint)
        return AppendResult(tuple(out), tuple(duplicate), checkpoint), state

    def _sign_and_store(
        self, conn: sqlite3.Connection, size: int, root: bytes, sign: CheckpointSigner
    ) -> SignedCheckpoint:
        note = sign(Checkpoint(origin=self.origin, size=size, root_hash=root))
        conn.execute("INSERT INTO checkpoints(size, root, note) VALUES (?, ?, ?)", (size, root, note))
        return SignedCheckpoint(size, root, note)

    def ensure_checkpoint(self, *, sign: CheckpointSigner) -> SignedCheckpoint:
        """Sign the empty tree's checkpoint on a fresh log; else return the latest."""
        return self.append([], now_ms=0, sign=sign).checkpoint

    @staticmethod
    def _find_duplicate(conn: sqlite3.Connection, key: bytes) -> StoredEntry | None:
        row = conn.execute(
            "SELECT e.idx, e.data, e.leaf_hash FROM dedup d JOIN entries e ON e.idx = d.idx "
            "WHERE d.key = ?",
            (key,),
        ).fetchone()
        return None if row is None else StoredEntry(*row)

    # ------------------------------------------------------------ reads

    def _check_size(self, size: int, field: str = "tree_size") -> None:
        if size < 0 or size > self._size:
            raise InvalidInput(field, f"{size} is beyond the log size {self._size}")

    def entry(self, index: int) -> StoredEntry:
        row = self._reader().execute(
            "SELECT idx, data, leaf_hash FROM entries WHERE idx = ?", (index,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no entry at index {index} (log size {self._size})")
        return StoredEntry(*row)

    def entries(self, start: int, end: int) -> list[StoredEntry]:
        rows = self._reader().execute(
            "SELECT idx, data, leaf_hash FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )
        return [StoredEntry(*r) for r in rows]

    def entries_by_index(self, indices: Iterable[int]) -> dict[int, StoredEntry]:
        wanted = sorted(set(indices))
        out: dict[int, StoredEntry] = {}
        conn = self._reader()
        for chunk_start in range(0, len(wanted), 500):
            chunk = wanted[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT idx, data, leaf_hash FROM entries WHERE idx IN ({marks})", chunk
            ):
                out[row[0]] = StoredEntry(*row)
        return out

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self._reader().execute(
            "SELECT leaf_hash FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )
        return [r[0] for r in rows]

    @staticmethod
    def _read_nodes(conn: sqlite3.Connection, ids: Sequence[NodeID]) -> dict[NodeID, bytes]:
        found: dict[NodeID, bytes] = {}
        leaves = [n.index for n in ids if n.level == 0]
        inner = [n for n in ids if n.level > 0]
        if leaves:
            marks = ",".join("?" * len(leaves))
            for idx, h in conn.execute(
                f"SELECT idx, leaf_hash FROM entries WHERE idx IN ({marks})", leaves
            ):
                found[NodeID(0, idx)] = h
        if inner:
            values = ",".join("(?, ?)" for _ in inner)
            params = [v for n in inner for v in (n.level, n.index)]
            for level, idx, h in conn.execute(
                f"SELECT level, idx, hash FROM nodes WHERE (level, idx) IN (VALUES {values})",
                params,
            ):
                found[NodeID(level, idx)] = h
        return found

    def _nodes(self, ids: Sequence[NodeID]) -> dict[NodeID, bytes]:
        found = self._read_nodes(self._reader(), ids)
        if len(found) != len(set(ids)):
            missing = sorted(set(ids) - set(found))
            raise TamperedStoreError(f"stored tree is missing nodes {missing[:5]}")
        return found

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        if not 0 <= index < size:
            raise InvalidInput("index", f"{index} is not below the tree size {size}")
        plan = inclusion_plan(index, size)
        return plan.assemble(self._nodes(plan.node_ids()))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        self._check_size(new_size, "second_size")
        if not 0 <= old_size <= new_size:
            raise InvalidInput("first_size", f"{old_size} must be between 0 and {new_size}")
        plan = consistency_plan(old_size, new_size)
        return plan.assemble(self._nodes(plan.node_ids()))

    def root_at(self, size: int) -> bytes:
        self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        ids = range_nodes(0, size)
        found = self._nodes(ids)
        return fold_range([found[n] for n in ids])

    def lookup(self, digest: bytes, *, below: int | None = None) -> list[int]:
        """Indices of attestation entries naming ``digest`` (directly or in a batch)."""
        limit = self._size if below is None else below
        rows = self._reader().execute(
            "SELECT idx FROM subjects WHERE digest = ? AND idx < ? ORDER BY idx", (digest, limit)
        )
        return [r[0] for r in rows]

    def batch_digests(self, index: int) -> bytes:
        row = self._reader().execute("SELECT digests FROM batches WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise NotFound(f"entry {index} does not commit to a batch")
        return row[0]

    def revocations(self, targets: Iterable[int], *, below: int | None = None) -> dict[int, list[int]]:
        limit = self._size if below is None else below
        wanted = sorted(set(targets))
        out: dict[int, list[int]] = {}
        conn = self._reader()
        for chunk_start in range(0, len(wanted), 500):
            chunk = wanted[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            for target, idx in conn.execute(
                f"SELECT target, idx FROM revocations WHERE target IN ({marks}) AND idx < ? "
                "ORDER BY idx",
                [*chunk, limit],
            ):
                out.setdefault(target, []).append(idx)
        return out

    def key_event_indices(self, *, below: int | None = None) -> list[int]:
        limit = self._size if below is None else below
        rows = self._reader().execute("SELECT idx FROM key_events WHERE idx < ? ORDER BY idx", (limit,))
        return [r[0] for r in rows]
