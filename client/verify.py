"""Verification of everything the server says, as pure functions.

Each function takes what was received and the log's pinned verifier key (or
values already verified with it) and either returns typed, verified values or
raises :class:`~anchorlog.ledger.errors.VerificationError` saying what failed.
Nothing here talks to the network, so receipts and bundles verify offline with
exactly the same code as live answers.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256

from anchorlog.ledger.batch import BATCH_SUBJECT_NAME, BatchPath, verify_batch_path
from anchorlog.ledger.checkpoint import Checkpoint, verify_checkpoint
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, Envelope, verify_envelope
from anchorlog.ledger.entry import EntryKind, LogEntry, decode_entry
from anchorlog.ledger.errors import InconsistentLogError, InvalidInput, VerificationError
from anchorlog.ledger.keys import (
    KeyRegistry,
    VendorKey,
    integrated_at,
    replay_registry,
    signing_key,
    valid_signing_keys,
)
from anchorlog.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from anchorlog.ledger.merkle.inclusion import check_proof_shape, inclusion_proof_length
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import (
    PROVENANCE_V1,
    REVOCATION_V1,
    Claim,
    PredicateMemo,
    ProvenancePredicate,
    RevocationPredicate,
    parse_revocation_targets,
)
from anchorlog.ledger.statement import Statement, parse_statement
from anchorlog.ledger.status import AttestationFact, Status, derive_status

__all__ = [
    "BatchPathError",
    "CheckpointError",
    "InclusionProofError",
    "InconsistentLogError",
    "MalformedEntryError",
    "SignatureError",
    "VerificationError",
]


class CheckpointError(VerificationError):
    """A checkpoint that is not signed by the pinned log key (or is malformed)."""


class InclusionProofError(VerificationError):
    """Entry bytes that the proof does not tie to the checkpoint's root.

    A tampered entry and a wrong audit path look the same from outside: the
    leaf hash of the bytes received does not lead to the signed root.
    """


class MalformedEntryError(VerificationError):
    """Entry bytes (or their envelope, statement or predicate) that do not decode."""


class SignatureError(VerificationError):
    """An envelope not signed by any key of its vendor valid at that entry
    (unknown, expired, revoked before the entry, or a bad signature)."""


class BatchPathError(VerificationError):
    """A sample digest not proved to be in an attestation's signed batch root."""


