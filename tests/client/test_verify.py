"""client/verify.py on real ledger data: what verifies, and the specific error for what does not."""

from __future__ import annotations

from dataclasses import replace

import pytest
from anchorlog.client.receipts import verify_entries
from anchorlog.client.verify import (
    BatchPathError,
    CheckpointError,
    DigestClaim,
    InclusionProofError,
    MalformedEntryError,
    SignatureError,
    check_checkpoint,
    check_consistency,
    check_entry,
    check_provenance,
    key_state,
)
from anchorlog.ledger.batch import BatchPath
from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.errors import InconsistentLogError, VerificationError
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.status import Status
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.client.conftest import LedgerData


def _flip(data: bytes, at: int, bit: int = 0) -> bytes:
    at %= len(data)
    return data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]


def _verified(data: LedgerData):  # type: ignore[no-untyped-def]
    checkpoint = check_checkpoint(data.bundle.checkpoint, data.verifier)
    return checkpoint, verify_entries(data.bundle.entries, checkpoint)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_signed_by_the_log_verifies(ledger_data: LedgerData) -> None:
    checkpoint = check_checkpoint(ledger_data.late.note, ledger_data.verifier)
    assert checkpoint.size == ledger_data.late.size and checkpoint.root_hash == ledger_data.late.root_hash


def test_checkpoint_from_another_key_with_the_same_origin_is_refused(ledger_data: LedgerData) -> None:
    forger = NoteSigner.generate(ledger_data.verifier.name)
    forged = sign_checkpoint(
        Checkpoint(origin=ledger_data.verifier.name, size=ledger_data.late.size, root_hash=bytes(32)), forger
    )
    with pytest.raises(CheckpointError, match="not signed by the pinned log key"):
        check_checkpoint(forged, ledger_data.verifier)


