"""Deriving a sample's provenance status from verified attestations.

The rule, applied to the attestations that name a sample (each already verified:
inclusion proof, DSSE signature by a key valid at that entry):

1. An attestation is *effective* when it is from a trusted vendor, not revoked by
   a later revocation entry of the same vendor, not signed by a key that was
   later revoked as compromised, and (when a maximum age is set) not older
   than that age. Age runs from the earlier of the vendor's ``performedAt`` and
   the time the log integrated the entry: a vendor cannot keep a claim fresh by
   dating it in the future.
2. ``human-created`` if an effective attestation says so and no trusted vendor
   claims ``synthetic``; else ``human-edited`` under the same condition; else
   ``human-validated`` if an effective attestation says so (a person checked the
   sample against reality, whatever produced it); else ``synthetic`` if any
   effective attestation exists (only a synthetic claim, or human origin
   contradicted by a synthetic claim with nobody validating it). A synthetic
   claim contradicts human origin even when revoked, signed by a compromised
   key or older than the maximum age: otherwise revoking a synthetic claim
   could promote a sample to human-created.
3. ``revoked`` if attestations from trusted vendors exist but none is effective
   because all were revoked or their key was compromised.
4. ``unknown`` otherwise: no attestation is never human.

Only the three human statuses count as human-grounded. The rule is monotonic in
the direction that matters: adding a synthetic claim or a revocation can never
turn a sample into human-grounded.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from anchorlog.ledger.predicates import Claim


class Status(enum.StrEnum):
    HUMAN_CREATED = "human-created"
    HUMAN_VALIDATED = "human-validated"
    HUMAN_EDITED = "human-edited"
    SYNTHETIC = "synthetic"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


HUMAN_GROUNDED = frozenset({Status.HUMAN_CREATED, Status.HUMAN_EDITED, Status.HUMAN_VALIDATED})


@dataclass(frozen=True)
class AttestationFact:
    """What status derivation needs to know about one verified attestation."""

    entry_index: int
    vendor_id: str
    claim: Claim
    performed_at: datetime
    revoked: bool = False
    key_compromised: bool = False
    # When the log integrated the entry; None when unknown (then only performed_at counts).
    integrated_at: datetime | None = None

    @property
    def dated_at(self) -> datetime:
        """The moment the age of the claim runs from: never later than its integration."""
        if self.integrated_at is None:
            return self.performed_at
        return min(self.performed_at, self.integrated_at)


def derive_status(
    facts: Iterable[AttestationFact],
    *,
    trusted_vendors: Collection[str] | None = None,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> Status:
    """Apply the documented rule; ``trusted_vendors=None`` trusts every vendor."""
    trusted = [f for f in facts if trusted_vendors is None or f.vendor_id in trusted_vendors]
    if not trusted:
        return Status.UNKNOWN
    # Counted over every trusted claim, not only effective ones, so that taking a
    # synthetic claim away (revocation, compromise, age) never makes a sample human.
    contradicted = any(f.claim is Claim.SYNTHETIC for f in trusted)
    live = [f for f in trusted if not f.revoked and not f.key_compromised]
    if max_age is not None:
        if now is None:
            raise ValueError("now is required with max_age")
        live = [f for f in live if now - f.dated_at <= max_age]
    if not live:
        if all(f.revoked or f.key_compromised for f in trusted):
            return Status.REVOKED
        return Status.UNKNOWN
    claims = {f.claim for f in live}
    if Claim.HUMAN_CREATED in claims and not contradicted:
        return Status.HUMAN_CREATED
    if Claim.HUMAN_EDITED in claims and not contradicted:
        return Status.HUMAN_EDITED
    if Claim.HUMAN_VALIDATED in claims:
        return Status.HUMAN_VALIDATED
    return Status.SYNTHETIC


def is_human_grounded(status: Status) -> bool:
    return status in HUMAN_GROUNDED