@dataclass(frozen=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    note: bytes

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root_hash(self) -> bytes:
        return self.checkpoint.root_hash


@dataclass(frozen=True)
class VerifiedEntry:
    index: int
    data: bytes
    leaf_hash: bytes
    entry: LogEntry


@dataclass(frozen=True)
class VerifiedAttestation:
    """An attestation entry whose inclusion and signature were verified."""

    entry: VerifiedEntry
    vendor_id: str
    key_id: str
    statement: Statement
    predicate: ProvenancePredicate
    key_compromised: bool


# slots: one object per verified sample, without a __dict__ (a bulk stream makes
# tens of thousands a second, and each container allocated feeds the cyclic GC).
@dataclass(frozen=True, slots=True)
class SampleProvenance:
    """What the log proves about one sample digest, and the status derived from it."""

    digest: bytes
    status: Status
    attestations: tuple[VerifiedAttestation, ...]
    revoked_entries: frozenset[int]
    checkpoint: VerifiedCheckpoint
    # The server's own, unverified reading; empty unless asked for (``status_hints``).
    server_status_hint: str = ""

    def facts(self) -> list[AttestationFact]:
        return _facts(self.attestations, self.revoked_entries)


def _facts(
    attestations: Iterable[VerifiedAttestation], revoked: Collection[int]
) -> list[AttestationFact]:
    return [
        AttestationFact(
            entry_index=a.entry.index,
            vendor_id=a.vendor_id,
            claim=a.predicate.claim,
            performed_at=a.predicate.performed_at,
            revoked=a.entry.index in revoked,
            key_compromised=a.key_compromised,
            integrated_at=integrated_at(a.entry.entry),
        )
        for a in attestations
    ]


def check_checkpoint(note: bytes, verifier: NoteVerifier) -> VerifiedCheckpoint:
    """A checkpoint note signed by the pinned log key, for the key's origin."""
    try:
        checkpoint = verify_checkpoint(note, verifier)
    except InvalidInput as exc:
        raise CheckpointError(f"checkpoint is malformed: {exc}") from exc
    except VerificationError as exc:
        raise CheckpointError(f"checkpoint is not signed by the pinned log key: {exc}") from exc
    return VerifiedCheckpoint(checkpoint, note)


class CheckpointMemo:
    """``check_checkpoint`` that remembers notes it already verified.

    A busy submitter gets one checkpoint per sequencer group on hundreds of
    receipts; the signature over the same note bytes verifies the same way every
    time, so it is checked once. Bounded: the oldest notes are forgotten.
    """

    def __init__(self, verifier: NoteVerifier, capacity: int = 64) -> None:
        self.verifier = verifier
        self._capacity = capacity
        self._verified: dict[bytes, VerifiedCheckpoint] = {}

    def check(self, note: bytes) -> VerifiedCheckpoint:
        known = self._verified.get(note)
        if known is not None:
            return known
        checkpoint = check_checkpoint(note, self.verifier)
        if len(self._verified) >= self._capacity:
            self._verified.pop(next(iter(self._verified)), None)
        self._verified[note] = checkpoint
        return checkpoint


def check_consistency(
    trusted: VerifiedCheckpoint | None, new: VerifiedCheckpoint, proof: Sequence[bytes]
) -> None:
    """Prove ``new`` extends ``trusted``; any failure is evidence of a forked log."""
    if trusted is None or trusted.size == 0:
        return
    if new.size == trusted.size:
        if not hmac.compare_digest(new.root_hash, trusted.root_hash):
            raise InconsistentLogError(
                f"the log presented a checkpoint of size {new.size} whose root "
                f"{new.root_hash.hex()} differs from the trusted root {trusted.root_hash.hex()} "
                "at the same size: this is evidence of a forked or rewritten log"
            )
        return
    if new.size < trusted.size:
        raise InconsistentLogError(
            f"the log presented a checkpoint of size {new.size}, smaller than the size "
            f"{trusted.size} this client already trusts: the log was rolled back or forked"
        )
    try:
        verify_consistency(trusted.size, new.size, trusted.root_hash, new.root_hash, proof)
    except VerificationError as exc:
        raise InconsistentLogError(
            f"checkpoint at size {new.size} is not consistent with the trusted checkpoint at "
            f"size {trusted.size}: {exc}. This is evidence of a forked or rewritten log."
        ) from exc


# Levels below the root where InclusionMemo remembers nodes: at most 2**8 and
# 2**12 nodes per tree, so a path is hashed only up to the first level where
# earlier paths went, then compared.
_MEMO_LEVELS_BELOW_ROOT = (12, 8)
# Trees up to this size are verified plainly: they have no level to remember.
_MEMO_MIN_SIZE = 1 << min(_MEMO_LEVELS_BELOW_ROOT)


def _what(index: int, size: int) -> str:
    return f"inclusion proof for leaf {index} in a tree of size {size}"


class InclusionMemo:
    """``verify_inclusion`` that shares work between paths of one tree.

    A lookup proves thousands of entries (or batch samples) against one root,
    and their audit paths meet near the root. For each tree (size, root) this
    remembers, at two levels a few steps below the root, the nodes that verified
    paths went through, each with the part of the path above it. A later path
    is hashed from its leaf up to such a level only: if it reaches a remembered
    node with the same hash and carries exactly the remembered rest of the path,
    hashing on would repeat a verified computation and reach the same signed
    root. Accepts and refuses exactly what ``verify_inclusion`` does; bounded.
    """

    def __init__(self, trees: int = 8) -> None:
        # (size, root) -> (the levels where nodes are remembered, the nodes by
        # index << 6 | level, each with the rest of its path packed into bytes,
        # the lowest of those levels)
        self._trees: dict[tuple[int, bytes], tuple[frozenset[int], dict[int, tuple[bytes, bytes]], int]] = {}
        self._max_trees = trees

    def verify(self, leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
        """Raise ``VerificationError`` unless ``proof`` shows leaf ``index`` is in the tree ``root``."""
        if (
            not isinstance(size, int) or not isinstance(index, int) or not 0 <= index < size
            or size <= _MEMO_MIN_SIZE or not isinstance(root, bytes)
            or not isinstance(leaf, bytes) or len(leaf) != 32
        ):
            verify_inclusion(leaf, index, size, proof, root)
            return
        expected = inclusion_proof_length(index, size)
        # Two passes in C for the usual, well-formed proof; the full check (which
        # names the bad element, and lets bytes subclasses through) only otherwise.
        if len(proof) != expected or set(map(type, proof)) - {bytes} or set(map(len, proof)) - {32}:
            check_proof_shape(proof, expected, _what(index, size))
        # Every element is 32 bytes: the packed path holds exactly the same hashes.
        self._walk(leaf, index, size, b"".join(proof), root)

    def verify_packed(self, leaf: bytes, index: int, size: int, path: bytes, root: bytes) -> None:
        """:meth:`verify` of a path given as its hashes concatenated (32 bytes each, leaf first).

        Accepts and refuses exactly what ``verify`` does with the path cut into
        32-byte hashes; ``verify`` checks a proof's shape and comes here.
        """
        if (
            type(path) is not bytes or len(path) & 31
            or not isinstance(size, int) or not isinstance(index, int) or not 0 <= index < size
            or size <= _MEMO_MIN_SIZE or not isinstance(root, bytes)
            or not isinstance(leaf, bytes) or len(leaf) != 32
        ):
            proof = [path[i : i + 32] for i in range(0, len(path), 32)] if isinstance(path, bytes) else path
            verify_inclusion(leaf, index, size, proof, root)  # refuses it, saying why (or accepts it)
            return
        expected = inclusion_proof_length(index, size)
        if len(path) != 32 * expected:
            check_proof_shape([path[i : i + 32] for i in range(0, len(path), 32)], expected, _what(index, size))
        self._walk(leaf, index, size, path, root)

    def _walk(self, leaf: bytes, index: int, size: int, path: bytes, root: bytes) -> None:
        """The check itself, for arguments ``verify``/``verify_packed`` found well formed
        (``path`` holds exactly the proof's hashes for ``index`` in ``size``)."""
        key = (size, root)
        tree = self._trees.get(key)
        if tree is None:
            if len(self._trees) >= self._max_trees:
                self._trees.pop(next(iter(self._trees)), None)
            depth = (size - 1).bit_length()
            cuts = frozenset(depth - below for below in _MEMO_LEVELS_BELOW_ROOT if depth - below > 0)
            tree = self._trees[key] = (cuts, {}, min(cuts))
        cuts, nodes, low = tree
        r = leaf
        if ((index >> low) + 1) << low <= size:
            # The leaf's ancestor at the lowest remembered level is a perfect subtree:
            # every level below it has a sibling, the next hash of the path.
            for level in range(low):
                p = path[32 * level : 32 * level + 32]
                # node_hash, inlined: one concatenation and one call (the loop is per sample).
                r = sha256(b"\x01" + p + r).digest() if (index >> level) & 1 else sha256(b"\x01" + r + p).digest()
            fn, sn, level, at = index >> low, (size - 1) >> low, low, 32 * low
        else:
            fn, sn, level, at = index, size - 1, 0, 0
        # RFC 9162 §2.1.3.2 bottom-up, tracking the level: an unpaired last node of
        # a level has no sibling and is carried up unchanged. ``at`` is the offset
        # of the next unused hash.
        learned: list[tuple[int, bytes, bytes]] | None = None  # made on a miss only
        while sn:
            if level in cuts:
                rest = path[at:]
                known = nodes.get(fn << 6 | level)
                if known is not None:
                    if known[0] != r or known[1] != rest:
                        raise VerificationError(
                            f"{_what(index, size)} does not lead to the signed root (at level {level} its node "
                            "or the rest of its path differs from the proved ones)"
                        )
                    break
                if learned is None:
                    learned = []
                learned.append((fn << 6 | level, r, rest))
            if fn & 1 or fn < sn:
                p = path[at : at + 32]
                # node_hash, inlined: one concatenation and one call (the loop is per sample).
                r = sha256(b"\x01" + p + r).digest() if fn & 1 else sha256(b"\x01" + r + p).digest()
                at += 32
            fn >>= 1
            sn >>= 1
            level += 1
        else:
            if not hmac.compare_digest(r, root):
                raise VerificationError(
                    f"inclusion proof for leaf {index} leads to root {r.hex()}, "
                    f"not to the expected root of the tree of size {size}"
                )
        if learned is not None:
            for node_key, node, rest in learned:
                nodes[node_key] = (node, rest)


def check_entry(
    index: int,
    data: bytes,
    proof: Sequence[bytes],
    tree_size: int,
    checkpoint: VerifiedCheckpoint,
    memo: InclusionMemo | None = None,
) -> VerifiedEntry:
    """An entry proven included in the checkpoint's tree, with its bytes decoded.

    ``paths`` (for this checkpoint's tree) checks the proof without re-hashing
    the parts of the path earlier proofs already proved.
    """
    if tree_size != checkpoint.size:
        raise InclusionProofError(
            f"entry {index}: proof is for tree size {tree_size}, checkpoint has {checkpoint.size}"
        )
    digest = leaf_hash(data)
    try:
        (memo.verify if memo is not None else verify_inclusion)(
            digest, index, checkpoint.size, proof, checkpoint.root_hash
        )
    except VerificationError as exc:
        raise InclusionProofError(
            f"entry {index}: not included in the checkpoint of size {checkpoint.size} "
            f"(entry bytes tampered or wrong inclusion proof): {exc}"
        ) from exc
    try:
        entry = decode_entry(data)
    except InvalidInput as exc:
        raise MalformedEntryError(f"entry {index}: malformed entry bytes: {exc}") from exc
    if entry.index != index:
        raise MalformedEntryError(f"entry {index}: its bytes say index {entry.index}")
    return VerifiedEntry(index=index, data=data, leaf_hash=digest, entry=entry)


def key_state(entries: Iterable[VerifiedEntry], log_key: NoteVerifier) -> KeyRegistry:
    """Replay the vendor key registry from verified key-event entries."""
    key_entries = sorted(
        (e for e in entries if e.entry.kind is EntryKind.KEY_EVENT), key=lambda e: e.index
    )
    return replay_registry(((e.index, e.data) for e in key_entries), log_key.public_key)


class KeyStateMemo:
    """``key_state`` that remembers its last answers.

    The replay is a pure function of the key-event entries (already proved
    included) and the log key; every lookup of the same log names the same key
    events, so their log signatures are checked once, not on every call. The
    registry returned is shared: callers only read it.
    """

    def __init__(self, log_key: NoteVerifier, capacity: int = 4) -> None:
        self.log_key = log_key
        self._capacity = capacity
        self._states: dict[tuple[tuple[int, bytes], ...], KeyRegistry] = {}

    def state(self, entries: Iterable[VerifiedEntry]) -> KeyRegistry:
        key_entries = sorted(
            (e for e in entries if e.entry.kind is EntryKind.KEY_EVENT), key=lambda e: e.index
        )
        identity = tuple((e.index, e.leaf_hash) for e in key_entries)
        known = self._states.get(identity)
        if known is None:
            known = key_state(key_entries, self.log_key)
            if len(self._states) >= self._capacity:
                self._states.pop(next(iter(self._states)), None)
            self._states[identity] = known
        return known


def _signing_key(
    envelope: Envelope, entry: VerifiedEntry, registry: KeyRegistry
) -> VendorKey:
    key = signing_key(envelope, entry.index, entry.entry, registry)
    if key is not None:
        return key
    raise SignatureError(
        f"entry {entry.index}: envelope is not signed by any key of vendor "
        f"{entry.entry.submitter!r} valid at that entry"
    )


def _open_envelope(entry: VerifiedEntry) -> tuple[Envelope, Statement]:
    try:
        envelope = Envelope.parse(entry.entry.envelope)
        if envelope.payload_type != PAYLOAD_TYPE_INTOTO:
            raise MalformedEntryError(f"entry {entry.index}: unexpected payload type")
        return envelope, parse_statement(envelope.payload, max_subjects=1 << 30)
    except InvalidInput as exc:
        raise MalformedEntryError(f"entry {entry.index}: invalid envelope: {exc}") from exc


@dataclass(frozen=True)
class OpenedAttestation:
    """An attestation entry parsed for verification; its signature is not checked yet.

    ``verifiers`` are the keys the signature may verify with (the vendor's keys
    valid at the entry, in :func:`~anchorlog.ledger.keys.signing_key`'s order),
    so that :func:`signer_of` only runs the Ed25519 checks (which release the
    GIL: other threads can run them).
    """

    entry: VerifiedEntry
    envelope: Envelope
    statement: Statement
    message: bytes
    verifiers: tuple[VendorKey, ...]


def open_attestation_entry(
    entry: VerifiedEntry,
    registry: KeyRegistry,
    ordered: dict[tuple[str, tuple[str, ...]], list[VendorKey]] | None = None,
) -> OpenedAttestation:
    """Everything :func:`check_attestation_entry` checks before the signature.

    ``ordered`` remembers the candidate keys per vendor and hints (for this
    ``registry`` only).
    """
    if entry.entry.kind is not EntryKind.ATTESTATION:
        raise VerificationError(f"entry {entry.index} is not an attestation")
    envelope, statement = _open_envelope(entry)
    if statement.predicate_type != PROVENANCE_V1:
        raise MalformedEntryError(
            f"entry {entry.index}: attestation has predicate type "
            f"{statement.predicate_type[:120]!r}, expected {PROVENANCE_V1}"
        )
    keys = valid_signing_keys(envelope, entry.index, entry.entry, registry, ordered)
    return OpenedAttestation(entry, envelope, statement, envelope.pae(), tuple(keys))


def signer_of(opened: OpenedAttestation) -> VendorKey | None:
    """The first of ``opened.verifiers`` whose key verifies the envelope, or None."""
    for key in opened.verifiers:
        try:
            verify_envelope(opened.envelope, key.public_key, message=opened.message)
        except VerificationError:
            continue
        return key
    return None


def finish_attestation(
    opened: OpenedAttestation, key: VendorKey | None, predicates: PredicateMemo | None = None
) -> VerifiedAttestation:
    """The verified attestation, given ``signer_of(opened)``."""
    entry = opened.entry
    if key is None:
        raise SignatureError(
            f"entry {entry.index}: envelope is not signed by any key of vendor "
            f"{entry.entry.submitter!r} valid at that entry"
        )
    try:
        doc = opened.statement.predicate
        predicate = predicates.parse(doc) if predicates is not None else ProvenancePredicate.parse(doc)
    except InvalidInput as exc:
        raise MalformedEntryError(f"entry {entry.index}: invalid predicate: {exc}") from exc
    return VerifiedAttestation(
        entry=entry,
        vendor_id=entry.entry.submitter,
        key_id=key.key_id,
        statement=opened.statement,
        predicate=predicate,
        key_compromised=key.compromised,
    )


def check_attestation_entry(
    entry: VerifiedEntry, registry: KeyRegistry
) -> VerifiedAttestation:
    opened = open_attestation_entry(entry, registry)
    return finish_attestation(opened, signer_of(opened))


def check_revocation_entry(
    entry: VerifiedEntry, registry: KeyRegistry, targets: Mapping[int, VerifiedEntry]
) -> frozenset[int]:
    """The attestation indices a verified revocation entry really revokes.

    A revocation counts only when signed by a key of the vendor that submitted
    the revoked entries and when it names their exact leaf hashes. One signed by
    a key later revoked as compromised revokes nothing: whoever stole the key
    could have signed it.
    """
    if entry.entry.kind is not EntryKind.REVOCATION:
        raise VerificationError(f"entry {entry.index} is not a revocation")
    envelope, statement = _open_envelope(entry)
    if statement.predicate_type != REVOCATION_V1:
        raise MalformedEntryError(
            f"entry {entry.index}: revocation has predicate type "
            f"{statement.predicate_type[:120]!r}, expected {REVOCATION_V1}"
        )
    key = _signing_key(envelope, entry, registry)
    try:
        RevocationPredicate.parse(statement.predicate)
        named = parse_revocation_targets(statement)
    except InvalidInput as exc:
        raise MalformedEntryError(f"entry {entry.index}: invalid revocation: {exc}") from exc
    revoked = set()
    for index, digest in named:
        target = targets.get(index)
        if target is None:
            continue
        if not hmac.compare_digest(target.leaf_hash, digest):
            raise VerificationError(
                f"revocation entry {entry.index} names entry {index} with a different leaf hash"
            )
        if target.entry.submitter != entry.entry.submitter:
            raise VerificationError(
                f"revocation entry {entry.index} by {entry.entry.submitter!r} targets entry "
                f"{index} of another vendor"
            )
        if index >= entry.index:
            raise VerificationError(f"revocation entry {entry.index} revokes a later entry {index}")
        revoked.add(index)
    if key.compromised:
        return frozenset()
    return frozenset(revoked)


def check_names_digest(
    attestation: VerifiedAttestation,
    digest: bytes,
    batch_path: BatchPath | None,
    memo: InclusionMemo | None = None,
) -> None:
    """The attestation really covers ``digest``: as a subject or through its batch root."""
    statement = attestation.statement
    if attestation.predicate.batch is None:
        if batch_path is not None:
            raise BatchPathError(
                f"entry {attestation.entry.index}: server sent a batch path for a direct statement"
            )
        # The digests as parsed: no Subject objects built to compare them. Digests are
        # public, so a plain membership test (no constant-time compare needed).
        if digest not in statement.subject_digests:
            raise BatchPathError(
                f"entry {attestation.entry.index} does not name digest {digest.hex()}"
            )
        return
    if batch_path is None:
        raise BatchPathError(
            f"entry {attestation.entry.index} commits to a batch but no batch path was sent"
        )
    roots = [d for n, d in zip(statement.subject_names, statement.subject_digests) if n == BATCH_SUBJECT_NAME]
    if len(roots) != 1:
        raise BatchPathError(
            f"entry {attestation.entry.index} has {len(roots)} batch root subjects, expected 1"
        )
    root_digest = roots[0]
    if batch_path.batch_size != attestation.predicate.batch.size:
        raise BatchPathError(
            f"entry {attestation.entry.index}: batch path size {batch_path.batch_size} differs "
            f"from the signed batch size {attestation.predicate.batch.size}"
        )
    try:
        if memo is None:
            verify_batch_path(digest, batch_path, root_digest)
        else:
            if not isinstance(digest, bytes) or len(digest) != 32:
                raise VerificationError("sample digest must be 32 bytes")
            memo.verify(
                leaf_hash(digest), batch_path.leaf_index, batch_path.batch_size, batch_path.hashes,
                root_digest,
            )
    except VerificationError as exc:
        raise BatchPathError(
            f"entry {attestation.entry.index}: batch path for {digest.hex()} does not verify: {exc}"
        ) from exc


@dataclass(frozen=True)
class DigestClaim:
    """What the server says about one digest, before verification."""

    digest: bytes
    hits: tuple[tuple[int, BatchPath | None], ...]
    revocation_indices: tuple[int, ...]
    status_hint: str = ""


def attestation_named(
    index: int,
    digest: bytes,
    entries: Mapping[int, VerifiedEntry],
    registry: KeyRegistry,
    verified: dict[int, VerifiedAttestation] | None = None,
) -> VerifiedAttestation:
    """The attestation at ``index``, which an answer names for ``digest``: taken from
    ``verified`` (checked against this ``registry`` already), else checked and kept there."""
    entry = entries.get(index)
    if entry is None:
        raise VerificationError(f"server named entry {index} for {digest.hex()} without proof")
    attestation = verified.get(index) if verified is not None else None
    if attestation is None:
        attestation = check_attestation_entry(entry, registry)
        if verified is not None:
            verified[index] = attestation
    return attestation


def check_provenance(
    claim: DigestClaim,
    entries: Mapping[int, VerifiedEntry],
    registry: KeyRegistry,
    checkpoint: VerifiedCheckpoint,
    verified: dict[int, VerifiedAttestation] | None = None,
    memo: InclusionMemo | None = None,
    statuses: dict[tuple[tuple[int, bool], ...], Status] | None = None,
) -> SampleProvenance:
    """Verify one digest's answer against already-verified entries and key state.

    ``verified`` caches attestation entries already checked against this same
    ``registry`` (one batch envelope covers many samples: verify its signature once);
    ``memo`` shares the work of batch paths within one batch; ``statuses`` (only
    used with ``verified``, and emptied with it) remembers the status derived
    from each combination of those attestations and their revocation.
    """
    attestations = []
    for index, path in claim.hits:
        attestation = attestation_named(index, claim.digest, entries, registry, verified)
        check_names_digest(attestation, claim.digest, path, memo)
        attestations.append(attestation)
    targets = {a.entry.index: a.entry for a in attestations}
    revoked: set[int] = set()
    for index in claim.revocation_indices:
        entry = entries.get(index)
        if entry is None:
            raise VerificationError(f"server named revocation {index} without proof")
        revoked |= check_revocation_entry(entry, registry, targets)
    if statuses is not None and verified is not None:
        # The facts are a function of the verified attestations (by index, for this
        # registry) and of which of them are revoked.
        shape = tuple((a.entry.index, a.entry.index in revoked) for a in attestations)
        status = statuses.get(shape)
        if status is None:
            status = statuses[shape] = derive_status(_facts(attestations, revoked))
    else:
        status = derive_status(_facts(attestations, revoked))
    return SampleProvenance(
        digest=claim.digest,
        status=status,
        attestations=tuple(attestations),
        revoked_entries=frozenset(revoked),
        checkpoint=checkpoint,
        server_status_hint=claim.status_hint,
    )


_NOTHING_REVOKED: frozenset[int] = frozenset()


def check_direct_sample(
    digest: bytes,
    index: int,
    status_hint: str,
    checkpoint: VerifiedCheckpoint,
    verified: Mapping[int, VerifiedAttestation],
    statuses: dict[tuple[Claim, bool], Status],
) -> SampleProvenance | None:
    """``check_provenance`` of the usual answer about a sample with an entry of its own.

    The answer names one entry, with no batch path and no revocation; the
    entry's attestation is already in ``verified`` (signature checked against
    this stream's registry) and must name ``digest`` as a subject. ``statuses``
    keeps the status per claim and key compromise: for one unrevoked
    attestation, with every vendor trusted and no age limit, ``derive_status``
    reads nothing else, so thousands of one-sample entries derive it once.

    Returns None for anything else: the caller then runs ``check_provenance``,
    which accepts or refuses it with its own error.
    """
    attestation = verified.get(index)
    if (
        attestation is None or attestation.predicate.batch is not None
        or digest not in attestation.statement.subject_digests
    ):
        return None
    kind = (attestation.predicate.claim, attestation.key_compromised)
    status = statuses.get(kind)
    if status is None:
        status = statuses[kind] = derive_status(_facts((attestation,), ()))
    return SampleProvenance(
        digest=digest,
        status=status,
        attestations=(attestation,),
        revoked_entries=_NOTHING_REVOKED,
        checkpoint=checkpoint,
        server_status_hint=status_hint,
    )


def check_batched_sample(
    digest: bytes,
    index: int,
    leaf_index: int,
    batch_size: int,
    hashes: tuple[bytes, ...] | bytes,
    status_hint: str,
    checkpoint: VerifiedCheckpoint,
    verified: Mapping[int, VerifiedAttestation],
    roots: dict[int, tuple[VerifiedAttestation, bytes, int, tuple[VerifiedAttestation], Status]],
    memo: InclusionMemo,
    statuses: dict[tuple[tuple[int, bool], ...], Status],
) -> SampleProvenance | None:
    """``check_provenance`` of the usual bulk answer, without its general machinery.

    The answer names one entry, through a batch path (``leaf_index``,
    ``batch_size``, ``hashes``: a tuple, or packed into one bytes as batched
    columns carry them), and no revocation; the entry's attestation is already in ``verified`` (signature checked against
    this stream's registry). The sample's path is still checked up to the signed
    batch root and size. ``roots`` keeps, with the attestation object they were
    read from, its batch root, signed size, and the status of a sample it alone
    names unrevoked (a function of that verified attestation only).

    Returns None for anything else, or when a check fails: the caller then runs
    ``check_provenance``, which accepts or refuses it with its own error.
    """
    attestation = verified.get(index)
    if attestation is None or len(digest) != 32:
        return None
    known = roots.get(index)
    if known is None or known[0] is not attestation:
        batch = attestation.predicate.batch
        if batch is None:
            return None
        statement = attestation.statement
        named = [d for n, d in zip(statement.subject_names, statement.subject_digests) if n == BATCH_SUBJECT_NAME]
        if len(named) != 1:
            return None
        shape = ((index, False),)  # as check_provenance keys it
        status = statuses.get(shape)
        if status is None:
            status = statuses[shape] = derive_status(_facts((attestation,), ()))
        known = roots[index] = (attestation, named[0], batch.size, (attestation,), status)
    if batch_size != known[2]:
        return None
    try:
        if type(hashes) is bytes:  # packed (a batched answer's columns)
            memo.verify_packed(sha256(b"\x00" + digest).digest(), leaf_index, batch_size, hashes, known[1])
        else:
            memo.verify(sha256(b"\x00" + digest).digest(), leaf_index, batch_size, hashes, known[1])
    except (VerificationError, InvalidInput, TypeError, ValueError):
        return None
    return SampleProvenance(
        digest=digest,
        status=known[4],
        attestations=known[3],
        revoked_entries=_NOTHING_REVOKED,
        checkpoint=checkpoint,
        server_status_hint=status_hint,
    )
