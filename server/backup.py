"""Online backup of the log database with SQLite's backup API.

The copy is taken in one backup step, i.e. inside one read transaction on the
live database: in WAL mode that snapshot is consistent (a whole number of append
groups, each with its checkpoint) and the server's writer is never blocked.
The copy is then checked before it gets its final name: SQLite ``quick_check``,
the stored tree against its last checkpoint (the same check ``serve`` runs on
start), and that checkpoint's signature with the log key when it is in the data
directory.

Tokens (``tokens.db``), the log key and the high-water mark ``log.head`` are
deliberately not in the backup: a restore is a new data directory holding the
backup as ``ledger.db`` plus the original ``log.key`` (mode 0600); the server
issues a fresh admin token on first start there. A backup is older than the
live log by design, so copying it back over a data directory that still holds
``log.head`` is refused on start (see :mod:`anchorlog.server.head`).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.request import pathname2url

from anchorlog.ledger.checkpoint import Checkpoint
from anchorlog.ledger.errors import InvalidInput, StorageUnavailable, TamperedStoreError
from anchorlog.ledger.merkle import append_leaves, frontier_root
from anchorlog.ledger.note import open_note
from anchorlog.ledger.store import HOT_LEVEL, LogStore, SignedCheckpoint
from anchorlog.server.app import DB_FILE, KEY_FILE, load_signer
from anchorlog.server.head import fsync_dir

FULL_CHECK_CHUNK = 100_000


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    size: int
    root_hash: bytes
    checkpoint: bytes
    bytes_written: int
    signature_checked: bool


def _read_only_uri(path: Path) -> str:
    return f"file:{pathname2url(str(path.resolve()))}?mode=ro"


def _stored_origin(conn: sqlite3.Connection) -> str:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()
    except sqlite3.Error as exc:
        raise StorageUnavailable(f"not an anchorlog database: {exc}") from exc
    if row is None:
        raise StorageUnavailable("the database names no log origin")
    return str(row[0])


def _full_check(store: LogStore, latest: SignedCheckpoint | None) -> None:
    """Re-hash every entry and its chain link, and rebuild the root from all leaves."""
    store.verify_entries(0, store.size)
    size, frontier = 0, ()
    while size < store.size:
        chunk = store.leaf_hashes(size, min(size + FULL_CHECK_CHUNK, store.size))
        grown = append_leaves(size, frontier, chunk)
        size, frontier = grown.size, grown.frontier
    if latest is not None and frontier_root(frontier) != latest.root_hash:
        raise TamperedStoreError("the root rebuilt from every entry differs from the last checkpoint")


def verify_backup(path: Path, data_dir: Path | None = None, *, full: bool = False) -> BackupSummary:
    """Check a backup file without writing to it; raise if it is not a sound log."""
    conn = sqlite3.connect(_read_only_uri(path), uri=True, isolation_level=None)
    try:
        (verdict,) = conn.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise TamperedStoreError(f"backup fails SQLite quick_check: {verdict}")
        origin = _stored_origin(conn)
    finally:
        conn.close()
    # A file without write bits is opened read-only (see LogStore), so checking
    # the copy never changes it.
    mode = path.stat().st_mode
    path.chmod(0o400)
    try:
        # Only the always-kept levels: a check reads few proofs.
        store = LogStore(path, origin=origin, hot_level=HOT_LEVEL)
        try:
            latest = store.latest_checkpoint()
            if full:
                _full_check(store, latest)
        finally:
            store.close()
    finally:
        path.chmod(mode & 0o7777)
    if latest is None:
        raise TamperedStoreError("backup holds no signed checkpoint")
    checked = False
    if data_dir is not None and (data_dir / KEY_FILE).exists():
        signer = load_signer(data_dir / KEY_FILE)
        body = Checkpoint.parse(open_note(latest.note, [signer.verifier()]).text)
        if body.size != latest.size or body.root_hash != latest.root_hash:
            raise TamperedStoreError("the backup's last checkpoint note does not match its row")
        checked = True
    return BackupSummary(path, latest.size, latest.root_hash, latest.note, path.stat().st_size, checked)


def backup(data_dir: Path, out: Path, *, overwrite: bool = False, full_check: bool = False) -> BackupSummary:
    """Copy ``data_dir``'s live log database to ``out`` consistently, then verify the copy."""
    source = data_dir / DB_FILE
    if not source.is_file():
        raise InvalidInput("data", f"{source} does not exist")
    if out.exists() and not overwrite:
        raise InvalidInput("out", f"{out} exists (pass --force to replace it)")
    if out.resolve() == source.resolve():
        raise InvalidInput("out", "must not be the live database")
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        src = sqlite3.connect(_read_only_uri(source), uri=True, isolation_level=None, timeout=30)
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            # pages=-1: the whole database in one step, so one read snapshot.
            src.backup(dst, pages=-1)
            # A self-contained file: no -wal beside it.
            dst.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"backup failed: {exc}") from exc
        finally:
            dst.close()
            src.close()
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        summary = verify_backup(partial, data_dir, full=full_check)
        os.replace(partial, out)
        fsync_dir(out.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return replace(summary, path=out)
