"""check_direct_sample: the shortcut for a sample with an entry of its own accepts only
what check_provenance accepts, with the same result."""

from __future__ import annotations

import copy
from dataclasses import replace

from anchorlog.client.verify import (
    DigestClaim,
    VerifiedAttestation,
    check_direct_sample,
    check_provenance,
    key_state,
)
from anchorlog.ledger.predicates import Claim
from anchorlog.ledger.status import Status
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.client.conftest import LedgerData
from tests.client.test_batched_sample import _warm, accepts_no_more_than_check_provenance
from tests.client.test_verify import _claim, _flip, _verified


def _direct_claims(ledger_data: LedgerData) -> list[DigestClaim]:
    """The bundle's answers naming one entry directly, with no revocation."""
    return [
        claim for claim, _ in ledger_data.bundle.samples
        if len(claim.hits) == 1 and claim.hits[0][1] is None and not claim.revocation_indices
    ]


def _shortcut(
    claim: DigestClaim, ledger_data: LedgerData, verified: dict[int, VerifiedAttestation],
    statuses: dict[tuple[Claim, bool], Status] | None = None,
) -> object:
    checkpoint, _ = _verified(ledger_data)
    ((index, _),) = claim.hits
    return check_direct_sample(
        claim.digest, index, claim.status_hint, checkpoint, verified, {} if statuses is None else statuses
    )


def test_the_shortcut_answers_like_check_provenance_with_one_status_memo(ledger_data: LedgerData) -> None:
    _, verified = _warm(ledger_data)
    checkpoint, entries = _verified(ledger_data)
    registry = key_state(entries.values(), ledger_data.verifier)
    claims = _direct_claims(ledger_data)
    # A human-validated and a synthetic sample at least: the memo must not mix claims.
    assert {check_provenance(c, entries, registry, checkpoint).status for c in claims} >= {
        Status.HUMAN_VALIDATED, Status.SYNTHETIC,
    }
    statuses: dict[tuple[Claim, bool], Status] = {}
    for _ in range(2):
        for claim in claims:
            expected = check_provenance(claim, entries, registry, checkpoint)
            assert _shortcut(claim, ledger_data, verified, statuses) == expected
    # Not verified in this stream yet: left to check_provenance.
    assert _shortcut(claims[0], ledger_data, {}) is None


def test_an_attestation_signed_by_a_key_later_compromised_is_revoked_by_the_shortcut_too(
    ledger_data: LedgerData,
) -> None:
    _, verified = _warm(ledger_data)
    checkpoint, entries = _verified(ledger_data)
    registry = key_state(entries.values(), ledger_data.verifier)
    claim = _claim(ledger_data, Status.HUMAN_VALIDATED, batched=False)
    ((index, _),) = claim.hits
    statuses: dict[tuple[Claim, bool], Status] = {}
    assert _shortcut(claim, ledger_data, verified, statuses) is not None  # the sound key, remembered first
    compromised = dict(verified)
    compromised[index] = replace(verified[index], key_compromised=True)
    expected = check_provenance(claim, entries, registry, checkpoint, dict(compromised))
    assert expected.status is Status.REVOKED
    assert _shortcut(claim, ledger_data, compromised, statuses) == expected


@settings(deadline=None, max_examples=60)
@given(how=st.sampled_from(["digest", "entry", "batched"]), at=st.integers(0, 1 << 16), bit=st.integers(0, 7))
def test_the_shortcut_never_accepts_what_check_provenance_refuses(
    ledger_data: LedgerData, how: str, at: int, bit: int
) -> None:
    batched_claim, verified = _warm(ledger_data)
    claim = _claim(ledger_data, Status.HUMAN_VALIDATED, batched=False)
    if how == "digest":
        claim = replace(claim, digest=_flip(claim.digest, at, bit))
    elif how == "entry":  # another verified attestation, direct or batched
        claim = replace(claim, hits=((sorted(verified)[at % len(verified)], None),))
    else:  # a batched sample's entry named without its path
        claim = replace(batched_claim, hits=((batched_claim.hits[0][0], None),))
    accepts_no_more_than_check_provenance(claim, ledger_data, verified, _shortcut)


def test_the_status_memo_holds_for_every_claim_and_compromise(ledger_data: LedgerData) -> None:
    # derive_status of one unrevoked attestation (every vendor trusted, no age limit)
    # reads only its claim and key compromise: the memo, filled from other vendors'
    # attestations of other dates, answers as derive_status does for each.
    from anchorlog.client.verify import SampleProvenance
    from anchorlog.ledger.status import derive_status

    _, verified = _warm(ledger_data)
    claim = _claim(ledger_data, Status.HUMAN_VALIDATED, batched=False)
    ((index, _),) = claim.hits
    base = verified[index]
    statuses: dict[tuple[Claim, bool], Status] = {}
    for n, (kind, compromised) in enumerate((c, k) for k in (False, True) for c in Claim):
        for vendor in ("first", "second"):
            # Only the fields status derivation reads are varied (not a valid predicate for every claim).
            predicate = copy.copy(base.predicate)
            object.__setattr__(predicate, "claim", kind)
            object.__setattr__(predicate, "performed_at", base.predicate.performed_at.replace(year=2001 + n))
            attestation = replace(base, predicate=predicate, key_compromised=compromised, vendor_id=vendor)
            got = _shortcut(claim, ledger_data, {index: attestation}, statuses)
            assert isinstance(got, SampleProvenance)
            assert got.status is derive_status(got.facts())
    assert len(statuses) == 2 * len(Claim)
