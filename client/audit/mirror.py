"""``audit mirror``: copy the log into a local SQLite mirror, verifying as it goes.

For every entry fetched (entries-by-range, in pages): the index the server sent
and the index encoded in the entry bytes are the expected position, and the
entry's ``previous`` field is the leaf hash of the entry before it (the hash
chain). The tree is recomputed with a compact-range frontier (O(log n) memory),
and its root must equal the latest checkpoint's root, whose signature is checked
with the pinned log key. Each new checkpoint must be proved consistent with the
last one stored in the mirror. Pages commit with the recomputed frontier, so the
mirror is resumable and incremental: a later run fetches only new entries.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from anchorlog.client.audit.findings import Check, FindingSink
from anchorlog.client.audit.mirror_db import MirrorDB, StoredCheckpoint, TreeState
from anchorlog.client.verify import VerifiedCheckpoint, check_checkpoint
from anchorlog.ledger.entry import EntryKind, decode_entry
from anchorlog.ledger.errors import InvalidInput, LedgerError, VerificationError
from anchorlog.ledger.merkle import append_leaves, frontier_root, leaf_hash, verify_consistency
from anchorlog.ledger.note import NoteVerifier

DEFAULT_PAGE = 1000


class LogSource(Protocol):
    """What the mirror needs from a log (``LedgerClient`` provides it)."""

    def latest_raw_checkpoint(self) -> bytes: ...

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]: ...

    def raw_entries(self, start: int, end: int) -> list[tuple[int, bytes]]: ...

    def batch_digests(self, entry_index: int) -> bytes: ...


@dataclass(frozen=True)
class MirrorResult:
    previous_size: int
    size: int
    fetched: int
    checkpoint_size: int | None
    findings: FindingSink

    def to_json(self) -> dict[str, object]:
        return {
            "previous_size": self.previous_size,
            "size": self.size,
            "fetched": self.fetched,
            "checkpoint_size": self.checkpoint_size,
            **self.findings.to_json(),
        }


def commits_to_batch(envelope: bytes) -> bool:
    """Whether an attestation's statement has a batch root (so its digests are fetched).

    Loose on purpose: only decides what to download; ``audit verify`` checks strictly.
    """
    try:
        raw = base64.b64decode(json.loads(envelope)["payload"])
        # Cheap pre-check; a key spelled with escapes still gets the full parse.
        if b'"batch"' not in raw and b"\\u" not in raw:
            return False
        payload = json.loads(raw)
        return isinstance(payload.get("predicate"), dict) and "batch" in payload["predicate"]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return False


ProgressFactory = Callable[[int, int], "Progress"]


class Progress(Protocol):
    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def tqdm_progress(desc: str) -> ProgressFactory:
    """A tqdm bar on stderr (entries done, rate, time left) labelled ``desc``."""
    from tqdm import tqdm

    def factory(total: int, initial: int) -> Progress:
        return tqdm(total=total, initial=initial, unit=" entries", unit_scale=True, desc=desc)

    return factory


def mirror_log(
    source: LogSource,
    mirror_path: Path,
    verifier: NoteVerifier,
    *,
    page_size: int = DEFAULT_PAGE,
    progress: ProgressFactory | None = None,
    per_check: int = 100,
) -> MirrorResult:
    """Bring the mirror at ``mirror_path`` up to the log's latest checkpoint."""
    if page_size < 1:
        raise InvalidInput("page_size", "must be positive")
    findings = FindingSink(per_check=per_check)
    # An existing mirror made with another key is refused before anything is asked.
    db = MirrorDB(mirror_path, origin=verifier.name, verifier_key=verifier.vkey()) if mirror_path.exists() else None
    try:
        try:
            checkpoint = check_checkpoint(source.latest_raw_checkpoint(), verifier)
        except VerificationError as exc:
            findings.add(Check.CHECKPOINT_SIGNATURE, None, f"latest checkpoint does not verify: {exc}")
            size = db.tree_state().size if db is not None else 0
            return MirrorResult(size, size, 0, None, findings)
        if db is None:
            db = MirrorDB(mirror_path, origin=verifier.name, verifier_key=verifier.vkey())
        return _mirror(source, db, checkpoint, page_size, progress, findings)
    finally:
        if db is not None:
            db.close()


