"""The status rule of ledger/status.py and the README, case by case, and its monotonicity."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from anchorlog.ledger.predicates import Claim
from anchorlog.ledger.status import (
    HUMAN_GROUNDED,
    AttestationFact,
    Status,
    derive_status,
    is_human_grounded,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HC, HE, HV, SY = Claim.HUMAN_CREATED, Claim.HUMAN_EDITED, Claim.HUMAN_VALIDATED, Claim.SYNTHETIC
fast = settings(deadline=None, max_examples=150)


def fact(
    claim: Claim, vendor: str = "acme", *, index: int = 0, age: timedelta = timedelta(days=1),
    revoked: bool = False, compromised: bool = False,
) -> AttestationFact:
    return AttestationFact(
        entry_index=index, vendor_id=vendor, claim=claim, performed_at=NOW - age,
        revoked=revoked, key_compromised=compromised,
    )


def facts(*claims: Claim) -> list[AttestationFact]:
    return [fact(c, index=i) for i, c in enumerate(claims)]


# --- precedence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ((HC,), Status.HUMAN_CREATED),
        ((HE,), Status.HUMAN_EDITED),
        ((HV,), Status.HUMAN_VALIDATED),
        ((SY,), Status.SYNTHETIC),
        ((HC, HE), Status.HUMAN_CREATED),
        ((HE, HC), Status.HUMAN_CREATED),
        ((HC, HV), Status.HUMAN_CREATED),
        ((HE, HV), Status.HUMAN_EDITED),
        ((HC, SY), Status.SYNTHETIC),  # human origin contradicted, nobody validated
        ((HE, SY), Status.SYNTHETIC),
        ((HC, HE, SY), Status.SYNTHETIC),
        ((HV, SY), Status.HUMAN_VALIDATED),  # a person checked it, whatever made it
        ((HC, HV, SY), Status.HUMAN_VALIDATED),
        ((HC, HE, HV, SY), Status.HUMAN_VALIDATED),
        ((SY, SY), Status.SYNTHETIC),
        ((HV, HV), Status.HUMAN_VALIDATED),
    ],
)
def test_precedence(claims: tuple[Claim, ...], expected: Status) -> None:
    assert derive_status(facts(*claims)) == expected
    assert derive_status(list(reversed(facts(*claims)))) == expected


def test_contradiction_across_vendors() -> None:
    mixed = [fact(HC, "acme", index=1), fact(SY, "beta", index=2)]
    assert derive_status(mixed) == Status.SYNTHETIC
    assert derive_status(mixed, trusted_vendors={"acme"}) == Status.HUMAN_CREATED


def test_no_attestation_is_unknown_never_human() -> None:
    assert derive_status([]) == Status.UNKNOWN
    assert not is_human_grounded(Status.UNKNOWN)


def test_only_the_three_human_statuses_are_grounded() -> None:
    assert HUMAN_GROUNDED == {Status.HUMAN_CREATED, Status.HUMAN_EDITED, Status.HUMAN_VALIDATED}
    for status in Status:
        assert is_human_grounded(status) == (status in HUMAN_GROUNDED)


# --- revocation and compromised keys -------------------------------------------------------


def test_all_revoked_is_revoked() -> None:
    assert derive_status([fact(HC, revoked=True)]) == Status.REVOKED
    assert derive_status([fact(HC, index=1, revoked=True), fact(HV, index=2, revoked=True)]) == Status.REVOKED


def test_compromised_key_counts_as_revoked() -> None:
    assert derive_status([fact(HV, compromised=True)]) == Status.REVOKED
    both = [fact(HC, index=1, revoked=True), fact(HV, index=2, compromised=True)]
    assert derive_status(both) == Status.REVOKED


def test_unrevoked_attestation_survives_a_revoked_one() -> None:
    pair = [fact(HC, index=1, revoked=True), fact(HV, index=2)]
    assert derive_status(pair) == Status.HUMAN_VALIDATED
    pair = [fact(HC, index=1, compromised=True), fact(SY, index=2)]
    assert derive_status(pair) == Status.SYNTHETIC


def test_revoking_a_synthetic_claim_does_not_promote_human_origin() -> None:
    pair = [fact(HC, index=1), fact(SY, index=2)]
    assert derive_status(pair) == Status.SYNTHETIC
    assert derive_status([pair[0], replace(pair[1], revoked=True)]) == Status.SYNTHETIC
    assert derive_status([pair[0], replace(pair[1], key_compromised=True)]) == Status.SYNTHETIC
    # Validation by a person still grounds it.
    assert derive_status([*pair, fact(HV, index=3)]) == Status.HUMAN_VALIDATED


def test_revocations_by_untrusted_vendors_do_not_make_revoked() -> None:
    only_untrusted = [fact(HC, "mallory", revoked=True)]
    assert derive_status(only_untrusted, trusted_vendors={"acme"}) == Status.UNKNOWN


# --- trusted vendors ------------------------------------------------------------------


def test_untrusted_vendors_are_ignored() -> None:
    assert derive_status([fact(HC, "mallory")], trusted_vendors={"acme"}) == Status.UNKNOWN
    assert derive_status([fact(HC, "mallory")], trusted_vendors=set()) == Status.UNKNOWN
    mixed = [fact(HC, "acme", index=1), fact(SY, "mallory", index=2)]
    assert derive_status(mixed, trusted_vendors={"acme"}) == Status.HUMAN_CREATED
    mixed = [fact(SY, "acme", index=1), fact(HV, "mallory", index=2)]
    assert derive_status(mixed, trusted_vendors={"acme"}) == Status.SYNTHETIC


def test_none_trusts_every_vendor() -> None:
    mixed = [fact(HE, "acme", index=1), fact(HV, "beta", index=2)]
    assert derive_status(mixed, trusted_vendors=None) == Status.HUMAN_EDITED


# --- maximum age ------------------------------------------------------------------------


def test_attestations_older_than_max_age_do_not_count() -> None:
    old = fact(HC, age=timedelta(days=400))
    assert derive_status([old]) == Status.HUMAN_CREATED
    assert derive_status([old], max_age=timedelta(days=365), now=NOW) == Status.UNKNOWN
    fresh = fact(HV, index=1, age=timedelta(days=3))
    assert derive_status([old, fresh], max_age=timedelta(days=365), now=NOW) == Status.HUMAN_VALIDATED


def test_max_age_boundary_is_inclusive() -> None:
    edge = fact(HE, age=timedelta(days=30))
    assert derive_status([edge], max_age=timedelta(days=30), now=NOW) == Status.HUMAN_EDITED
    past = fact(HE, age=timedelta(days=30, seconds=1))
    assert derive_status([past], max_age=timedelta(days=30), now=NOW) == Status.UNKNOWN


def test_stale_and_revoked_is_unknown_not_revoked() -> None:
    mixed = [fact(HC, index=1, revoked=True), fact(HV, index=2, age=timedelta(days=100))]
    assert derive_status(mixed, max_age=timedelta(days=10), now=NOW) == Status.UNKNOWN


def test_stale_synthetic_claim_still_contradicts() -> None:
    mixed = [fact(HC, index=1), fact(SY, index=2, age=timedelta(days=100))]
    assert derive_status(mixed, max_age=timedelta(days=10), now=NOW) == Status.SYNTHETIC


def test_max_age_needs_now() -> None:
    with pytest.raises(ValueError, match="now is required"):
        derive_status([fact(HC)], max_age=timedelta(days=1))


# --- monotonicity --------------------------------------------------------------------------

VENDORS = ("acme", "beta", "mallory")

# Mostly live, trusted and fresh facts, so that the interesting mixes (a human
# claim beside a synthetic one) come up often.
rarely = st.sampled_from([False, False, False, True])
any_fact = st.builds(
    fact,
    st.sampled_from(Claim),
    st.sampled_from(VENDORS),
    index=st.integers(0, 1000),
    age=st.integers(0, 60).map(lambda days: timedelta(days=days)),
    revoked=rarely,
    compromised=rarely,
)
policies = st.fixed_dictionaries({
    "trusted_vendors": st.sampled_from(
        [None, None, frozenset({"acme", "beta"}), frozenset({"acme"}), frozenset()]
    ),
    "max_age": st.sampled_from([None, None, timedelta(days=30), timedelta(days=59)]),
})
NO_POLICY: dict[str, object] = {"trusted_vendors": None, "max_age": None}


def _status(found: list[AttestationFact], policy: dict[str, object]) -> Status:
    return derive_status(found, now=NOW, **policy)  # type: ignore[arg-type]


@given(st.lists(any_fact, max_size=6), policies, any_fact)
@fast
def test_adding_a_synthetic_claim_never_makes_human_grounded(
    found: list[AttestationFact], policy: dict[str, object], extra: AttestationFact
) -> None:
    before = _status(found, policy)
    after = _status([*found, replace(extra, claim=Claim.SYNTHETIC)], policy)
    if not is_human_grounded(before):
        assert not is_human_grounded(after)


@given(
    st.lists(any_fact, min_size=1, max_size=6), policies, st.integers(0, 5),
    st.sampled_from(["revoked", "key_compromised"]),
)
@example([fact(HC, index=1), fact(SY, index=2)], NO_POLICY, 1, "revoked")
@example([fact(HE, index=1), fact(SY, "beta", index=2)], NO_POLICY, 1, "key_compromised")
@fast
def test_a_revocation_or_compromise_never_makes_human_grounded(
    found: list[AttestationFact], policy: dict[str, object], position: int, how: str
) -> None:
    before = _status(found, policy)
    which = position % len(found)
    changed = list(found)
    changed[which] = replace(found[which], **{how: True})
    after = _status(changed, policy)
    if not is_human_grounded(before):
        assert not is_human_grounded(after)


@given(st.lists(any_fact, max_size=6), any_fact)
@fast
def test_untrusted_vendors_change_nothing(found: list[AttestationFact], extra: AttestationFact) -> None:
    trusted = {"acme", "beta"}
    outsider = replace(extra, vendor_id="mallory")
    assert derive_status([*found, outsider], trusted_vendors=trusted) == derive_status(
        found, trusted_vendors=trusted
    )


@given(st.lists(any_fact, max_size=6), policies, st.randoms(use_true_random=False))
@fast
def test_status_does_not_depend_on_order(
    found: list[AttestationFact], policy: dict[str, object], rng: object
) -> None:
    shuffled = list(found)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert _status(shuffled, policy) == _status(found, policy)


@given(st.lists(any_fact, max_size=6), policies)
@fast
def test_human_grounded_needs_an_effective_human_attestation(
    found: list[AttestationFact], policy: dict[str, object]
) -> None:
    status = _status(found, policy)
    trusted = policy["trusted_vendors"]
    max_age = policy["max_age"]
    effective = [
        f for f in found
        if (trusted is None or f.vendor_id in trusted)  # type: ignore[operator]
        and not f.revoked and not f.key_compromised
        and (max_age is None or NOW - f.performed_at <= max_age)  # type: ignore[operator]
    ]
    if is_human_grounded(status):
        assert any(f.claim.value == status.value for f in effective)
    if not effective:
        assert status in (Status.UNKNOWN, Status.REVOKED)
