"""The whole data flow against a real server subprocess, with the real client."""

from __future__ import annotations

from pathlib import Path

from anchorlog.client.ledger import LedgerClient
from anchorlog.client.receipts import Receipt, verify_receipt
from anchorlog.client.vendor import ClaimDetails, VendorKeyPair, attest_batch, attest_samples
from anchorlog.ledger.digests import Canonicalization, digest_text
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import Claim
from anchorlog.ledger.status import Status

from tests.conftest import ServerProcess


def _client(server: ServerProcess, token: str, state: Path) -> LedgerClient:
    return LedgerClient(server.address, token=token, log_key=server.log_key, state_path=state)


def test_vendor_attests_and_reader_gets_verified_status(server: ServerProcess, tmp_path: Path) -> None:
    with _client(server, server.admin_token, tmp_path / "admin.json") as admin:
        admin.create_vendor("acme", "Acme Validation")
        key = VendorKeyPair.generate()
        key_id, _ = admin.register_key("acme", key.public_key)
        assert key_id == key.key_id
        vendor_token = admin.issue_token("acme", "vendor")
        reader_token = admin.issue_token("builder-1", "reader")

    validated = ClaimDetails(
        claim=Claim.HUMAN_VALIDATED,
        canonicalization=Canonicalization.UTF8_NFC_V1,
        actor_id="reviewer-7",
        method="two-pass review",
    )
    synthetic = ClaimDetails(
        claim=Claim.SYNTHETIC,
        canonicalization=Canonicalization.UTF8_NFC_V1,
        actor_id="pipeline-2",
        method="generated",
        generator_model="example-llm",
    )
    direct = [digest_text(f"direct sample {i}") for i in range(5)]
    bulk = [digest_text(f"bulk sample {i}") for i in range(3000)]
    with _client(server, vendor_token, tmp_path / "vendor.json") as vendor:
        submission = attest_samples(key, direct, validated)
        first = vendor.submit([submission])
        assert first[0].ok, first[0].error
        again = vendor.submit([attest_samples(key, direct[:1], synthetic), attest_batch(key, bulk, validated)])
        assert all(o.ok for o in again), [o.error for o in again]
        receipt = first[0].receipt
        assert receipt is not None
        assert not receipt.duplicate
        # Resubmitting the identical envelope returns the original entry.
        (repeat,) = vendor.submit([submission])
        assert repeat.receipt is not None and repeat.receipt.duplicate
        assert repeat.receipt.index == receipt.index
        assert repeat.receipt.data == receipt.data

    verifier = NoteVerifier.from_vkey(server.log_key)
    doc = Receipt.from_json(receipt.to_json())
    assert verify_receipt(doc, verifier).index == receipt.index

    with _client(server, reader_token, tmp_path / "reader.json") as reader:
        one = reader.provenance(direct[1])
        assert one.status is Status.HUMAN_VALIDATED
        # A synthetic claim plus a human validation: validated wins (documented rule).
        contested = reader.provenance(direct[0])
        assert contested.status is Status.HUMAN_VALIDATED
        assert len(contested.attestations) == 2
        unknown = reader.provenance(digest_text("never attested"))
        assert unknown.status is Status.UNKNOWN
        asked = bulk[:50] + [digest_text("nobody")] + direct
        results = list(reader.provenance_many(asked, chunk=16))
        assert [r.digest for r in results] == asked
        assert [r.status for r in results[:50]] == [Status.HUMAN_VALIDATED] * 50
        assert results[50].status is Status.UNKNOWN
