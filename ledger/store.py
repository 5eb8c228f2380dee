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
from bisect import bisect_left
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.request import pathname2url

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
    inclusion_nodes,
    inclusion_plan,
    inclusion_proofs_of_range,
    leaf_hash,
    node_hash,
    range_nodes,
)
from anchorlog.ledger.merkle.hashing import LEAF_PREFIX

# 2: subjects.dedup (added in place to version-1 files on their first writable open).
SCHEMA_VERSION = 2
# Oldest schema this code still reads (a read-only file is never migrated).
OLDEST_READABLE_SCHEMA = 1
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
    -- The entry's dedup key, on the row of its smallest digest (schema 2). A
    -- one-sample entry then touches one random index page, not two: the dedup
    -- table holds only entries whose subjects are not rows of their own.
    dedup BLOB,
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


# SQLite caps bound parameters per statement; IN lists are sent in chunks of this many.
_IN_CHUNK = 500


def _rows_in(
    conn: sqlite3.Connection, sql: str, keys: Sequence[object], *after: object
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``sql`` (whose ``{marks}`` is an IN list of ``keys``), one query per chunk.

    ``after`` are parameters that follow the IN list. Each key is in exactly one
    chunk, so per-key row order within the SQL's ORDER BY is kept.
    """
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        yield from conn.execute(sql.format(marks=",".join("?" * len(chunk))), [*chunk, *after])


# Entries naming at least this many digests insert their subject rows with one
# statement that cuts the digests out of one blob inside SQLite: no Python
# tuple, binding and GIL hand-off per row (about 3x faster for 100k rows).
_SUBJECTS_IN_SQL = 16
# An entry with fewer subjects keeps its dedup key on its smallest digest's row
# while that digest has fewer than this many rows older than the entry (its
# first rows); later entries keep it in the dedup table. A duplicate check then
# reads at most this many rows of a digest, however popular the sample.
_KEYED_SUBJECT_ROWS = 16
# Digests per duplicate-check statement (one LIMITed SELECT each, UNION ALL;
# SQLite allows 500 terms in one compound SELECT).
_PROBE_CHUNK = 100
_FIRST_SUBJECT_ROWS = (
    "SELECT * FROM (SELECT digest, idx, dedup FROM subjects WHERE digest = ? "
    f"ORDER BY idx LIMIT {_KEYED_SUBJECT_ROWS})"
)
_BLOB_ROWS = (
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2) "
    "INSERT OR IGNORE INTO {table}(digest, idx) SELECT substr(?1, i * 32 + 1, 32), ?3 FROM n"
)
_INSERT_SUBJECT_BLOB = _BLOB_ROWS.format(table="subjects")
# Several bulk entries in one group: their digests are concatenated into one
# blob, each row's entry index beside it as 20 ASCII digits in a second blob
# (substr on a BLOB is a byte offset; on TEXT it walks characters), and one
# statement sorts the rows and inserts them in key order. Entry after entry,
# each would walk the whole index again; sorted, inserting costs about 1.6x
# less at 180k rows. One statement per group rather than one per entry into a
# temporary table: the writer hands the GIL over and back once, not per entry.
_MERGED_BLOB_ROWS = (
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2) "
    "INSERT OR IGNORE INTO subjects(digest, idx) "
    "SELECT substr(?1, i * 32 + 1, 32), CAST(substr(?3, i * 20 + 1, 20) AS INTEGER) FROM n ORDER BY 1, 2"
)
# Rows per merged statement (52 bytes of parameters each, plus the sorter's copy).
_MERGED_ROWS = 1 << 18
# An entry with at least this many digests is inserted on its own: it is sorted
# and long enough that its own pass is as good, and merging costs a copy and a
# sort (measured with the temporary table this statement replaced: 100,000-
# digest batches 2.7-3.0 us/row alone, 3.8-3.9 sorted together; 10,000-digest
# entries 5.8 alone, 3.5 together).
_DIRECT_BLOB_ROWS = 1 << 16
# hashlib releases the GIL while it hashes this many bytes or more (CPython's
# HASHLIB_GIL_MINSIZE); see _leaf_hash_keeping_gil.
_HASHLIB_GIL_MINSIZE = 2048


def _leaf_hash_keeping_gil(data: bytes) -> bytes:
    """``leaf_hash(data)``, fed to hashlib in pieces too small for it to release the GIL.

    For the writer thread only: a large entry (a bulk envelope, ~160 KB) then
    takes ~0.1 ms of hashing with the GIL held, instead of handing the GIL to a
    handler thread and waiting up to a switch interval to get it back. The
    value is the same either way (tested).
    """
    if len(data) < _HASHLIB_GIL_MINSIZE:
        return leaf_hash(data)
    digest = hashlib.sha256(LEAF_PREFIX)
    piece = _HASHLIB_GIL_MINSIZE - 1
    view = memoryview(data)
    for start in range(0, len(data), piece):
        digest.update(view[start : start + piece])
    return digest.digest()


def _digest_blob(digests: Sequence[bytes] | bytes) -> bytes:
    """Digests as one non-empty blob of 32-byte slices, or ``InvalidInput``."""
    if isinstance(digests, bytes):
        blob = digests
    else:
        if set(map(len, digests)) != {32}:
            raise InvalidInput("subject_digests", "every subject digest must be 32 bytes")
        blob = b"".join(digests)
    if not blob or len(blob) % 32:
        raise InvalidInput("batch_digests", "must be a non-empty run of 32-byte digests")
    return blob


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


class SubjectHit(NamedTuple):
    """An entry naming a digest (see :meth:`LogStore.lookup_hits`).

    A named tuple: a bulk lookup makes one per digest, and it is built several
    times faster than a frozen dataclass (immutable all the same).
    """

    index: int
    batched: bool
    maybe_revoked: bool


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


def signed_dedup_key(vendor_id: str, key_id: str, pae: bytes) -> bytes:
    """A vendor's attestation's dedup key. The signing key is part of the identity: the
    same statement re-signed with a new key (say after a compromise) is a new entry,
    not the tainted old one."""
    return dedup_key(f"{vendor_id}\x00{key_id}", pae)


def _map_write_error(exc: sqlite3.Error) -> Exception:
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("full" in text or "no space" in text):
        return StorageFull(f"database is full: {exc}")
    return StorageUnavailable(f"database write failed: {exc}")


# Page cache of the writer connection, in KiB (SQLite's default is 2 MiB).
WRITER_CACHE_KIB = 128 << 10
# WAL pages after which a commit copies the WAL back into the database
# (SQLite's default is 1,000). Index inserts land on random pages, so a bigger
# WAL rewrites each page fewer times: at 10^6 entries an append costs about half
# the time with 16,384 pages (64 MiB with 4 KiB pages; bench/README.md).
WAL_CHECKPOINT_PAGES = 16_384
# Tree levels at and above this one are always kept in memory (about
# size / 2**HOT_LEVEL nodes); a random inclusion proof then reads at most
# HOT_LEVEL nodes from disk.
HOT_LEVEL = 8
# Lower levels are kept too while the cached nodes number at most this many (about
# 45 MB as bytes objects): up to about 2.6 * 10^5 entries the whole tree, leaf hashes
# too (read from the entries rows on open), so a proof reads nothing from disk;
# 10^6 entries keep levels 2 up, 10^7 keep 6 up. A log that grows past twice the
# budget while open gives up its lowest cached level (see _ProofCache.committed).
HOT_NODES = 1 << 19


def nodes_at_or_above(size: int, level: int) -> int:
    """Perfect-subtree nodes of a tree of ``size`` leaves at ``level`` and above."""
    return sum(size >> above for above in range(level, size.bit_length()))


def hot_level_for(size: int, budget: int | None = None) -> int:
    """The lowest level, from 0 to HOT_LEVEL, whose nodes and those above fit ``budget``
    (HOT_NODES unless given)."""
    limit = HOT_NODES if budget is None else budget
    for level in range(HOT_LEVEL):
        if nodes_at_or_above(size, level) <= limit:
            return level
    return HOT_LEVEL

# Every node of the newest leaves stays in memory too, so receipts for a group
# just appended (and lookups of recent entries) need no read at all.
RECENT_LEAVES = 1 << 15
# Right-edge hashes are kept for this many recent tree sizes (pinned checkpoints).
EDGE_SIZES = 256


def _edge_hashes(size: int, frontier: Sequence[bytes]) -> dict[int, bytes]:
    """MTH of leaves [begin, size) for every begin where the frontier splits.

    Every proof element that ends at the tree's right edge covers exactly such a
    range (an aligned range ending at ``size`` is a suffix of the frontier), so
    these few hashes replace the folds a proof would otherwise do.
    """
    begins = []
    begin = 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            begins.append(begin)
            begin += 1 << bit
    out: dict[int, bytes] = {}
    acc = b""
    for begin, h in zip(reversed(begins), reversed(frontier), strict=True):
        acc = node_hash(h, acc) if acc else h
        out[begin] = acc
    return out


# Runs of at least this many neighbouring leaves are proved by one walk of the tree.
_WALK_MIN_RUN = 8


def _runs(ascending: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Maximal runs of consecutive values in ``ascending`` (distinct, ascending, none
    negative: indices already checked), as [begin, end)."""
    begin = previous = -2
    for value in ascending:
        if value != previous + 1:
            if begin >= 0:
                yield begin, previous + 1
            begin = value
        previous = value
    if begin >= 0:
        yield begin, previous + 1


class _NotInMemory(Exception):
    """A node a fast path wanted is not cached; the caller takes the general path."""


class _ProofCache:
    """Tree nodes and right-edge hashes held in memory for fast proofs.

    Holds only committed, immutable values (a perfect subtree's hash never
    changes), added after the transaction that wrote them commits, so a reader
    can never see a value the database does not hold. Readers take no lock:
    list appends and single-key dict reads and writes are atomic in CPython.
    """

    def __init__(self, hot_level: int, *, adaptive: bool = False) -> None:
        self.hot_level = hot_level
        # Chosen from the size (hot_level_for): raised if the log outgrows HOT_NODES.
        self.adaptive = adaptive
        # Levels at and above hot_level, dense: levels[level][index]. Nodes of a
        # level complete left to right, so each list only grows by appending; a
        # list index costs one memory access where an int-keyed dict of
        # millions of nodes costs three (most of a cached proof's time).
        self.levels: list[list[bytes]] = [[] for _ in range(64)]
        # Nodes below hot_level of the newest leaves, keyed index << 6 | level.
        self.recent: dict[int, bytes] = {}
        self._recent: deque[tuple[int, list[int]]] = deque()
        self._recent_leaves = 0
        self.edges: OrderedDict[int, dict[int, bytes]] = OrderedDict()

    def _put_hot(self, level: int, idx: int, h: bytes) -> None:
        nodes = self.levels[level]
        if idx == len(nodes):  # a gap (a node missing on disk) is never papered over
            nodes.append(h)

    def get(self, level: int, idx: int) -> bytes | None:
        if level >= self.hot_level:
            nodes = self.levels[level]
            return nodes[idx] if idx < len(nodes) else None
        return self.recent.get(idx << 6 | level)

    def load_hot(self, conn: sqlite3.Connection) -> None:
        for level, idx, h in conn.execute(
            "SELECT level, idx, hash FROM nodes WHERE level >= ? ORDER BY level, idx",
            (max(1, self.hot_level),),
        ):
            self._put_hot(level, idx, h)
        if self.hot_level == 0:
            for idx, h in conn.execute("SELECT idx, leaf_hash FROM entries ORDER BY idx"):
                self._put_hot(0, idx, h)

    def committed(
        self, size: int, frontier: Sequence[bytes], new_nodes: Sequence[tuple[NodeID, bytes]]
    ) -> None:
        # Before placing this commit's nodes: those of a level given up go to `recent`.
        while self.adaptive and self.hot_level < HOT_LEVEL and nodes_at_or_above(size, self.hot_level) > 2 * HOT_NODES:
            self._give_up_lowest_level()
        keys = []
        leaves = 0
        for node, h in new_nodes:
            if node.level >= self.hot_level:
                self._put_hot(node.level, node.index, h)
            else:
                key = node.index << 6 | node.level
                self.recent[key] = h
                keys.append(key)
            leaves += node.level == 0
        if keys:
            self._recent.append((leaves, keys))
            self._recent_leaves += leaves
        while self._recent_leaves > RECENT_LEAVES and len(self._recent) > 1:
            count, old = self._recent.popleft()
            self._recent_leaves -= count
            for key in old:
                self.recent.pop(key, None)
        self.edges[size] = _edge_hashes(size, frontier)
        while len(self.edges) > EDGE_SIZES:
            self.edges.popitem(last=False)

    def _give_up_lowest_level(self) -> None:
        """Stop keeping the lowest dense level. Readers that already chose it find
        its list empty (IndexError or None): they read those nodes from disk."""
        lowest = self.hot_level
        self.hot_level = lowest + 1
        self.levels[lowest] = []


class LogStore:
    """An append-only RFC 6962 log in one SQLite file.

    One writer (the sequencer) calls :meth:`append`; any number of threads read.
    Readers each get their own connection, so reads never wait for the writer
    beyond SQLite's WAL snapshot rules.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        origin: str,
        check_on_open: bool = True,
        max_bytes: int | None = None,
        hot_level: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.origin = origin
        # A DB file with no write bit is opened read-only even by root (who would
        # otherwise write through chmod): appends then fail with SQLite's real
        # SQLITE_READONLY and map to StorageUnavailable, while reads keep working.
        self.read_only = self.path.exists() and not self.path.stat().st_mode & 0o222
        # Cap on the database size (PRAGMA max_page_count): past it an append
        # fails with SQLITE_FULL exactly as on a full disk, and nothing is written.
        if max_bytes is not None and max_bytes < 1:
            raise InvalidInput("max_bytes", "must be positive")
        self.max_bytes = max_bytes
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer = self._connect()
        self._schema = 0  # set by _migrate: the file's schema version once open
        # Bulk appends insert ~10^5 random digests into the subjects index at
        # once; with SQLite's default 2 MB cache the touched pages spill and are
        # read again. The cache only grows as pages are used.
        self._writer.execute(f"PRAGMA cache_size={-WRITER_CACHE_KIB}")
        self._writer.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        # A huge bulk transaction can grow the WAL past that; once it is reset,
        # the file shrinks back instead of keeping its peak size on disk.
        self._writer.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_PAGES * 4096}")
        if not self.read_only:
            self._writer.execute("PRAGMA temp_store=MEMORY")  # the merged subjects statement's sorter
        # The merged statement reads indices as ASCII digits through CAST, which
        # decodes a blob in the database's text encoding: only right in UTF-8 (what
        # this store creates). A file in UTF-16 inserts each entry's rows on its own.
        self._merge_subjects = self._writer.execute("PRAGMA encoding").fetchone()[0] == "UTF-8"
        self._migrate()
        try:
            self._size, self._frontier, self._last_hash = self._load_tree()
            self._latest = self._load_latest_checkpoint()
            if check_on_open:
                self.check_integrity(OPEN_CHECK_ENTRIES)
            # hot_level=0 keeps the whole tree in memory (small logs, benchmarks);
            # None picks it from the size (hot_level_for).
            if hot_level is None:
                self._proofs = _ProofCache(hot_level_for(self._size), adaptive=True)
            else:
                self._proofs = _ProofCache(hot_level)
            self._proofs.load_hot(self._writer)
            self._proofs.committed(self._size, self._frontier, ())
        except TamperedStoreError as exc:
            # Say what it means for the operator, then the precise cause.
            self._writer.close()
            raise TamperedStoreError(
                f"{self.path}: the stored tree no longer matches the last signed checkpoint: {exc}"
            ) from None

    # ------------------------------------------------------------ setup

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            conn = sqlite3.connect(
                self._read_only_uri(), uri=True, isolation_level=None, check_same_thread=False, timeout=30
            )
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        if self.max_bytes is not None:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            # SQLite never lowers the cap below the current size: a full log stays full.
            conn.execute(f"PRAGMA max_page_count={max(1, self.max_bytes // page_size)}")
        return conn

    def _read_only_uri(self) -> str:
        return f"file:{pathname2url(str(self.path.resolve()))}?mode=ro"

    def _migrate(self) -> None:
        current = 0
        has_versions = self._writer.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if has_versions:
            row = self._writer.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
        if current > SCHEMA_VERSION:
            raise StorageUnavailable(
                f"database schema version {current} is newer than this anchorlog ({SCHEMA_VERSION})"
            )
        if self.read_only:
            if current < OLDEST_READABLE_SCHEMA:
                raise StorageUnavailable(f"{self.path} is read-only and holds no anchorlog schema")
            self._schema = current
            self._check_origin()
            return
        self._writer.executescript(_SCHEMA + _append_only_triggers())
        if current < SCHEMA_VERSION:
            import time

            # Imported only to migrate: sqlite_utils pulls in pandas when it is
            # installed, which would add seconds to every start.
            import sqlite_utils

            # One transaction: a crash mid-way leaves the old version, intact.
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                # Read again under the write lock: another process may have just upgraded it.
                row = self._writer.execute("SELECT max(version) FROM schema_version").fetchone()
                if (row[0] or 0) < SCHEMA_VERSION:
                    subject_columns = {r[1] for r in self._writer.execute("PRAGMA table_info(subjects)")}
                    if "dedup" not in subject_columns:
                        self._writer.execute("ALTER TABLE subjects ADD COLUMN dedup BLOB")
                    sqlite_utils.Database(self._writer)["schema_version"].insert(
                        {"version": SCHEMA_VERSION, "applied_ms": int(time.time() * 1000)}
                    )
                self._writer.execute("COMMIT")
            except BaseException:
                self._rollback(self._writer)
                raise
        self._schema = SCHEMA_VERSION
        self._check_origin()

    def _check_origin(self) -> None:
        stored_origin = self._writer.execute(
            "SELECT value FROM meta WHERE key = 'origin'"
        ).fetchone()
        if stored_origin is None and not self.read_only:
            self._writer.execute("INSERT INTO meta(key, value) VALUES ('origin', ?)", (self.origin,))
        elif stored_origin is None or stored_origin[0] != self.origin:
            raise InvalidInput(
                "origin", f"database belongs to log {stored_origin[0]!r}, not {self.origin!r}"
            )

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._read_only_uri() if self.read_only else str(self.path),
                uri=self.read_only, isolation_level=None, check_same_thread=False, timeout=30,
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
        # No count(*): it reads every page of the table (seconds at 10^7 entries).
        # A missing row among the newest entries fails check_integrity's re-hash
        # (the chain link across the gap, or the row count of the window); older
        # rows are the full audit's job, and any proof touching one fails.
        row = self._writer.execute("SELECT max(idx) FROM entries").fetchone()
        if row[0] is None:
            return 0, (), ZERO_HASH
        size = row[0] + 1
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
            before = self.leaf_hashes(start - 1, start)
            if not before:
                raise TamperedStoreError(f"entry {start - 1} is missing")
            previous = before[0]
        expected = start
        # CAST: an edited row may hold TEXT, which must be checked, not crash the decoder.
        for index, data, stored_hash in self._writer.execute(
            "SELECT idx, CAST(data AS BLOB), CAST(leaf_hash AS BLOB) FROM entries "
            "WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        ):
            if index != expected:
                raise TamperedStoreError(f"entries {expected}..{index - 1} are missing")
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
            expected = index + 1
            previous = stored_hash
        if expected != end:
            raise TamperedStoreError(f"entries {expected}..{end - 1} are missing")

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
            self._size, self._frontier, self._last_hash, self._latest, new_nodes = state
            if new_nodes:
                self._proofs.committed(self._size, self._frontier, new_nodes)
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
    ) -> tuple[
        AppendResult,
        tuple[int, tuple[bytes, ...], bytes, SignedCheckpoint | None, tuple[tuple[NodeID, bytes], ...]],
    ]:
        size, previous = self._size, self._last_hash
        by_key: dict[bytes, StoredEntry] = {}
        out: list[StoredEntry] = []
        duplicate: list[bool] = []
        new_entries: list[tuple[int, bytes, bytes]] = []
        new_hashes: list[bytes] = []
        subject_rows: list[tuple[bytes, int, bytes | None]] = []
        subject_blobs: list[tuple[bytes, int]] = []  # (concatenated digests, entry index)
        batch_rows: list[tuple[int, bytes]] = []
        revocation_rows: list[tuple[int, int]] = []
        key_rows: list[tuple[int]] = []
        dedup_rows: list[tuple[bytes, int]] = []
        in_log, rows_of = self._find_duplicates(conn, items)
        # Rows the group's earlier new entries add to a digest: exact for
        # entries with a few subjects; an entry inserted from a blob may name
        # any digest, so it counts for all (over-counting is safe, see below).
        blob_entries = 0
        for item in items:
            known = by_key.get(item.dedup_key) or in_log.get(item.dedup_key)
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
            lh = _leaf_hash_keeping_gil(data)
            stored = StoredEntry(index, data, lh)
            new_entries.append((index, lh, data))
            new_hashes.append(lh)
            if len(item.subject_digests) >= _SUBJECTS_IN_SQL:
                subject_blobs.append((_digest_blob(sorted(item.subject_digests)), index))
                dedup_rows.append((item.dedup_key, index))
                blob_entries += 1
            elif item.subject_digests:
                # The key rides on the smallest digest's row (see the schema),
                # only among that digest's first rows, which the check reads.
                first = min(item.subject_digests)
                key = item.dedup_key if rows_of[first] + blob_entries < _KEYED_SUBJECT_ROWS else None
                if key is None:
                    dedup_rows.append((item.dedup_key, index))
                digests = dict.fromkeys(item.subject_digests)
                subject_rows.extend((d, index, key if d == first else None) for d in digests)
                for d in digests:
                    if d in rows_of:
                        rows_of[d] += 1
            else:
                dedup_rows.append((item.dedup_key, index))
            if item.batch_digests:
                blob_entries += 1
                batch_rows.append((index, item.batch_digests))
                # Sorted by the batch rule; SQLite cuts it, so its length must be exact.
                subject_blobs.append((_digest_blob(item.batch_digests), index))
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
            state = (self._size, self._frontier, self._last_hash, latest, ())
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
        subject_rows.sort()  # neighbouring keys: fewer B-tree pages touched per row
        conn.executemany("INSERT OR IGNORE INTO subjects(digest, idx, dedup) VALUES (?, ?, ?)", subject_rows)
        if len(subject_blobs) == 1:
            blob, index = subject_blobs[0]
            conn.execute(_INSERT_SUBJECT_BLOB, (blob, len(blob) // 32, index))
        elif subject_blobs:
            merged: list[tuple[bytes, int, int]] = []  # (blob, rows, entry index)
            rows = 0
            for blob, index in subject_blobs:
                count = len(blob) // 32
                if count >= _DIRECT_BLOB_ROWS or not self._merge_subjects:
                    conn.execute(_INSERT_SUBJECT_BLOB, (blob, count, index))
                    continue
                merged.append((blob, count, index))
                rows += count
                if rows >= _MERGED_ROWS:
                    self._insert_merged(conn, merged, rows)
                    merged, rows = [], 0
            if merged:
                self._insert_merged(conn, merged, rows)
        conn.executemany("INSERT INTO batches(idx, digests) VALUES (?, ?)", batch_rows)
        conn.executemany("INSERT INTO revocations(target, idx) VALUES (?, ?)", revocation_rows)
        conn.executemany("INSERT INTO key_events(idx) VALUES (?)", key_rows)
        new_size = size + len(new_entries)
        checkpoint = self._sign_and_store(conn, new_size, grown.root, sign)
        state = (new_size, grown.frontier, previous, checkpoint, grown.new_nodes)
        return AppendResult(tuple(out), tuple(duplicate), checkpoint), state

    @staticmethod
    def _insert_merged(conn: sqlite3.Connection, runs: Sequence[tuple[bytes, int, int]], rows: int) -> None:
        digests = b"".join(blob for blob, _, _ in runs)
        indices = b"".join(b"%020d" % index * count for _, count, index in runs)
        conn.execute(_MERGED_BLOB_ROWS, (digests, rows, indices))

    def _sign_and_store(
        self, conn: sqlite3.Connection, size: int, root: bytes, sign: CheckpointSigner
    ) -> SignedCheckpoint:
        note = sign(Checkpoint(origin=self.origin, size=size, root_hash=root))
        conn.execute("INSERT INTO checkpoints(size, root, note) VALUES (?, ?, ?)", (size, root, note))
        return SignedCheckpoint(size, root, note)

    def ensure_checkpoint(self, *, sign: CheckpointSigner) -> SignedCheckpoint:
        """Sign the empty tree's checkpoint on a fresh log; else return the latest."""
        return self.append([], now_ms=0, sign=sign).checkpoint

    def _find_duplicates(
        self, conn: sqlite3.Connection, items: Sequence[PendingEntry]
    ) -> tuple[dict[bytes, StoredEntry], dict[bytes, int]]:
        """Entries already in the log with the dedup key of any of ``items``, and
        how many of its first rows (up to _KEYED_SUBJECT_ROWS) each item's
        smallest digest has.

        Keys live in the dedup table, or (schema 2, entries with a few
        subjects) on one of the first rows of the entry's smallest digest: the
        page the append writes next. One statement per chunk, not per key.
        """
        found = {
            key: StoredEntry(idx, data, lh)
            for key, idx, data, lh in _rows_in(
                conn,
                "SELECT d.key, e.idx, e.data, e.leaf_hash FROM dedup d JOIN entries e ON e.idx = d.idx "
                "WHERE d.key IN ({marks})",
                [item.dedup_key for item in items],
            )
        }
        keyed = [item for item in items if 0 < len(item.subject_digests) < _SUBJECTS_IN_SQL]
        rows_of = dict.fromkeys((min(item.subject_digests) for item in keyed), 0)
        if self._schema < 2:  # a read-only version-1 file: no keys on subject rows
            return found, rows_of
        # Items may share their smallest digest: a row whose key is some item's
        # key is that item's duplicate, whichever digest it was read for.
        wanted = {item.dedup_key for item in keyed}
        matches: dict[bytes, int] = {}
        digests = list(rows_of)
        for start in range(0, len(digests), _PROBE_CHUNK):
            chunk = digests[start : start + _PROBE_CHUNK]
            sql = " UNION ALL ".join([_FIRST_SUBJECT_ROWS] * len(chunk))
            for digest, idx, key in conn.execute(sql, chunk):
                rows_of[digest] += 1
                if key in wanted:
                    matches[key] = idx
        if matches:
            by_index = {
                idx: StoredEntry(idx, data, lh)
                for idx, data, lh in _rows_in(
                    conn, "SELECT idx, data, leaf_hash FROM entries WHERE idx IN ({marks})",
                    sorted(set(matches.values())),
                )
            }
            found.update((key, by_index[idx]) for key, idx in matches.items())
        return found, rows_of

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
        rows = _rows_in(
            self._reader(), "SELECT idx, data, leaf_hash FROM entries WHERE idx IN ({marks})",
            sorted(set(indices)),
        )
        return {row[0]: StoredEntry(*row) for row in rows}

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
            # A join from the wanted IDs searches the primary key per ID; the
            # row-value `IN (VALUES ...)` form made SQLite scan the whole table.
            for level, idx, h in conn.execute(
                f"SELECT n.level, n.idx, n.hash FROM (VALUES {values}) AS v "
                "JOIN nodes AS n ON n.level = v.column1 AND n.idx = v.column2",
                params,
            ):
                found[NodeID(level, idx)] = h
        return found

    def _nodes(self, ids: Sequence[NodeID]) -> dict[NodeID, bytes]:
        cached = self._proofs.get
        found: dict[NodeID, bytes] = {}
        missing_ids = []
        for node in ids:
            h = cached(node.level, node.index)
            if h is None:
                missing_ids.append(node)
            else:
                found[node] = h
        if missing_ids:
            found.update(self._read_nodes(self._reader(), missing_ids))
        if len(found) != len(set(ids)):
            missing = sorted(set(ids) - set(found))
            raise TamperedStoreError(f"stored tree is missing nodes {missing[:5]}")
        return found

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        if not 0 <= index < size:
            raise InvalidInput("index", f"{index} is not below the tree size {size}")
        edges = self._proofs.edges.get(size)
        if edges is not None:
            return self._inclusion_from_edges(index, size, edges)
        plan = inclusion_plan(index, size)
        return plan.assemble(self._nodes(plan.node_ids()))

    def inclusion_proofs(self, indices: Iterable[int], size: int) -> dict[int, list[bytes]]:
        """:meth:`inclusion_proof` of many leaves in one tree: the nodes not in memory
        are read together, a few queries in all instead of one per leaf."""
        self._check_size(size)
        wanted = sorted(set(indices))
        for index in wanted:
            if not 0 <= index < size:
                raise InvalidInput("index", f"{index} is not below the tree size {size}")
        edges = self._proofs.edges.get(size)
        if edges is None or len(wanted) < _WALK_MIN_RUN:
            return {index: self.inclusion_proof(index, size) for index in wanted}
        proofs: dict[int, list[bytes]] = {}
        # Runs of neighbouring leaves (a group's receipts) share most of their
        # paths: one walk of the tree gives them (about 1.6 us per leaf against 9).
        alone: list[int] = []
        for begin, end in _runs(wanted):
            walked = self._walk_range(begin, end, size, edges) if end - begin >= _WALK_MIN_RUN else None
            if walked is None:
                alone.extend(range(begin, end))
            else:
                proofs.update(zip(range(begin, end), walked))
        holes: list[tuple[list[bytes], int, int, int]] = []  # (proof, position, level, index)
        for index in alone:
            proof, unread = self._path_from_edges(index, size, edges)
            proofs[index] = proof
            holes.extend((proof, position, level, idx) for position, level, idx in unread)
        if holes:
            nodes = sorted({(level, idx) for _, _, level, idx in holes})
            found: dict[tuple[int, int], bytes] = {}
            for start in range(0, len(nodes), _IN_CHUNK):
                found.update(self._read_path_nodes(nodes[start : start + _IN_CHUNK]))
            for proof, position, level, idx in holes:
                proof[position] = found[(level, idx)]
        return proofs

    def _walk_range(
        self, begin: int, end: int, size: int, edges: dict[int, bytes]
    ) -> list[list[bytes]] | None:
        """The paths of leaves ``[begin, end)`` from one walk of the tree (sharing the part
        above the range), or None if a node it needs is not in memory."""
        cache = self._proofs

        def node(level: int, idx: int) -> bytes:
            found = cache.get(level, idx)
            if found is None:
                raise _NotInMemory
            return found

        try:
            # Every right-edge range the walk asks for starts where the frontier splits,
            # which ``edges`` always holds: a KeyError there is a bug and is raised.
            return inclusion_proofs_of_range(begin, end, size, node, edges.__getitem__)
        except _NotInMemory:
            return None

    def _inclusion_from_edges(self, index: int, size: int, edges: dict[int, bytes]) -> list[bytes]:
        proof, unread = self._path_from_edges(index, size, edges)
        if unread:
            found = self._read_path_nodes([(lvl, idx) for _, lvl, idx in unread])
            for position, lvl, idx in unread:
                proof[position] = found[(lvl, idx)]
        return proof

    def _path_from_edges(
        self, index: int, size: int, edges: dict[int, bytes]
    ) -> tuple[list[bytes], list[tuple[int, int, int]]]:
        """The audit path from cached nodes and right-edge hashes, leaf first, with
        the (position, level, index) of the nodes still to read from disk.

        Each sibling is a perfect subtree (one node, from memory or else read
        from disk) or, at most once, the partial range [begin, size) on the
        right edge, whose hash ``edges`` holds.
        """
        cache = self._proofs
        if cache.hot_level == 0:
            # Every level in memory (a small log): the path straight from the lists, as
            # inclusion_nodes lays it out, without building it first. A node not there
            # (a level given up meanwhile) leaves it to the general walk below.
            levels = cache.levels
            inner = (index ^ (size - 1)).bit_length()
            partial = inner > 1 and size & ((1 << (inner - 1)) - 1)
            try:
                proof = [levels[level][(index >> level) ^ 1] for level in range(inner - 1 if partial else inner)]
                if partial:
                    proof.append(edges[((index >> (inner - 1)) ^ 1) << (inner - 1)])
                high, level = index >> inner, inner
                while high:
                    if high & 1:
                        proof.append(levels[level][high ^ 1])
                    high >>= 1
                    level += 1
            except IndexError:
                pass
            else:
                return proof, []
        path, edge = inclusion_nodes(index, size)
        # The path goes up level by level: the nodes below hot_level come first
        # (recent ones from a dict, else read from disk), then the dense levels:
        # index the lists, no branch or call per node.
        split = bisect_left(path, (cache.hot_level, -1))
        recent = cache.recent
        proof: list[bytes | None] = (
            [recent.get(idx << 6 | level) for level, idx in path[:split]] if recent else [None] * split
        )
        levels = cache.levels
        try:
            if edge < split:
                proof += [levels[level][idx] for level, idx in path[split:]]
            else:
                proof += [levels[level][idx] for level, idx in path[split:edge]]
                proof.append(None)  # the partial subtree, from `edges` below
                proof += [levels[level][idx] for level, idx in path[edge + 1 :]]
        except IndexError:  # not cached (a node missing on disk): read below
            proof = [cache.get(level, idx) for level, idx in path]
        if edge >= 0:
            level, idx = path[edge]
            proof[edge] = edges[idx << level]
        unread: list[tuple[int, int, int]] = []  # (position in proof, level, index)
        if None in proof:
            unread = [(k, *path[k]) for k, h in enumerate(proof) if h is None]
            for position, _, _ in unread:
                proof[position] = b""  # filled in by the caller from disk
        return proof, unread  # type: ignore[return-value]  # no None left

    def _read_path_nodes(self, wanted: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Nodes (level, index) of audit paths, in a single query."""
        leaves = [idx for level, idx in wanted if level == 0]
        inner = [(level, idx) for level, idx in wanted if level > 0]
        parts = []
        params: list[int] = []
        if leaves:
            parts.append(f"SELECT 0, idx, leaf_hash FROM entries WHERE idx IN ({','.join('?' * len(leaves))})")
            params.extend(leaves)
        if inner:
            parts.append(
                f"SELECT n.level, n.idx, n.hash FROM (VALUES {','.join('(?, ?)' for _ in inner)}) AS v "
                "JOIN nodes AS n ON n.level = v.column1 AND n.idx = v.column2"
            )
            params.extend(v for pair in inner for v in pair)
        found = {(level, idx): h for level, idx, h in self._reader().execute(" UNION ALL ".join(parts), params)}
        if len(found) != len(set(wanted)):
            missing = sorted(set(wanted) - set(found))
            raise TamperedStoreError(f"stored tree is missing nodes (level, index) {missing[:5]}")
        return found

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

    def lookup_many(self, digests: Sequence[bytes], *, below: int | None = None) -> dict[bytes, list[int]]:
        """:meth:`lookup` for many digests in one query per 500; digests with no entry are absent."""
        limit = self._size if below is None else below
        out: dict[bytes, list[int]] = {}
        for digest, idx in _rows_in(
            self._reader(),
            "SELECT digest, idx FROM subjects WHERE digest IN ({marks}) AND idx < ? ORDER BY digest, idx",
            list(dict.fromkeys(digests)), limit,
        ):
            out.setdefault(digest, []).append(idx)
        return out

    def lookup_hits(self, digests: Sequence[bytes], *, below: int | None = None) -> dict[bytes, list[SubjectHit]]:
        """:meth:`lookup_many`, each hit saying whether its entry commits to a batch and
        whether any revocation names it (at any index: see :meth:`revocations`), in the
        same query: one per 500 digests instead of three."""
        limit = self._size if below is None else below
        out: dict[bytes, list[SubjectHit]] = {}
        for digest, idx, batched, revoked in _rows_in(
            self._reader(),
            "SELECT s.digest, s.idx, EXISTS(SELECT 1 FROM batches b WHERE b.idx = s.idx), "
            "EXISTS(SELECT 1 FROM revocations r WHERE r.target = s.idx) "
            "FROM subjects s WHERE s.digest IN ({marks}) AND s.idx < ? ORDER BY s.digest, s.idx",
            list(dict.fromkeys(digests)), limit,
        ):
            out.setdefault(digest, []).append(SubjectHit(idx, bool(batched), bool(revoked)))
        return out

    def batched(self, indices: Iterable[int]) -> set[int]:
        """Which of ``indices`` are entries committing to a batch of digests."""
        rows = _rows_in(self._reader(), "SELECT idx FROM batches WHERE idx IN ({marks})", sorted(set(indices)))
        return {r[0] for r in rows}

    def batch_digests(self, index: int) -> bytes:
        row = self._reader().execute("SELECT digests FROM batches WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise NotFound(f"entry {index} does not commit to a batch")
        return row[0]

    def revocations(self, targets: Iterable[int], *, below: int | None = None) -> dict[int, list[int]]:
        limit = self._size if below is None else below
        out: dict[int, list[int]] = {}
        for target, idx in _rows_in(
            self._reader(),
            "SELECT target, idx FROM revocations WHERE target IN ({marks}) AND idx < ? ORDER BY idx",
            sorted(set(targets)), limit,
        ):
            out.setdefault(target, []).append(idx)
        return out

    def key_event_indices(self, *, below: int | None = None) -> list[int]:
        limit = self._size if below is None else below
        rows = self._reader().execute("SELECT idx FROM key_events WHERE idx < ? ORDER BY idx", (limit,))
        return [r[0] for r in rows]