@settings(max_examples=60, deadline=None)
@given(at=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_bit_flip_in_a_checkpoint_is_refused(ledger_data: LedgerData, at: int, bit: int) -> None:
    with pytest.raises(CheckpointError):
        check_checkpoint(_flip(ledger_data.late.note, at, bit), ledger_data.verifier)


# ---------------------------------------------------------------- consistency


def test_consistency_of_real_checkpoints(ledger_data: LedgerData) -> None:
    check_consistency(ledger_data.early, ledger_data.late, ledger_data.consistency)
    check_consistency(None, ledger_data.late, ())
    check_consistency(ledger_data.late, ledger_data.late, ())


@settings(max_examples=40, deadline=None)
@given(which=st.integers(min_value=0), at=st.integers(min_value=0, max_value=31))
def test_any_altered_consistency_proof_is_an_inconsistent_log(
    ledger_data: LedgerData, which: int, at: int
) -> None:
    proof = list(ledger_data.consistency)
    proof[which % len(proof)] = _flip(proof[which % len(proof)], at)
    with pytest.raises(InconsistentLogError, match="forked or rewritten"):
        check_consistency(ledger_data.early, ledger_data.late, proof)


def test_shorter_or_same_size_different_root_is_an_inconsistent_log(ledger_data: LedgerData) -> None:
    with pytest.raises(InconsistentLogError, match="smaller than the size"):
        check_consistency(ledger_data.late, ledger_data.early, ())
    signer_free_twin = replace(
        ledger_data.late, checkpoint=replace(ledger_data.late.checkpoint, root_hash=bytes(32))
    )
    with pytest.raises(InconsistentLogError, match="differs from the trusted root"):
        check_consistency(ledger_data.late, signer_free_twin, ())
    with pytest.raises(InconsistentLogError):
        check_consistency(ledger_data.early, ledger_data.late, ledger_data.consistency[:-1])


# ---------------------------------------------------------------- entries


def test_entries_verify_and_decode(ledger_data: LedgerData) -> None:
    _, entries = _verified(ledger_data)
    kinds = {e.entry.kind for e in entries.values()}
    assert kinds == {EntryKind.ATTESTATION, EntryKind.REVOCATION, EntryKind.KEY_EVENT}
    assert all(e.index == i and e.entry.index == i for i, e in entries.items())


@settings(max_examples=60, deadline=None)
@given(pick=st.integers(min_value=0), at=st.integers(min_value=0), bit=st.integers(0, 7),
       target=st.sampled_from(["data", "proof"]))
def test_any_altered_entry_or_proof_is_refused(
    ledger_data: LedgerData, pick: int, at: int, bit: int, target: str
) -> None:
    checkpoint, _ = _verified(ledger_data)
    index = sorted(ledger_data.bundle.entries)[pick % len(ledger_data.bundle.entries)]
    data, proof = ledger_data.bundle.entries[index]
    if target == "data":
        data = _flip(data, at, bit)
    else:
        hashes = list(proof)
        hashes[at % len(hashes)] = _flip(hashes[at % len(hashes)], at // len(hashes), bit)
        proof = tuple(hashes)
    with pytest.raises(InclusionProofError, match=f"entry {index}: not included"):
        check_entry(index, data, proof, checkpoint.size, checkpoint)


def test_entry_claimed_at_another_index_or_size_is_refused(ledger_data: LedgerData) -> None:
    checkpoint, _ = _verified(ledger_data)
    index = max(ledger_data.bundle.entries)
    data, proof = ledger_data.bundle.entries[index]
    with pytest.raises(InclusionProofError):
        check_entry(index - 1, data, proof, checkpoint.size, checkpoint)
    with pytest.raises(InclusionProofError, match="proof is for tree size"):
        check_entry(index, data, proof, checkpoint.size + 1, checkpoint)


# ---------------------------------------------------------------- provenance and key state


def test_statuses_rederived_from_real_entries(ledger_data: LedgerData) -> None:
    checkpoint, entries = _verified(ledger_data)
    registry = key_state(entries.values(), ledger_data.verifier)
    got = {
        claim.digest: check_provenance(claim, entries, registry, checkpoint).status
        for claim, _ in ledger_data.bundle.samples
    }
    assert got == ledger_data.expected
    revoked = next(c for c, s in ledger_data.bundle.samples if s == Status.REVOKED)
    result = check_provenance(revoked, entries, registry, checkpoint)
    assert result.revoked_entries and result.revoked_entries <= {a.entry.index for a in result.attestations}


def _claim(ledger_data: LedgerData, status: Status, batched: bool | None = None) -> DigestClaim:
    for claim, stated in ledger_data.bundle.samples:
        if stated == status and (batched is None or any((p is not None) == batched for _, p in claim.hits)):
            return claim
    raise AssertionError(f"no {status} sample")


def test_key_state_without_key_events_verifies_no_signature(ledger_data: LedgerData) -> None:
    checkpoint, entries = _verified(ledger_data)
    no_keys = key_state([e for e in entries.values() if e.entry.kind is not EntryKind.KEY_EVENT],
                        ledger_data.verifier)
    with pytest.raises(SignatureError, match="not signed by any key of vendor 'acme'"):
        check_provenance(_claim(ledger_data, Status.HUMAN_VALIDATED), entries, no_keys, checkpoint)


def test_key_events_not_signed_by_the_log_do_not_replay(ledger_data: LedgerData) -> None:
    _, entries = _verified(ledger_data)
    other_log = NoteSigner.generate(ledger_data.verifier.name).verifier()
    with pytest.raises(VerificationError, match="does not replay"):
        key_state(entries.values(), other_log)


def test_batch_path_errors_are_specific(ledger_data: LedgerData) -> None:
    checkpoint, entries = _verified(ledger_data)
    registry = key_state(entries.values(), ledger_data.verifier)
    batched = _claim(ledger_data, Status.HUMAN_VALIDATED, batched=True)
    index, path = batched.hits[0]
    assert path is not None
    wrong = replace(path, hashes=(_flip(path.hashes[0], 3), *path.hashes[1:]))
    with pytest.raises(BatchPathError, match="does not verify"):
        check_provenance(replace(batched, hits=((index, wrong),)), entries, registry, checkpoint)
    with pytest.raises(BatchPathError, match="differs from the signed batch size"):
        check_provenance(replace(batched, hits=((index, replace(path, batch_size=path.batch_size + 1)),)),
                         entries, registry, checkpoint)
    with pytest.raises(BatchPathError, match="no batch path"):
        check_provenance(replace(batched, hits=((index, None),)), entries, registry, checkpoint)
    direct = _claim(ledger_data, Status.HUMAN_VALIDATED, batched=False)
    d_index = direct.hits[0][0]
    with pytest.raises(BatchPathError, match="batch path for a direct statement"):
        check_provenance(replace(direct, hits=((d_index, BatchPath(0, 1, ())),)), entries, registry, checkpoint)
    # A direct entry claimed for a digest it does not name.
    with pytest.raises(BatchPathError, match="does not name digest"):
        check_provenance(replace(direct, digest=bytes(32)), entries, registry, checkpoint)


def test_server_naming_entries_without_proof_or_of_the_wrong_kind(ledger_data: LedgerData) -> None:
    checkpoint, entries = _verified(ledger_data)
    registry = key_state(entries.values(), ledger_data.verifier)
    claim = _claim(ledger_data, Status.HUMAN_VALIDATED, batched=False)
    with pytest.raises(VerificationError, match="without proof"):
        check_provenance(replace(claim, hits=((10_000, None),)), entries, registry, checkpoint)
    key_event = next(i for i, e in entries.items() if e.entry.kind is EntryKind.KEY_EVENT)
    with pytest.raises(VerificationError, match="is not an attestation"):
        check_provenance(replace(claim, hits=((key_event, None),)), entries, registry, checkpoint)
    with pytest.raises(VerificationError, match="is not a revocation"):
        check_provenance(replace(claim, revocation_indices=(claim.hits[0][0],)), entries, registry, checkpoint)


def test_included_entry_with_a_malformed_envelope_is_refused(ledger_data: LedgerData) -> None:
    checkpoint, entries = _verified(ledger_data)
    registry = key_state(entries.values(), ledger_data.verifier)
    claim = _claim(ledger_data, Status.HUMAN_VALIDATED, batched=False)
    index = claim.hits[0][0]
    good = entries[index]
    bad_entry = replace(good.entry, envelope=b'{"payload": 1}')
    bad = replace(good, entry=bad_entry, data=bad_entry.encode())
    with pytest.raises(MalformedEntryError, match=f"entry {index}: invalid envelope"):
        check_provenance(claim, {**entries, index: bad}, registry, checkpoint)
