"""``audit verify``: re-check a mirror (or a server's database file) from scratch.

One pass in index order, O(log n) memory for the tree:

* every index is present once; the stored leaf hash is the hash of the stored
  bytes; the bytes decode and encode their own index; the hash chain links;
* the root recomputed over the entries equals every stored checkpoint's root at
  its size, and every checkpoint note is signed by the pinned log key. Two
  checkpoints whose roots both match one recomputed tree are consistent by
  construction; the consistency proofs the server gave during mirroring are
  re-verified too;
* key events replay (signed by the log key, valid transitions); every
  attestation and revocation is signed by a key of its submitting vendor that
  was valid at that index (registrations, rotations and revocations before it);
* every statement is valid, batch digests hash to the signed batch root, and
  every revocation names an earlier attestation entry of the same vendor by its
  exact leaf hash.
"""

from __future__ import annotations

import hmac
import multiprocessing
import os
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from anchorlog.client.audit.findings import Check, Finding, FindingSink
from anchorlog.client.audit.mirror import Progress, _NoProgress
from anchorlog.client.audit.mirror_db import iter_entries, open_readonly, unpack_hashes
from anchorlog.ledger.attestation import check_attestation
from anchorlog.ledger.checkpoint import verify_checkpoint
from anchorlog.ledger.dsse import Envelope
from anchorlog.ledger.entry import MAX_ENVELOPE_BYTES, ZERO_HASH, EntryKind, LogEntry, decode_entry
from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.keys import KeyRegistry, open_key_event, signing_key
from anchorlog.ledger.merkle import (
    EMPTY_ROOT,
    append_leaves,
    frontier_root,
    leaf_hash,
    verify_consistency,
)
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import RevocationPredicate, parse_revocation_targets

# A verifier checks what was logged; the server's submission limits do not apply.
_NO_LIMIT = 1 << 40
# Below this many entries, worker start-up costs more than it saves.
PARALLEL_MIN_ENTRIES = 50_000
PARALLEL_CHUNK = 25_000
_TREE_BUFFER = 4096


@dataclass(frozen=True)
class VerifyResult:
    entries: int
    checkpoints: int
    signatures: int
    findings: FindingSink

    def to_json(self) -> dict[str, object]:
        return {
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "signatures_verified": self.signatures,
            **self.findings.to_json(),
        }


@dataclass
class _Tree:
    """The recomputed tree as a compact-range frontier: O(log n) hashes, plus a small buffer."""

    size: int = 0
    frontier: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        self.pending: list[bytes] = []

    def add(self, digest: bytes) -> None:
        self.pending.append(digest)
        if len(self.pending) >= _TREE_BUFFER:
            self._fold()

    @property
    def count(self) -> int:
        return self.size + len(self.pending)

    def _fold(self) -> None:
        grown = append_leaves(self.size, self.frontier, self.pending)
        self.size, self.frontier = grown.size, grown.frontier
        self.pending = []

    def root(self) -> bytes:
        if self.pending:
            self._fold()
        return frontier_root(self.frontier)


def verify_mirror(
    path: Path,
    verifier: NoteVerifier,
    *,
    progress: Callable[[int, int], Progress] | None = None,
    per_check: int = 100,
    workers: int | None = None,
) -> VerifyResult:
    """Verify the log file at ``path`` from scratch.

    ``workers`` > 1 checks envelopes (parsing and signatures, the bulk of the
    work) in that many processes, in index ranges, each replaying the key
    registry up to its range; by default, one per CPU for logs of at least
    ``PARALLEL_MIN_ENTRIES`` entries. The findings are the same either way.
    """
    conn = open_readonly(path)
    try:
        (top,) = conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM entries").fetchone()
        if workers is None:
            workers = min(os.cpu_count() or 1, 8) if top >= PARALLEL_MIN_ENTRIES else 1
        if workers < 1:
            raise InvalidInput("workers", "must be at least 1")
        findings = FindingSink(per_check=per_check)
        result, key_events = _verify(conn, verifier, progress, findings, content=workers == 1)
    finally:
        conn.close()
    if workers > 1 and top:
        signatures = _parallel_content(path, verifier, key_events, top, workers, findings, progress)
        result = replace(result, signatures=result.signatures + signatures)
    findings.findings.sort(key=lambda f: (f.index is not None, f.index or 0))
    return result


