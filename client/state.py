"""The last checkpoint this client trusted, kept in a small JSON file.

Each later checkpoint must be proved consistent with it before it replaces it;
a checkpoint that cannot be is evidence of a forked or rewritten log.
The file is replaced atomically (write, fsync, rename). Several clients may
share one state file: :func:`advance_trusted` takes an exclusive lock, re-reads
the file under it and only ever moves it forward along one proved-consistent
history, so one client can never roll back what another already trusts.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from anchorlog.client.verify import VerifiedCheckpoint, check_checkpoint, check_consistency
from anchorlog.ledger.errors import InconsistentLogError, VerificationError
from anchorlog.ledger.note import NoteVerifier


def _state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "anchorlog"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def default_state_path(verifier: NoteVerifier) -> Path:
    """One state file per pinned log key, under ``$XDG_STATE_HOME/anchorlog``."""
    return _state_dir() / f"{_safe(verifier.name)}-{verifier.key_id.hex()}.json"


def default_tofu_state_path(address: str) -> Path:
    """Trust on first use pins the key per server address (the key is not known yet)."""
    return _state_dir() / f"tofu-{_safe(address)}.json"


def pinned_vkey(path: Path) -> str | None:
    """The log key pinned in a state file, or None when there is no state file yet."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"state file {path} is corrupt: {exc}") from exc
    vkey = doc.get("vkey") if isinstance(doc, dict) else None
    if not isinstance(vkey, str):
        raise VerificationError(f"state file {path} is corrupt: no pinned log key")
    return vkey


def load_trusted(path: Path, verifier: NoteVerifier) -> VerifiedCheckpoint | None:
    """Read and re-verify the trusted checkpoint; None if the file does not exist."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise TypeError("not a JSON object")
        if doc.get("vkey") != verifier.vkey():
            raise VerificationError(
                f"state file {path} belongs to log key {doc.get('vkey')!r}, not {verifier.vkey()!r}"
            )
        note = base64.b64decode(doc["checkpoint"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"state file {path} is corrupt: {exc}") from exc
    return check_checkpoint(note, verifier)


def save_trusted(path: Path, verifier: NoteVerifier, checkpoint: VerifiedCheckpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "vkey": verifier.vkey(),
        "size": checkpoint.size,
        "checkpoint": base64.b64encode(checkpoint.note).decode(),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Fetches a consistency proof between two sizes (an RPC for a live client).
ProofSource = Callable[[int, int], list[bytes]]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<state file>.lock`` (the state file itself is replaced by rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def advance_trusted(
    path: Path, verifier: NoteVerifier, checkpoint: VerifiedCheckpoint, proofs: ProofSource
) -> VerifiedCheckpoint:
    """Record ``checkpoint`` as trusted if it extends what the file holds now; return the trusted one.

    Under the lock the file is re-read: another client may have moved it since
    this one loaded it. A larger checkpoint replaces it only when proved
    consistent with it; an equal-size one must have the same root; a smaller
    one must be a prefix of it and leaves it as is. Any failure raises
    :class:`InconsistentLogError` and leaves the file untouched.
    """
    with _locked(path):
        stored = load_trusted(path, verifier)
        if stored is None or stored.size == 0:
            save_trusted(path, verifier, checkpoint)
            return checkpoint
        if checkpoint.size > stored.size:
            check_consistency(stored, checkpoint, proofs(stored.size, checkpoint.size))
            save_trusted(path, verifier, checkpoint)
            return checkpoint
        if checkpoint.size == stored.size:
            check_consistency(stored, checkpoint, ())
            return stored
        if checkpoint.size > 0:
            try:
                check_consistency(checkpoint, stored, proofs(checkpoint.size, stored.size))
            except InconsistentLogError as exc:
                raise InconsistentLogError(
                    f"checkpoint of size {checkpoint.size} is not a prefix of the size "
                    f"{stored.size} recorded in {path} (by another client sharing it): {exc}"
                ) from exc
        return stored
