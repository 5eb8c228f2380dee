"""The log's durable high-water mark (``log.head``), kept outside ``ledger.db``.

``ledger.db`` alone cannot tell that it was replaced by an older copy: an old
backup is a perfectly sound log. Started on it with the same ``log.key``, the
server would sign new checkpoints at sizes it already signed with different
entries (a fork). ``log.head`` holds the latest signed checkpoint note; it is
replaced atomically (temp file, fsync, rename, fsync of the directory) after
every committed group and before any caller hears "accepted", so whatever was
acknowledged is covered by it. On start the database must reach it: at least
as large, and with the same root at the head's size.

It cannot help where it is missing (a restore onto a fresh machine): clients
that hold a later checkpoint detect that fork themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

from anchorlog.ledger.checkpoint import Checkpoint
from anchorlog.ledger.errors import LedgerError, TamperedStoreError
from anchorlog.ledger.note import NoteVerifier, open_note
from anchorlog.ledger.store import LogStore, SignedCheckpoint

HEAD_FILE = "log.head"
# A checkpoint note is a few hundred bytes; anything far larger is not one.
MAX_HEAD_BYTES = 64 << 10


class LogBehindHead(TamperedStoreError):
    """ledger.db is older than (or forked from) a checkpoint this log already signed."""


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class HeadFile:
    """Read and durably replace ``log.head`` in one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / HEAD_FILE
        self._temp = data_dir / (HEAD_FILE + ".tmp")
        self._written_size = -1

    def read(self, verifier: NoteVerifier) -> Checkpoint | None:
        """The recorded head, its signature checked; None if there is no head file."""
        try:
            with open(self.path, "rb") as handle:
                note = handle.read(MAX_HEAD_BYTES + 1)
        except FileNotFoundError:
            return None
        if len(note) > MAX_HEAD_BYTES:
            raise TamperedStoreError(f"{self.path} is larger than a checkpoint note")
        try:
            return Checkpoint.parse(open_note(note, [verifier]).text)
        except LedgerError as exc:
            raise TamperedStoreError(
                f"{self.path} is not a checkpoint signed by this log's key: {exc}"
            ) from None

    def write(self, checkpoint: SignedCheckpoint) -> None:
        """Replace the head with ``checkpoint`` durably; a smaller or equal size is a no-op."""
        if checkpoint.size <= self._written_size:
            return
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(checkpoint.note)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._temp, self.path)
        fsync_dir(self.path.parent)
        self._written_size = checkpoint.size


def check_store_reaches_head(store: LogStore, head: Checkpoint, path: Path) -> None:
    """Refuse a database that is behind ``head`` or disagrees with it at its size."""
    advice = (
        "starting would sign checkpoints inconsistent with one this log already published; "
        "recover the missing entries (the newest backup or the live database), or start a new "
        "log with a new origin and key"
    )
    if store.size < head.size:
        raise LogBehindHead(
            f"ledger.db holds {store.size} entries but {path} records a signed checkpoint at "
            f"size {head.size} (an older copy of the database?): {advice}"
        )
    if store.root_at(head.size) != head.root_hash:
        raise LogBehindHead(
            f"ledger.db's tree at size {head.size} has a different root than the signed "
            f"checkpoint recorded in {path} (a different history?): {advice}"
        )