def _content_chunk(
    task: tuple[str, str, list[tuple[int, bytes]], int, int, int],
) -> tuple[list[Finding], dict[Check, int], int, int]:
    """Envelope checks for entries [start, end) in a worker process."""
    path, vkey, key_events, start, end, per_check = task
    verifier = NoteVerifier.from_vkey(vkey)
    conn = open_readonly(Path(path))
    findings = FindingSink(per_check=per_check)
    registry = KeyRegistry()
    events = deque(key_events)
    signatures = count = 0
    try:
        batches = _Batches(conn, _has_table(conn, "batches"), start, end)
        lookup = conn.cursor()
        for index, _, data in iter_entries(conn, start, end):
            while events and events[0][0] < index:
                event_index, event_data = events.popleft()
                # These replayed in the first pass; replaying again cannot fail.
                registry.apply(open_key_event(decode_entry(event_data).envelope, verifier.public_key), event_index)
            count += 1
            try:
                entry = decode_entry(data)
            except InvalidInput:
                continue  # reported by the first pass
            if entry.kind is not EntryKind.KEY_EVENT:
                signatures += _check_content(index, entry, registry, batches, lookup, findings)
    finally:
        conn.close()
    return findings.findings, dict(findings.counts), signatures, count


def _parallel_content(
    path: Path,
    verifier: NoteVerifier,
    key_events: list[tuple[int, bytes]],
    top: int,
    workers: int,
    findings: FindingSink,
    progress: Callable[[int, int], Progress] | None,
) -> int:
    chunk = max(1000, min(PARALLEL_CHUNK, -(-top // workers)))
    tasks = [
        (str(path), verifier.vkey(), [e for e in key_events if e[0] < end], start, end, findings.per_check)
        for start, end in ((s, min(s + chunk, top)) for s in range(0, top, chunk))
    ]
    bar = (progress or (lambda total, initial: _NoProgress()))(top, 0)
    signatures = 0
    # spawn, not fork: the caller may hold gRPC channels, which do not survive fork.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        try:
            for found, counts, signed, count in pool.imap(_content_chunk, tasks):
                findings.absorb(found, counts)
                signatures += signed
                bar.update(count)
        finally:
            bar.close()
    return signatures


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone() is not None


def _verify(
    conn: sqlite3.Connection,
    verifier: NoteVerifier,
    progress: Callable[[int, int], Progress] | None,
    findings: FindingSink,
    *,
    content: bool,
) -> tuple[VerifyResult, list[tuple[int, bytes]]]:
    """The first pass: structure, tree, checkpoints and key events (and envelopes if ``content``).

    Returns the key events that replayed, for envelope checks done elsewhere.
    """
    checkpoints = _check_checkpoints(conn, verifier, findings)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "consistency" in tables:
        _check_consistency_proofs(conn, checkpoints, findings)
    batches = _Batches(conn, "batches" in tables)
    lookup = conn.cursor()
    (top,) = conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM entries").fetchone()
    bar = (progress or (lambda total, initial: _NoProgress()))(top, 0)
    registry = KeyRegistry()
    key_events: list[tuple[int, bytes]] = []
    tree = _Tree()
    due = sorted(checkpoints)  # sizes at which to compare the root
    due_at = 0
    previous = ZERO_HASH
    expected = 0
    signatures = 0
    count = 0
    if due and due[0] == 0:
        _compare_root(tree, 0, checkpoints[0], findings)
        due_at = 1
    try:
        for index, stored_hash, data in iter_entries(conn):
            count += 1
            after_gap = index != expected
            if after_gap:
                if index > expected:
                    findings.add(
                        Check.ENTRY_MISSING, expected,
                        f"entries {expected}..{index - 1} are missing" if index - 1 > expected
                        else f"entry {expected} is missing",
                        missing=index - expected,
                    )
                expected = index
            digest = leaf_hash(data)
            if not hmac.compare_digest(digest, stored_hash or b""):
                findings.add(Check.LEAF_HASH, index, "the stored bytes do not hash to the stored leaf hash")
            tree.add(digest)
            while due_at < len(due) and due[due_at] == tree.count:
                _compare_root(tree, due[due_at], checkpoints[due[due_at]], findings)
                due_at += 1
            try:
                entry = decode_entry(data)
            except InvalidInput as exc:
                findings.add(Check.ENTRY_DECODE, index, f"entry bytes do not decode: {exc}")
                previous, expected = digest, expected + 1
                bar.update(1)
                continue
            if entry.index != index:
                findings.add(
                    Check.ENTRY_INDEX, index, f"entry bytes encode index {entry.index}, not {index}",
                    encoded_index=entry.index,
                )
            # After a gap the missing entry is the finding; the link cannot be checked.
            if index and not after_gap and not hmac.compare_digest(entry.previous_hash, previous):
                findings.add(
                    Check.HASH_CHAIN, index,
                    f"hash chain broken: the previous hash recorded does not match entry {index - 1}",
                    previous_index=index - 1,
                )
            elif index == 0 and entry.previous_hash != ZERO_HASH:
                findings.add(Check.HASH_CHAIN, 0, "the first entry's previous hash is not zero")
            if entry.kind is EntryKind.KEY_EVENT:
                signatures += 1
                try:
                    registry.apply(open_key_event(entry.envelope, verifier.public_key), index)
                    key_events.append((index, data))
                except (InvalidInput, VerificationError) as exc:
                    findings.add(Check.KEY_EVENT, index, f"key event does not replay: {exc}")
            elif content:
                signatures += _check_content(index, entry, registry, batches, lookup, findings)
            previous, expected = digest, expected + 1
            bar.update(1)
    finally:
        bar.close()
    for size in due[due_at:]:
        findings.add(
            Check.CHECKPOINT_ROOT, None,
            f"a checkpoint signs size {size} but the log holds only {tree.count} entries",
            size=size,
        )
    return VerifyResult(count, len(checkpoints), signatures, findings), key_events


def _compare_root(tree: _Tree, size: int, signed_root: bytes, findings: FindingSink) -> None:
    root = EMPTY_ROOT if size == 0 else tree.root()
    if not hmac.compare_digest(root, signed_root):
        findings.add(
            Check.CHECKPOINT_ROOT, None,
            f"the root recomputed over entries 0..{size - 1} ({root.hex()[:16]}…) does not match "
            f"the checkpoint signed at size {size} ({signed_root.hex()[:16]}…)",
            size=size,
        )


def _check_checkpoints(
    conn: sqlite3.Connection, verifier: NoteVerifier, findings: FindingSink
) -> dict[int, bytes]:
    """Signed root by size, for every stored checkpoint whose note verifies."""
    out: dict[int, bytes] = {}
    rows = conn.execute(
        "SELECT size, CAST(root AS BLOB), CAST(note AS BLOB) FROM checkpoints ORDER BY size"
    )
    for size, root, note in rows:
        try:
            checkpoint = verify_checkpoint(note, verifier)
        except (InvalidInput, VerificationError) as exc:
            findings.add(
                Check.CHECKPOINT_SIGNATURE, None,
                f"checkpoint stored at size {size} does not verify with the log key: {exc}", size=size,
            )
            continue
        if checkpoint.size != size or not hmac.compare_digest(checkpoint.root_hash, root or b""):
            findings.add(
                Check.CHECKPOINT_ROW, None,
                f"checkpoint row at size {size} does not match its signed note "
                f"(note signs size {checkpoint.size})",
                size=size,
            )
        out[checkpoint.size] = checkpoint.root_hash
    return out


def _check_consistency_proofs(
    conn: sqlite3.Connection, checkpoints: dict[int, bytes], findings: FindingSink
) -> None:
    for first, second, proof in conn.execute(
        "SELECT first_size, second_size, proof FROM consistency ORDER BY second_size"
    ):
        if first not in checkpoints or second not in checkpoints:
            findings.add(
                Check.CHECKPOINT_CONSISTENCY, None,
                f"a consistency proof {first}->{second} refers to a checkpoint not stored",
                first_size=first, second_size=second,
            )
            continue
        try:
            verify_consistency(first, second, checkpoints[first], checkpoints[second], unpack_hashes(proof))
        except (InvalidInput, VerificationError) as exc:
            findings.add(
                Check.CHECKPOINT_CONSISTENCY, None,
                f"checkpoint at size {second} is not proved consistent with size {first}: {exc}",
                first_size=first, second_size=second,
            )


def _check_content(
    index: int,
    entry: LogEntry,
    registry: KeyRegistry,
    batches: _Batches,
    lookup: sqlite3.Cursor,
    findings: FindingSink,
) -> int:
    """Check one attestation or revocation envelope; return how many signatures were verified."""
    digests = batches.get(index) if entry.kind is EntryKind.ATTESTATION else b""
    attestation = None
    try:
        attestation = check_attestation(
            entry.envelope, digests, max_subjects=_NO_LIMIT, max_batch=_NO_LIMIT,
            max_envelope_bytes=MAX_ENVELOPE_BYTES,
        )
        envelope = attestation.envelope
    except InvalidInput as exc:
        check = Check.BATCH_DIGESTS if exc.field.startswith("batch_digests") else Check.STATEMENT
        findings.add(check, index, f"invalid: {exc}")
        try:
            envelope = Envelope.parse(entry.envelope)
        except InvalidInput:
            return 0  # no envelope, so no signature to check: the finding above says why
    if signing_key(envelope, index, entry, registry) is None:
        findings.add(
            Check.SIGNATURE, index,
            f"not signed by any key of vendor {entry.submitter!r} valid at this index",
            vendor=entry.submitter,
        )
    if attestation is None:
        return 1
    is_revocation = isinstance(attestation.predicate, RevocationPredicate)
    if is_revocation != (entry.kind is EntryKind.REVOCATION):
        findings.add(
            Check.STATEMENT, index,
            f"entry kind {entry.kind.name.lower()} does not match its predicate type "
            f"{attestation.statement.predicate_type}",
        )
    if is_revocation:
        _check_revocation_targets(index, entry, attestation.statement, lookup, findings)
    return 1


class _Batches:
    """Batch digests by entry index; which indices have them is read once, the blobs on demand."""

    def __init__(self, conn: sqlite3.Connection, present: bool, start: int = 0, end: int = 1 << 62) -> None:
        self._conn = conn
        self._indices = (
            {r[0] for r in conn.execute("SELECT idx FROM batches WHERE idx >= ? AND idx < ?", (start, end))}
            if present else set()
        )

    def get(self, index: int) -> bytes:
        if index not in self._indices:
            return b""
        row = self._conn.execute("SELECT digests FROM batches WHERE idx = ?", (index,)).fetchone()
        return bytes(row[0]) if row else b""


def _check_revocation_targets(
    index: int, entry: LogEntry, statement: object, lookup: sqlite3.Cursor, findings: FindingSink
) -> None:
    for target, named_hash in parse_revocation_targets(statement):  # type: ignore[arg-type]
        if target >= index:
            findings.add(
                Check.REVOCATION_TARGET, index, f"revokes entry {target}, which is not earlier", target=target
            )
            continue
        row = lookup.execute("SELECT CAST(data AS BLOB) FROM entries WHERE idx = ?", (target,)).fetchone()
        if row is None:
            findings.add(Check.REVOCATION_TARGET, index, f"revokes entry {target}, which does not exist", target=target)
            continue
        if not hmac.compare_digest(leaf_hash(row[0]), named_hash):
            findings.add(
                Check.REVOCATION_TARGET, index,
                f"names entry {target} with a leaf hash that is not that entry's", target=target,
            )
            continue
        try:
            revoked = decode_entry(row[0])
        except InvalidInput:
            findings.add(Check.REVOCATION_TARGET, index, f"revokes entry {target}, which does not decode", target=target)
            continue
        if revoked.kind is not EntryKind.ATTESTATION:
            findings.add(
                Check.REVOCATION_TARGET, index,
                f"revokes entry {target}, a {revoked.kind.name.lower()} entry, not an attestation",
                target=target,
            )
        elif revoked.submitter != entry.submitter:
            findings.add(
                Check.REVOCATION_TARGET, index,
                f"vendor {entry.submitter!r} revokes entry {target} of vendor {revoked.submitter!r}",
                target=target,
            )
