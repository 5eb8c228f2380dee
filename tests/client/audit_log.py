"""Build real log database files for audit tests through ``LogStore.append``.

This is the store's own append path (the one the sequencer uses) without the
service in front, so tests control integration times and can write what a
misbehaving server might have accepted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from anchorlog.client.ledger import Submission
from anchorlog.client.vendor import (
    ClaimDetails,
    VendorKeyPair,
    attest_batch,
    attest_samples,
    revoke_entries,
)
from anchorlog.ledger.attestation import check_attestation
from anchorlog.ledger.checkpoint import sign_checkpoint
from anchorlog.ledger.digests import Canonicalization
from anchorlog.ledger.dsse import Envelope, ed25519_key_id
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.keys import KeyEvent, KeyEventType, key_event_envelope
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.predicates import Claim, parse_revocation_targets
from anchorlog.ledger.store import LogStore, PendingEntry, dedup_key

ORIGIN = "audit.test/log"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def details(claim: Claim, actor: str, performed_at: datetime | None = None) -> ClaimDetails:
    return ClaimDetails(
        claim=claim, canonicalization=Canonicalization.UTF8_NFC_V1, actor_id=actor, method="review",
        performed_at=performed_at or T0, generator_model="gen-1" if claim is Claim.SYNTHETIC else None,
    )


def digest(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


@dataclass
class LogBuilder:
    """A log file being written; mutable on purpose (a test script)."""

    path: Path
    signer: NoteSigner = field(default_factory=lambda: NoteSigner.generate(ORIGIN))
    now: datetime = T0

    def __post_init__(self) -> None:
        self.store = LogStore(self.path, origin=ORIGIN)
        self.store.ensure_checkpoint(sign=self._sign)

    @property
    def log_key(self) -> str:
        return self.signer.verifier().vkey()

    def _sign(self, checkpoint: object) -> bytes:
        return sign_checkpoint(checkpoint, self.signer)  # type: ignore[arg-type]

    def close(self) -> None:
        self.store.close()

    def append(self, items: Sequence[PendingEntry], *, advance: timedelta = timedelta(minutes=1)) -> list[int]:
        self.now += advance
        result = self.store.append(items, now_ms=int(self.now.timestamp() * 1000), sign=self._sign)
        return [e.index for e in result.entries]

    def key_event(self, event: KeyEvent, signed_by: NoteSigner | None = None) -> int:
        signer = signed_by or self.signer
        envelope = key_event_envelope(event, signer.sign, ed25519_key_id(signer.public_key))
        pending = PendingEntry(
            kind=EntryKind.KEY_EVENT, submitter="anchorlog-admin", envelope=envelope,
            dedup_key=hashlib.sha256(envelope).digest(),
        )
        return self.append([pending])[0]

    def vendor(self, vendor_id: str) -> VendorKeyPair:
        key = VendorKeyPair.generate()
        self.key_event(KeyEvent(KeyEventType.VENDOR_CREATED, vendor_id, display_name=vendor_id))
        self.register(vendor_id, key)
        return key

    def register(self, vendor_id: str, key: VendorKeyPair) -> int:
        return self.key_event(KeyEvent(
            KeyEventType.KEY_REGISTERED, vendor_id, public_key=key.public_key,
            not_before=T0 - timedelta(days=365), not_after=None,
        ))

    def rotate(self, vendor_id: str, old: VendorKeyPair, new: VendorKeyPair) -> int:
        return self.key_event(KeyEvent(
            KeyEventType.KEY_ROTATED, vendor_id, public_key=new.public_key, old_key_id=old.key_id,
            not_before=T0 - timedelta(days=365), not_after=None,
        ))

    def revoke_key(self, vendor_id: str, key: VendorKeyPair) -> int:
        return self.key_event(KeyEvent(KeyEventType.KEY_REVOKED, vendor_id, key_id=key.key_id, reason="test"))

    def submit(self, vendor_id: str, submission: Submission, **kwargs: timedelta) -> int:
        return self.append([self.pending(vendor_id, submission)], **kwargs)[0]

    @staticmethod
    def pending(vendor_id: str, submission: Submission) -> PendingEntry:
        checked = check_attestation(submission.envelope, submission.batch_digests, max_subjects=1 << 20,
                                    max_batch=1 << 20)
        envelope = Envelope.parse(submission.envelope)
        revokes: tuple[int, ...] = ()
        kind = EntryKind.ATTESTATION
        if checked.statement.predicate_type.endswith("revocation/v1"):
            kind = EntryKind.REVOCATION
            revokes = tuple(i for i, _ in parse_revocation_targets(checked.statement))
        return PendingEntry(
            kind=kind, submitter=vendor_id, envelope=submission.envelope,
            dedup_key=dedup_key(vendor_id, envelope.pae()), subject_digests=checked.sample_digests,
            batch_digests=checked.batch_digests, revokes=revokes,
        )

    def attest(self, vendor_id: str, key: VendorKeyPair, names: Sequence[str], claim: Claim, actor: str,
               performed_at: datetime | None = None, **kwargs: timedelta) -> int:
        return self.submit(
            vendor_id, attest_samples(key, [digest(n) for n in names], details(claim, actor, performed_at)), **kwargs
        )

    def attest_batch(self, vendor_id: str, key: VendorKeyPair, names: Sequence[str], claim: Claim, actor: str,
                     performed_at: datetime | None = None) -> int:
        return self.submit(
            vendor_id, attest_batch(key, [digest(n) for n in names], details(claim, actor, performed_at))
        )

    def revoke(self, vendor_id: str, key: VendorKeyPair, targets: Sequence[int]) -> int:
        leaves = [(i, self.store.entry(i).leaf_hash) for i in targets]
        return self.submit(vendor_id, revoke_entries(key, leaves, "mistake"))
