"""Security review fixes on the verifying side, against real log files (``LogStore.append``).

Each test is a case the client used to get wrong: a revocation signed by a
leaked key, an attestation under a foreign predicate type, a future-dated claim
outliving the maximum age, a second client rolling the shared state file back,
and JSON that crashed the parsers instead of being refused.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from anchorlog.client.receipts import Receipt, verify_document
from anchorlog.client.state import advance_trusted, load_trusted, save_trusted
from anchorlog.client.vendor import VendorKeyPair
from anchorlog.client.verify import (
    DigestClaim,
    MalformedEntryError,
    VerifiedCheckpoint,
    VerifiedEntry,
    check_checkpoint,
    check_entry,
    check_provenance,
    key_state,
)
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, Envelope, sign_envelope, strict_json
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.errors import InconsistentLogError, InvalidInput, VerificationError
from anchorlog.ledger.keys import KeyEvent, KeyEventType
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import Claim, revocation_subject
from anchorlog.ledger.statement import Subject, build_statement, parse_statement
from anchorlog.ledger.status import Status, derive_status
from anchorlog.ledger.store import PendingEntry, dedup_key
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.client.audit_log import LogBuilder, details, digest
from tests.client.conftest import LedgerData


def _verified_log(log: LogBuilder) -> tuple[VerifiedCheckpoint, dict[int, VerifiedEntry], NoteVerifier]:
    verifier = NoteVerifier.from_vkey(log.log_key)
    latest = log.store.latest_checkpoint()
    assert latest is not None
    checkpoint = check_checkpoint(latest.note, verifier)
    entries = {
        e.index: check_entry(e.index, e.data, log.store.inclusion_proof(e.index, checkpoint.size),
                             checkpoint.size, checkpoint)
        for e in log.store.entries(0, checkpoint.size)
    }
    return checkpoint, entries, verifier


def _raw_entry(log: LogBuilder, vendor: str, key: VendorKeyPair, kind: EntryKind, statement: bytes,
               subjects: tuple[bytes, ...] = ()) -> int:
    """Log an envelope the service would refuse (it checks predicate types), as a lax server might."""
    envelope = sign_envelope(PAYLOAD_TYPE_INTOTO, statement, key.private_key)
    pending = PendingEntry(kind=kind, submitter=vendor, envelope=envelope,
                           dedup_key=dedup_key(vendor, Envelope.parse(envelope).pae()),
                           subject_digests=subjects)
    return log.append([pending])[0]


# ---------------------------------------------------------------- finding 7


def test_revocation_signed_by_a_key_later_revoked_as_compromised_revokes_nothing(tmp_path: Path) -> None:
    log = LogBuilder(tmp_path / "log.db")
    try:
        leaked = log.vendor("acme")
        good = VendorKeyPair.generate()
        log.register("acme", good)
        target = log.attest("acme", good, ["essay"], Claim.HUMAN_CREATED, "author-1")
        # Whoever stole ``leaked`` withdraws the vendor's honest claim...
        revocation = log.revoke("acme", leaked, [target])
        claim = DigestClaim(digest("essay"), ((target, None),), (revocation,))
        checkpoint, entries, verifier = _verified_log(log)
        before = check_provenance(claim, entries, key_state(entries.values(), verifier), checkpoint)
        assert before.status is Status.REVOKED and before.revoked_entries == {target}
        # ...and once the vendor reports the key compromised, that revocation counts for nothing.
        log.key_event(KeyEvent(KeyEventType.KEY_REVOKED, "acme", key_id=leaked.key_id, compromised=True,
                               reason="leaked"))
        checkpoint, entries, verifier = _verified_log(log)
        after = check_provenance(claim, entries, key_state(entries.values(), verifier), checkpoint)
        assert after.status is Status.HUMAN_CREATED
        assert after.revoked_entries == frozenset()
    finally:
        log.close()


# ---------------------------------------------------------------- finding 12


def test_attestation_under_a_foreign_predicate_type_is_refused(tmp_path: Path) -> None:
    log = LogBuilder(tmp_path / "log.db")
    try:
        key = log.vendor("acme")
        sample = digest("photo")
        predicate = details(Claim.HUMAN_CREATED, "author-1").predicate().to_json()
        statement = build_statement([Subject("photo", sample)], "https://example.com/other/v1", predicate)
        index = _raw_entry(log, "acme", key, EntryKind.ATTESTATION, statement, (sample,))
        checkpoint, entries, verifier = _verified_log(log)
        with pytest.raises(MalformedEntryError, match="predicate type 'https://example.com/other/v1'"):
            check_provenance(DigestClaim(sample, ((index, None),), ()), entries,
                             key_state(entries.values(), verifier), checkpoint)
    finally:
        log.close()


def test_revocation_under_a_foreign_predicate_type_is_refused(tmp_path: Path) -> None:
    log = LogBuilder(tmp_path / "log.db")
    try:
        key = log.vendor("acme")
        target = log.attest("acme", key, ["essay"], Claim.HUMAN_CREATED, "author-1")
        leaf = log.store.entry(target).leaf_hash
        statement = build_statement([revocation_subject(target, leaf)], "https://example.com/withdraw/v1",
                                    {"reason": "x"})
        revocation = _raw_entry(log, "acme", key, EntryKind.REVOCATION, statement)
        checkpoint, entries, verifier = _verified_log(log)
        claim = DigestClaim(digest("essay"), ((target, None),), (revocation,))
        with pytest.raises(MalformedEntryError, match="revocation has predicate type"):
            check_provenance(claim, entries, key_state(entries.values(), verifier), checkpoint)
    finally:
        log.close()


# ---------------------------------------------------------------- finding 8


def test_future_dated_claim_ages_from_its_integration_time(tmp_path: Path) -> None:
    log = LogBuilder(tmp_path / "log.db")
    try:
        key = log.vendor("acme")
        future = datetime(2099, 1, 1, tzinfo=UTC)
        index = log.attest("acme", key, ["essay"], Claim.HUMAN_CREATED, "author-1", performed_at=future)
        checkpoint, entries, verifier = _verified_log(log)
        result = check_provenance(DigestClaim(digest("essay"), ((index, None),), ()), entries,
                                  key_state(entries.values(), verifier), checkpoint)
        integrated = datetime.fromtimestamp(entries[index].entry.integrated_ms / 1000, UTC)
        (fact,) = result.facts()
        assert fact.integrated_at == integrated and fact.dated_at == integrated
        max_age = timedelta(days=30)
        fresh = derive_status(result.facts(), max_age=max_age, now=integrated + timedelta(days=1))
        stale = derive_status(result.facts(), max_age=max_age, now=integrated + timedelta(days=31))
        assert (fresh, stale) == (Status.HUMAN_CREATED, Status.UNKNOWN)
    finally:
        log.close()


# ---------------------------------------------------------------- finding 6


def test_shared_state_file_is_never_rolled_back(ledger_data: LedgerData, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    early, late, verifier = ledger_data.early, ledger_data.late, ledger_data.verifier
    asked: list[tuple[int, int]] = []

    def proofs(first: int, second: int) -> list[bytes]:
        asked.append((first, second))
        assert (first, second) == (early.size, late.size)
        return list(ledger_data.consistency)

    assert advance_trusted(state, verifier, early, proofs) == early
    # Client A moves the file to ``late``; client B, which loaded it at ``early``, then
    # saves the ``early``-sized view it was answered with: the file must keep ``late``.
    assert advance_trusted(state, verifier, late, proofs) == late
    assert advance_trusted(state, verifier, early, proofs) == late
    stored = load_trusted(state, verifier)
    assert stored is not None and stored.note == late.note
    # Both moves were proved against what the file held at that moment.
    assert asked == [(early.size, late.size), (early.size, late.size)]


def test_shared_state_file_refuses_an_unproved_advance(ledger_data: LedgerData, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    save_trusted(state, ledger_data.verifier, ledger_data.early)
    before = state.read_bytes()
    wrong = [bytes(32) for _ in ledger_data.consistency]
    with pytest.raises(InconsistentLogError, match="not consistent"):
        advance_trusted(state, ledger_data.verifier, ledger_data.late, lambda a, b: wrong)
    assert state.read_bytes() == before


# ---------------------------------------------------------------- finding 5


def test_integer_beyond_the_digit_limit_is_invalid_input_not_a_crash() -> None:
    huge = b"1" * 5000
    with pytest.raises(InvalidInput, match="statement: is not valid JSON"):
        parse_statement(b'{"_type": ' + huge + b"}")
    with pytest.raises(InvalidInput, match="envelope: is not valid JSON"):
        Envelope.parse(b'{"payload": "", "payloadType": "x", "signatures": [], "n": ' + huge + b"}")


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=64))
def test_strict_json_raises_only_invalid_input(data: bytes) -> None:
    try:
        strict_json(b'{"a": ' + data + b"}", "doc")
    except InvalidInput:
        pass


# ---------------------------------------------------------------- finding 13


def test_receipt_with_a_lone_surrogate_is_invalid_not_a_crash(ledger_data: LedgerData) -> None:
    doc = ledger_data.receipts[0].to_json()
    doc["checkpoint"] = doc["checkpoint"][:10] + "\ud800" + doc["checkpoint"][10:]
    with pytest.raises(VerificationError, match="checkpoint: not valid Unicode text"):
        verify_document(doc, ledger_data.verifier)
    bundle = ledger_data.bundle_json()
    bundle["checkpoint"] = "\udfff"
    with pytest.raises(VerificationError, match="checkpoint: not valid Unicode text"):
        verify_document(bundle, ledger_data.verifier)


def test_verify_command_reports_a_surrogate_or_huge_number_as_invalid(ledger_data: LedgerData,
                                                                        tmp_path: Path) -> None:
    from anchorlog.client.cli import main

    receipt: Receipt = ledger_data.receipts[0]
    good = json.dumps(receipt.to_json())
    surrogate = tmp_path / "surrogate.json"
    surrogate.write_text(good.replace('"checkpoint": "', '"checkpoint": "\\ud800', 1))
    huge = tmp_path / "huge.json"
    huge.write_text(good.replace('"index": ', '"index": ' + "9" * 5000 + ", \"i\": ", 1))
    vkey = ledger_data.verifier.vkey()
    result = CliRunner().invoke(main, ["verify", "--log-key", vkey, str(surrogate)])
    assert result.exit_code == 1, result.output
    assert "INVALID: checkpoint: not valid Unicode text" in result.output
    result = CliRunner().invoke(main, ["verify", "--log-key", vkey, str(huge)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code != 0 and "not JSON" in result.output
