"""Vendor side without a server: key files, hashing rules, statements the ledger accepts."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from anchorlog.client.vendor import (
    ClaimDetails,
    VendorKeyPair,
    attest_batch,
    attest_samples,
    hash_bytes,
    hash_file,
    hash_json,
    hash_text,
    revoke_entries,
)
from anchorlog.ledger.attestation import check_attestation
from anchorlog.ledger.batch import BATCH_SUBJECT_NAME, batch_root, sort_digests
from anchorlog.ledger.digests import Canonicalization
from anchorlog.ledger.dsse import Envelope, verify_envelope
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.predicates import Claim, ProvenancePredicate
from anchorlog.ledger.statement import parse_statement
from hypothesis import given, settings
from hypothesis import strategies as st

DETAILS = ClaimDetails(claim=Claim.HUMAN_VALIDATED, canonicalization=Canonicalization.UTF8_NFC_V1,
                       actor_id="r-1", method="review")


def test_key_file_is_0600_never_overwritten_and_refused_when_readable(tmp_path: Path) -> None:
    key = VendorKeyPair.generate()
    path = tmp_path / "vendor.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert VendorKeyPair.load(path).public_key == key.public_key
    with pytest.raises(FileExistsError):
        VendorKeyPair.generate().save(path)
    assert VendorKeyPair.load(path).public_key == key.public_key
    os.chmod(path, 0o644)
    with pytest.raises(InvalidInput, match="must be 0600"):
        VendorKeyPair.load(path)
    assert repr(key) == f"VendorKeyPair(key_id={key.key_id!r})"  # never the secret


def test_hashing_rules(tmp_path: Path) -> None:
    assert hash_bytes(b"abc") == hashlib.sha256(b"abc").digest()
    (tmp_path / "f").write_bytes(b"\x00" * 100_000)
    assert hash_file(tmp_path / "f") == hashlib.sha256(b"\x00" * 100_000).digest()
    assert hash_text("Cafe\u0301") == hash_text("Caf\u00e9") == hashlib.sha256("Caf\u00e9".encode()).digest()
    assert hash_json({"b": 1, "a": [True, None]}) == hashlib.sha256(b'{"a":[true,null],"b":1}').digest()


@settings(max_examples=25, deadline=None)
@given(samples=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40, unique=True))
def test_statements_are_accepted_by_the_ledgers_own_checks(samples: list[bytes]) -> None:
    key = VendorKeyPair.generate()
    direct = attest_samples(key, samples, DETAILS)
    envelope = Envelope.parse(direct.envelope)
    verify_envelope(envelope, key.public_key)
    statement = parse_statement(envelope.payload)
    assert sorted(statement.digests()) == sorted(samples)
    assert ProvenancePredicate.parse(statement.predicate).claim is Claim.HUMAN_VALIDATED
    check_attestation(direct.envelope, b"", max_subjects=1000, max_batch=1000)

    batch = attest_batch(key, samples + samples[:1], DETAILS)
    statement = parse_statement(Envelope.parse(batch.envelope).payload)
    (subject,) = statement.subjects
    assert subject.name == BATCH_SUBJECT_NAME and subject.digest == batch_root(sort_digests(samples))
    assert batch.batch_digests == b"".join(sorted(samples))
    assert ProvenancePredicate.parse(statement.predicate).batch.size == len(samples)  # type: ignore[union-attr]
    check_attestation(batch.envelope, batch.batch_digests, max_subjects=1000, max_batch=1000)

    revocation = revoke_entries(key, [(3, samples[0])], "mistake")
    verify_envelope(Envelope.parse(revocation.envelope), key.public_key)
