"""check_batched_sample: the bulk shortcut accepts only what check_provenance accepts, with the same result."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

from anchorlog.client.verify import (
    DigestClaim,
    InclusionMemo,
    VerifiedAttestation,
    check_batched_sample,
    check_provenance,
    key_state,
)
from anchorlog.ledger.batch import BatchPath, BatchTree, encode_batch_digests
from anchorlog.ledger.errors import VerificationError
from anchorlog.ledger.status import Status
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.client.conftest import LedgerData
from tests.client.test_verify import _claim, _flip, _verified


def _shortcut(claim: DigestClaim, ledger_data: LedgerData, verified: dict[int, VerifiedAttestation]) -> object:
    checkpoint, _ = _verified(ledger_data)
    ((index, path),) = claim.hits
    assert path is not None
    return check_batched_sample(
        claim.digest, index, path.leaf_index, path.batch_size, path.hashes, claim.status_hint, checkpoint,
        verified, {}, InclusionMemo(), {},
    )


def accepts_no_more_than_check_provenance(
    claim: DigestClaim, ledger_data: LedgerData, verified: dict[int, VerifiedAttestation],
    shortcut: Callable[[DigestClaim, LedgerData, dict[int, VerifiedAttestation]], object],
) -> None:
    """``shortcut`` answers ``claim`` as check_provenance does, or None; never what it refuses."""
    checkpoint, entries = _verified(ledger_data)
    registry = key_state(entries.values(), ledger_data.verifier)
    try:
        expected: object = check_provenance(claim, entries, registry, checkpoint, dict(verified))
    except VerificationError:
        expected = None
    got = shortcut(claim, ledger_data, verified)
    assert got is None or got == expected
    if expected is None:
        assert got is None


def _warm(ledger_data: LedgerData) -> tuple[DigestClaim, dict[int, VerifiedAttestation]]:
    checkpoint, entries = _verified(ledger_data)
    registry = key_state(entries.values(), ledger_data.verifier)
    verified: dict[int, VerifiedAttestation] = {}
    for claim, _ in ledger_data.bundle.samples:
        check_provenance(claim, entries, registry, checkpoint, verified)  # every attestation, verified
    return _claim(ledger_data, Status.HUMAN_VALIDATED, batched=True), verified


def test_the_shortcut_answers_a_good_batched_sample_like_check_provenance(ledger_data: LedgerData) -> None:
    claim, verified = _warm(ledger_data)
    checkpoint, entries = _verified(ledger_data)
    registry = key_state(entries.values(), ledger_data.verifier)
    expected = check_provenance(claim, entries, registry, checkpoint)
    assert _shortcut(claim, ledger_data, verified) == expected
    # Not verified in this stream yet: left to check_provenance.
    assert _shortcut(claim, ledger_data, {}) is None


@settings(deadline=None, max_examples=60)
@given(
    how=st.sampled_from(["hash", "leaf_index", "batch_size", "digest", "entry", "drop", "extra"]),
    at=st.integers(0, 1 << 16),
    bit=st.integers(0, 7),
)
def test_the_shortcut_never_accepts_what_check_provenance_refuses(
    ledger_data: LedgerData, how: str, at: int, bit: int
) -> None:
    claim, verified = _warm(ledger_data)
    ((index, path),) = claim.hits
    assert path is not None
    if how == "hash":
        i = at % len(path.hashes)
        path = replace(path, hashes=(*path.hashes[:i], _flip(path.hashes[i], at, bit), *path.hashes[i + 1 :]))
    elif how == "leaf_index":
        path = replace(path, leaf_index=(path.leaf_index + 1 + at) % (path.batch_size + 3))
    elif how == "batch_size":
        path = replace(path, batch_size=max(1, path.batch_size + (1 if bit & 1 else -1) * (1 + at % 5)))
    elif how == "digest":
        claim = replace(claim, digest=_flip(claim.digest, at, bit))
    elif how == "entry":
        index = sorted(verified)[at % len(verified)]  # another verified attestation, direct or batched
    elif how == "drop":
        path = replace(path, hashes=path.hashes[:-1])
    else:
        path = replace(path, hashes=(*path.hashes, bytes(32)))
    claim = replace(claim, hits=((index, path),))
    accepts_no_more_than_check_provenance(claim, ledger_data, verified, _shortcut)


def test_a_warm_memo_refuses_a_path_with_any_sibling_replaced() -> None:
    # A batch big enough for InclusionMemo (over 2**8 samples), remembered by good paths first.
    digests = sorted(hashlib.sha256(b"warm %d" % i).digest() for i in range(600))
    tree = BatchTree(encode_batch_digests(digests))
    memo = InclusionMemo()
    for d in digests[:400]:
        p = tree.path(d)
        memo.verify(hashlib.sha256(b"\x00" + d).digest(), p.leaf_index, p.batch_size, p.hashes, tree.root)
    good = tree.path(digests[450])
    for i in range(len(good.hashes)):
        bad = BatchPath(good.leaf_index, good.batch_size, (*good.hashes[:i], bytes(32), *good.hashes[i + 1 :]))
        try:
            memo.verify(hashlib.sha256(b"\x00" + digests[450]).digest(), bad.leaf_index, bad.batch_size,
                        bad.hashes, tree.root)
        except VerificationError:
            continue
        raise AssertionError(f"a path with hash {i} zeroed was accepted")
