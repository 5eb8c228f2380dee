"""Shared plumbing for the reliability suite: vendor setup, an independent audit of
the SQLite file (opened read-only, never through LogStore) and the server's RSS.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.request import pathname2url

from anchorlog.client.ledger import LedgerClient
from anchorlog.client.receipts import Receipt, verify_receipt
from anchorlog.client.vendor import ClaimDetails, VendorKeyPair
from anchorlog.client.verify import VerifiedCheckpoint, check_entry
from anchorlog.ledger.checkpoint import Checkpoint, verify_checkpoint
from anchorlog.ledger.digests import Canonicalization
from anchorlog.ledger.entry import ZERO_HASH, decode_entry
from anchorlog.ledger.merkle import EMPTY_ROOT, NodeID, append_leaves, leaf_hash, verify_consistency
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import Claim

DETAILS = ClaimDetails(
    claim=Claim.HUMAN_VALIDATED,
    canonicalization=Canonicalization.RAW_BYTES,
    actor_id="reviewer-1",
    method="reliability suite",
)


@dataclass(frozen=True)
class Vendor:
    vendor_id: str
    key: VendorKeyPair
    token: str
    reader_token: str
    auditor_token: str


def connect(address: str, token: str, log_key: str, state: Path, timeout: float = 30.0) -> LedgerClient:
    return LedgerClient(address, token=token, log_key=log_key, state_path=state, timeout=timeout)


def provision_vendor(address: str, admin_token: str, log_key: str, state_dir: Path,
                     vendor_id: str = "acme") -> Vendor:
    """Create a vendor with one registered key and vendor, reader and auditor tokens."""
    key = VendorKeyPair.generate()
    with connect(address, admin_token, log_key, state_dir / f"admin-{vendor_id}.json") as admin:
        admin.create_vendor(vendor_id, vendor_id.title())
        admin.register_key(vendor_id, key.public_key)
        return Vendor(
            vendor_id=vendor_id,
            key=key,
            token=admin.issue_token(vendor_id, "vendor"),
            reader_token=admin.issue_token(f"{vendor_id}-reader", "reader"),
            auditor_token=admin.issue_token(f"{vendor_id}-auditor", "auditor"),
        )


def server_rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@lru_cache(maxsize=1 << 16)
def _opened_checkpoint(note: bytes, vkey: str) -> tuple[int, bytes]:
    """Signature check of a note, memoized: the same bytes verify the same way every round."""
    body = verify_checkpoint(note, NoteVerifier.from_vkey(vkey))
    return body.size, body.root_hash


def logged_errors(log_text: str) -> list[str]:
    """Server log lines at ERROR or above (unhandled exceptions are logged there)."""
    return [line for line in log_text.splitlines()
            if '"level": "ERROR"' in line or '"level": "CRITICAL"' in line]


def open_read_only(db_path: Path) -> sqlite3.Connection:
    uri = f"file:{pathname2url(str(db_path.resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)


@dataclass
class Audit:
    """What an independent read of the database found (all checks already passed)."""

    size: int
    data: list[bytes]
    # Root recomputed from the stored entries at every size a checkpoint was signed for.
    roots: dict[int, bytes] = field(default_factory=dict)
    # Every stored checkpoint note by tree size.
    notes: dict[int, bytes] = field(default_factory=dict)


def _prefix_roots(leaves: Sequence[bytes], sizes: Iterable[int]) -> tuple[dict[int, bytes], dict[NodeID, bytes]]:
    """Roots at each size in ``sizes`` and every perfect subtree node, from the leaves alone."""
    roots: dict[int, bytes] = {0: EMPTY_ROOT}
    nodes: dict[NodeID, bytes] = {}
    size, frontier = 0, ()
    for target in sorted(set(sizes) | {len(leaves)}):
        if target == 0:
            continue
        grown = append_leaves(size, frontier, leaves[size:target])
        nodes.update((n, h) for n, h in grown.new_nodes if n.level > 0)
        size, frontier = target, grown.frontier
        roots[target] = grown.root
    return roots, nodes


def audit_database(db_path: Path, verifier: NoteVerifier) -> Audit:
    """Check the log file from first principles, in one read snapshot.

    Indices contiguous from 0 with no duplicates, every leaf hash and hash-chain
    link recomputed, every stored tree node equal to the node recomputed from the
    entries (and none missing), every index row (dedup, subjects, batches,
    revocations, key events) pointing inside the log, every stored checkpoint
    signed by the log key with the root recomputed at its size, and the latest
    checkpoint covering exactly the stored entries.
    """
    conn = open_read_only(db_path)
    try:
        conn.execute("BEGIN")
        rows = conn.execute("SELECT idx, leaf_hash, data FROM entries ORDER BY idx").fetchall()
        node_rows = conn.execute("SELECT level, idx, hash FROM nodes").fetchall()
        # An entry's dedup key is in the dedup table or on one of its subject rows.
        dedup = conn.execute(
            "SELECT idx FROM dedup UNION ALL SELECT idx FROM subjects WHERE dedup IS NOT NULL"
        ).fetchall()
        side_max = {
            table: conn.execute(f"SELECT max({col}) FROM {table}").fetchone()[0]
            for table, col in (("subjects", "idx"), ("batches", "idx"), ("revocations", "idx"),
                               ("revocations", "target"), ("key_events", "idx"))
        }
        checkpoints = conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size").fetchall()
        conn.execute("COMMIT")
    finally:
        conn.close()
    size = len(rows)
    assert [r[0] for r in rows] == list(range(size)), "entry indices have gaps or duplicates"
    previous = ZERO_HASH
    leaves: list[bytes] = []
    for index, stored_hash, data in rows:
        computed = leaf_hash(data)
        assert computed == stored_hash, f"entry {index}: stored leaf hash is not the hash of its bytes"
        entry = decode_entry(data)
        assert entry.index == index, f"entry {index} encodes index {entry.index}"
        assert entry.previous_hash == previous, f"entry {index}: hash chain broken"
        previous = computed
        leaves.append(computed)
    assert sorted(r[0] for r in dedup) == list(range(size)), "dedup keys do not match the entries 1:1"
    for table, highest in side_max.items():
        assert highest is None or highest < size, f"{table} points past the log ({highest} >= {size})"
    assert checkpoints, "no checkpoint stored"
    roots, nodes = _prefix_roots(leaves, [c[0] for c in checkpoints])
    stored_nodes = {NodeID(level, idx): h for level, idx, h in node_rows}
    assert stored_nodes == nodes, "stored tree nodes differ from the nodes recomputed from the entries"
    for cp_size, root, note in checkpoints:
        assert cp_size <= size, f"checkpoint at size {cp_size} is beyond the log ({size})"
        assert _opened_checkpoint(note, verifier.vkey()) == (cp_size, root), (
            f"checkpoint row {cp_size} != its note"
        )
        assert hmac.compare_digest(root, roots[cp_size]), (
            f"checkpoint at size {cp_size} is not consistent with the stored entries"
        )
    assert checkpoints[-1][0] == size, (
        f"latest checkpoint covers {checkpoints[-1][0]} entries, the store holds {size}"
    )
    return Audit(size=size, data=[r[2] for r in rows], roots=roots,
                 notes={c[0]: c[2] for c in checkpoints})


def check_receipts(receipts: Iterable[Receipt], audit: Audit, verifier: NoteVerifier, *,
                   memoize_signatures: bool = False) -> int:
    """Every receipt verifies offline, its entry is stored byte for byte, and its
    checkpoint is the one recomputed from the stored entries at its size (so it
    is consistent with the latest). Returns how many were checked.

    ``memoize_signatures`` runs verify_receipt's two steps (check_checkpoint,
    check_entry) with the checkpoint signature check cached per note: identical
    bytes verify identically, and rounds repeat the same few notes thousands of times.
    """
    count = 0
    for receipt in receipts:
        if memoize_signatures:
            size, root = _opened_checkpoint(receipt.checkpoint, verifier.vkey())
            checkpoint = VerifiedCheckpoint(Checkpoint(verifier.name, size, root), receipt.checkpoint)
            verified = check_entry(receipt.index, receipt.data, receipt.hashes, receipt.tree_size, checkpoint)
        else:
            verified = verify_receipt(receipt, verifier)
            size, root = _opened_checkpoint(receipt.checkpoint, verifier.vkey())
        assert verified.index < audit.size, f"acknowledged entry {verified.index} is gone"
        assert audit.data[verified.index] == receipt.data, f"entry {verified.index} changed"
        assert audit.roots.get(size) == root, (
            f"receipt checkpoint at size {size} is not a prefix of the stored log"
        )
        count += 1
    return count


def check_consistency_online(client: LedgerClient, notes: Mapping[int, bytes], verifier: NoteVerifier,
                             limit: int | None = None) -> int:
    """Ask the server for consistency proofs from signed checkpoints to its latest one
    and verify them (the client's own trusted-checkpoint chain is checked too)."""
    latest = client.checkpoint()
    sizes = sorted(s for s in notes if 0 < s < latest.size)
    if limit is not None and len(sizes) > limit:
        step = len(sizes) / limit
        sizes = sorted({sizes[int(i * step)] for i in range(limit)} | {sizes[0], sizes[-1]})
    for size in sizes:
        old = verify_checkpoint(notes[size], verifier)
        proof = client.consistency_proof(size, latest.size)
        verify_consistency(size, latest.size, old.root_hash, latest.root_hash, proof)
    for size in (s for s in notes if s == latest.size):
        assert verify_checkpoint(notes[size], verifier).root_hash == latest.root_hash
    return len(sizes)


def unique_digests(prefix: bytes) -> Iterable[bytes]:
    """An endless supply of distinct sample digests."""
    for n in itertools.count():
        yield hashlib.sha256(prefix + n.to_bytes(8, "big")).digest()
