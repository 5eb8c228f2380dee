"""Turn a submitted envelope into a validated, signature-checked pending entry.

Runs in the gRPC handler threads, in parallel, before anything reaches the
sequencer. The verifying key always comes from the registry, restricted to the
caller's own vendor; the DSSE ``keyid`` only orders the attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from anchorlog.ledger.attestation import Attestation, check_attestation
from anchorlog.ledger.dsse import verify_envelope
from anchorlog.ledger.entry import EntryKind, decode_entry
from anchorlog.ledger.errors import InvalidInput, NotFound, VerificationError
from anchorlog.ledger.keys import KeyRegistry, VendorKey
from anchorlog.ledger.predicates import (
    PredicateMemo,
    ProvenancePredicate,
    RevocationPredicate,
    format_time,
    parse_revocation_targets,
)
from anchorlog.ledger.store import LogStore, PendingEntry, signed_dedup_key
from anchorlog.server.errors import Denied
from anchorlog.server.sequencer import SequencedItem
from anchorlog.server.validation_pool import CandidateKey, CheckOrder, Passed

# Clocks differ a little; a claim dated further ahead than this is refused, since
# verifiers measure a claim's age from it (capped at the integration time).
MAX_FUTURE_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class SubmissionLimits:
    max_envelope_bytes: int = 4 << 20
    max_subjects: int = 100_000
    max_batch: int = 1_000_000


def _signing_key(
    attestation: Attestation, message: bytes, vendor_id: str, candidates: list[VendorKey],
    registry: KeyRegistry,
) -> VendorKey:
    envelope = attestation.envelope
    if not candidates:
        raise Denied(f"vendor {vendor_id!r} has no registered keys")
    for key in candidates:
        try:
            verify_envelope(envelope, key.public_key, message=message)
        except VerificationError:
            continue
        return key
    hints = [s.keyid for s in envelope.signatures if s.keyid]
    foreign = [
        k for k in (registry.keys.get(h) for h in hints) if k is not None and k.vendor_id != vendor_id
    ]
    if foreign:
        raise Denied(
            f"envelope is signed with key {foreign[0].key_id}, which is not registered to "
            f"vendor {vendor_id!r}"
        )
    raise InvalidInput(
        "envelope.signatures",
        f"no signature verifies with a key registered to vendor {vendor_id!r}",
    )


def _check_key_valid(key: VendorKey, now: datetime) -> None:
    if key.revoked_index is not None:
        state = "compromised and revoked" if key.compromised else "revoked"
        raise Denied(f"key {key.key_id} was {state} by entry {key.revoked_index}")
    if now < key.not_before:
        raise Denied(f"key {key.key_id} is not valid before {key.not_before.isoformat()}")
    if now >= key.not_after:
        raise Denied(f"key {key.key_id} expired at {key.not_after.isoformat()}")


def _revocation_targets(
    attestation: Attestation, vendor_id: str, store: LogStore
) -> tuple[int, ...]:
    targets = parse_revocation_targets(attestation.statement)
    for position, (index, leaf_hash) in enumerate(targets):
        field = f"statement.subject[{position}]"
        try:
            stored = store.entry(index)
        except NotFound:
            raise InvalidInput(field, f"entry {index} does not exist") from None
        if stored.leaf_hash != leaf_hash:
            raise InvalidInput(field, f"digest does not match the leaf hash of entry {index}")
        target = decode_entry(stored.data)
        if target.kind is not EntryKind.ATTESTATION:
            raise InvalidInput(field, f"entry {index} is not an attestation")
        if target.submitter != vendor_id:
            raise Denied(f"entry {index} was submitted by another vendor")
    return tuple(index for index, _ in targets)


class VendorSubmissions:
    """Validates the submissions of one request (or stream message) of one vendor.

    What every item needs is looked up once per request: the time and the
    vendor's candidate keys. A key revoked or expired meanwhile is still caught:
    the sequencer re-checks every signing key when it seals the group.
    """

    def __init__(
        self,
        vendor_id: str,
        *,
        registry: KeyRegistry,
        store: LogStore,
        limits: SubmissionLimits,
        predicates: PredicateMemo | None = None,
        now: datetime | None = None,
    ) -> None:
        self.vendor_id = vendor_id
        self._registry = registry
        self._store = store
        self._limits = limits
        self._predicates = predicates
        self._now = now or datetime.now(UTC)
        self._candidates: dict[tuple[str, ...], list[VendorKey]] = {}
        self._order_keys: dict[str, VendorKey] = {}  # see order()

    def _candidate_keys(self, attestation: Attestation) -> list[VendorKey]:
        hints = tuple(s.keyid for s in attestation.envelope.signatures if s.keyid)
        found = self._candidates.get(hints)
        if found is None:
            found = self._candidates[hints] = self._registry.candidate_keys(self.vendor_id, hints)
        return found

    def prepare(self, envelope: bytes, batch_digests: bytes) -> SequencedItem:
        """Validate one submission completely; raise a precise error or return it ready."""
        limits, vendor_id = self._limits, self.vendor_id
        attestation = check_attestation(
            envelope,
            batch_digests,
            max_subjects=limits.max_subjects,
            max_batch=limits.max_batch,
            max_envelope_bytes=limits.max_envelope_bytes,
            predicates=self._predicates,
        )
        moment = self._now
        predicate = attestation.predicate
        if isinstance(predicate, ProvenancePredicate) and predicate.performed_at > moment + MAX_FUTURE_SKEW:
            raise InvalidInput(
                "predicate.performedAt",
                f"{format_time(predicate.performed_at)} is in the future (server time "
                f"{format_time(moment.replace(microsecond=0))}, allowed skew "
                f"{int(MAX_FUTURE_SKEW.total_seconds())} s)",
            )
        # The signed bytes, computed once: checked against the signature and part of the identity.
        message = attestation.envelope.pae()
        key = _signing_key(
            attestation, message, vendor_id, self._candidate_keys(attestation), self._registry
        )
        _check_key_valid(key, moment)
        dedup = signed_dedup_key(vendor_id, key.key_id, message)
        if isinstance(predicate, RevocationPredicate):
            revokes = _revocation_targets(attestation, vendor_id, self._store)
            return self._sequenced(key, envelope, batch_digests, dedup, (), EntryKind.REVOCATION, revokes)
        subject_digests = () if batch_digests else attestation.sample_digests
        return self._sequenced(key, envelope, batch_digests, dedup, subject_digests)

    def _sequenced(
        self, key: VendorKey, envelope: bytes, batch_digests: bytes, dedup: bytes,
        subject_digests: tuple[bytes, ...], kind: EntryKind = EntryKind.ATTESTATION, revokes: tuple[int, ...] = (),
    ) -> SequencedItem:
        """The entry for a checked submission signed by ``key`` (``prepare``'s and ``accept``'s end)."""
        pending = PendingEntry(
            kind=kind, submitter=self.vendor_id, envelope=envelope, dedup_key=dedup,
            subject_digests=subject_digests, batch_digests=batch_digests, revokes=revokes,
        )
        return SequencedItem(pending=pending, signing_key_id=key.key_id)

    def order(self, items: Sequence[tuple[bytes, bytes]]) -> CheckOrder:
        """What a validation worker needs to check ``items`` (envelope, batch digests) as ``prepare`` would."""
        limits = self._limits
        # The keys as of now, as prepare keeps its candidates for the whole message.
        self._order_keys = {k.key_id: k for k in self._registry.vendor_keys(self.vendor_id)}
        return CheckOrder(
            vendor_id=self.vendor_id,
            keys=tuple(
                CandidateKey(k.key_id, k.public_key, k.registered_index) for k in self._order_keys.values()
            ),
            now=self._now,
            max_future=MAX_FUTURE_SKEW,
            max_subjects=limits.max_subjects,
            max_batch=limits.max_batch,
            max_envelope_bytes=limits.max_envelope_bytes,
            items=tuple(items),
        )

    def accept(self, envelope: bytes, batch_digests: bytes, passed: Passed) -> SequencedItem:
        """``prepare``'s result for an item a worker passed: only the registry's checks are left."""
        key = self._order_keys.get(passed.key_id)
        if key is None:  # not a key this order named: check the item from the start
            return self.prepare(envelope, batch_digests)
        _check_key_valid(key, self._now)
        return self._sequenced(key, envelope, batch_digests, passed.dedup_key, passed.subject_digests)