def _mirror(
    source: LogSource,
    db: MirrorDB,
    checkpoint: VerifiedCheckpoint,
    page_size: int,
    progress: ProgressFactory | None,
    findings: FindingSink,
) -> MirrorResult:
    state = db.tree_state()
    start_size = state.size
    stored = db.latest_checkpoint()

    def result(checkpoint_size: int | None) -> MirrorResult:
        return MirrorResult(start_size, state.size, state.size - start_size, checkpoint_size, findings)

    size, root = checkpoint.size, checkpoint.root_hash

    # The mirror's own stored state must still be what it verified before.
    if (
        stored is not None
        and stored.size == state.size
        and not hmac.compare_digest(frontier_root(state.frontier), stored.root)
    ):
        findings.add(
            Check.CHECKPOINT_ROOT, None,
            f"the mirror's recomputed root at size {state.size} no longer matches its stored "
            "checkpoint: the mirror file was modified",
            size=state.size,
        )
        return result(size)

    consistency: tuple[int, Sequence[bytes]] | None = None
    mirrored = max(stored.size if stored else 0, state.size)
    if size < mirrored:
        findings.add(
            Check.CHECKPOINT_ROLLBACK, None,
            f"the log's latest checkpoint has size {size}, below the size {mirrored} already "
            "mirrored: the log was rolled back or forked",
            latest_size=size, mirrored_size=mirrored,
        )
        return result(size)
    if stored is not None:
        if size == stored.size:
            if not hmac.compare_digest(root, stored.root):
                findings.add(
                    Check.CHECKPOINT_CONSISTENCY, None,
                    f"two checkpoints of size {size} with different roots: the log forked",
                    size=size,
                )
            return result(size)
        if stored.size > 0:
            proof = source.consistency_proof(stored.size, size)
            try:
                verify_consistency(stored.size, size, stored.root, root, proof)
                consistency = (stored.size, proof)
            except (VerificationError, InvalidInput) as exc:
                findings.add(
                    Check.CHECKPOINT_CONSISTENCY, None,
                    f"checkpoint at size {size} is not consistent with the stored checkpoint at "
                    f"size {stored.size}: {exc}",
                    first_size=stored.size, second_size=size,
                )

    bar = (progress or (lambda total, initial: _NoProgress()))(size, state.size)
    try:
        state = _fetch(source, db, state, size, page_size, findings, bar)
    finally:
        bar.close()
    if state.size < size:
        return result(size)
    recomputed = frontier_root(state.frontier)
    if not hmac.compare_digest(recomputed, root):
        findings.add(
            Check.CHECKPOINT_ROOT, None,
            f"the root recomputed from the {size} entries served ({recomputed.hex()}) does not "
            f"match the signed checkpoint root {root.hex()}",
            size=size,
        )
        return result(size)
    if findings.counts[Check.CHECKPOINT_CONSISTENCY] == 0:
        db.store_checkpoint(
            StoredCheckpoint(size, root, checkpoint.note), int(time.time() * 1000), consistency
        )
    return result(size)


def _fetch(
    source: LogSource,
    db: MirrorDB,
    state: TreeState,
    size: int,
    page_size: int,
    findings: FindingSink,
    bar: Progress,
) -> TreeState:
    """Fetch, check and store entries [state.size, size); return the state reached."""
    while state.size < size:
        expected = state.size
        try:
            page = source.raw_entries(expected, min(expected + page_size, size))
        except LedgerError as exc:
            findings.add(Check.ENTRY_MISSING, expected, f"the log did not serve entry {expected}: {exc}")
            return state
        if not page:
            findings.add(Check.ENTRY_MISSING, expected, f"the log served no entry at index {expected}")
            return state
        page = page[: size - expected]
        rows: list[tuple[int, bytes, bytes]] = []
        batches: list[tuple[int, bytes]] = []
        previous = state.last_hash
        hashes: list[bytes] = []
        for position, (sent_index, data) in enumerate(page, start=expected):
            if sent_index != position:
                findings.add(
                    Check.ENTRY_INDEX, position,
                    f"the log sent index {sent_index} where entry {position} belongs",
                    sent_index=sent_index,
                )
            digest = leaf_hash(data)
            try:
                entry = decode_entry(data)
            except InvalidInput as exc:
                findings.add(Check.ENTRY_DECODE, position, f"entry bytes do not decode: {exc}")
            else:
                if entry.index != position:
                    findings.add(
                        Check.ENTRY_INDEX, position,
                        f"entry bytes encode index {entry.index}, not {position}",
                        encoded_index=entry.index,
                    )
                if not hmac.compare_digest(entry.previous_hash, previous):
                    findings.add(
                        Check.HASH_CHAIN, position,
                        f"hash chain broken: entry {position} records previous hash "
                        f"{entry.previous_hash.hex()[:16]}…, but entry {position - 1} hashes to "
                        f"{previous.hex()[:16]}…",
                        previous_index=position - 1,
                    )
                if entry.kind is EntryKind.ATTESTATION and commits_to_batch(entry.envelope):
                    try:
                        batches.append((position, source.batch_digests(position)))
                    except LedgerError as exc:
                        findings.add(
                            Check.BATCH_DIGESTS, position, f"the log did not serve its batch digests: {exc}"
                        )
            rows.append((position, digest, data))
            hashes.append(digest)
            previous = digest
        grown = append_leaves(state.size, state.frontier, hashes)
        state = TreeState(grown.size, grown.frontier, previous)
        db.append_page(rows, batches, state)
        bar.update(len(rows))
    return state
