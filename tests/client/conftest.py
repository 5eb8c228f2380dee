"""Real ledger data for the client's unit tests.

An in-process server (``anchorlog.server.app.start``, the code ``serve`` runs)
and the real client produce checkpoints, entries, proofs, receipts and a bundle
once per session; the tests then exercise the pure verification code on them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from anchorlog.client.ledger import LedgerClient
from anchorlog.client.receipts import Bundle, Receipt
from anchorlog.client.vendor import (
    ClaimDetails,
    VendorKeyPair,
    attest_batch,
    attest_samples,
    hash_text,
    revoke_entries,
)
from anchorlog.client.verify import VerifiedCheckpoint
from anchorlog.ledger.digests import Canonicalization
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import Claim
from anchorlog.ledger.status import Status


@dataclass(frozen=True)
class LedgerData:
    verifier: NoteVerifier
    receipts: tuple[Receipt, ...]
    bundle: Bundle
    expected: dict[bytes, Status]
    early: VerifiedCheckpoint
    late: VerifiedCheckpoint
    consistency: tuple[bytes, ...]
    batch_digests: tuple[bytes, ...]

    def bundle_json(self) -> dict[str, Any]:
        return self.bundle.to_json()


def _details(claim: Claim, **extra: Any) -> ClaimDetails:
    return ClaimDetails(claim=claim, canonicalization=Canonicalization.UTF8_NFC_V1,
                        actor_id="person-1", method="checked", **extra)


@pytest.fixture(scope="session")
def ledger_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerData]:
    from anchorlog.server.app import ServerConfig, start

    data_dir = tmp_path_factory.mktemp("client-unit") / "data"
    running = start(ServerConfig(data_dir=data_dir, listen="127.0.0.1:0"), out=io.StringIO())
    try:
        yield _populate(f"127.0.0.1:{running.port}", running.signer.verifier().vkey(),
                        (data_dir / "admin.token").read_text().strip(), data_dir.parent)
    finally:
        running.stop(0)


def _populate(address: str, vkey: str, admin_token: str, tmp: Path) -> LedgerData:
    def client(token: str, name: str) -> LedgerClient:
        return LedgerClient(address, token=token, log_key=vkey, state_path=tmp / f"{name}.json")

    key = VendorKeyPair.generate()
    with client(admin_token, "admin") as admin:
        created = admin.create_vendor("acme")
        admin.register_key("acme", key.public_key)
        vendor_token = admin.issue_token("acme", "vendor")
    direct = [hash_text(f"direct {i}") for i in range(3)]
    batch = tuple(hash_text(f"batch {i}") for i in range(21))
    revoked, synthetic, contested = hash_text("withdrawn"), hash_text("made by a model"), hash_text("both")
    with client(vendor_token, "vendor") as vendor:
        early = vendor.checkpoint()
        outcomes = vendor.submit([
            attest_samples(key, direct, _details(Claim.HUMAN_VALIDATED)),
            attest_batch(key, batch, _details(Claim.HUMAN_VALIDATED)),
            attest_samples(key, [revoked, contested], _details(Claim.HUMAN_CREATED)),
            attest_samples(key, [synthetic, contested], _details(Claim.SYNTHETIC, generator_model="m-1")),
        ])
        receipts = [o.receipt for o in outcomes]
        assert all(r is not None for r in receipts), [o.error for o in outcomes]
        target = receipts[2]
        assert target is not None
        withdraw = vendor.submit([revoke_entries(key, [(target.index, vendor.entry(target.index).leaf_hash)], "x")])
        late = vendor.checkpoint()
        consistency = tuple(vendor.consistency_proof(early.size, late.size))
    expected = {
        direct[0]: Status.HUMAN_VALIDATED, batch[7]: Status.HUMAN_VALIDATED, revoked: Status.REVOKED,
        synthetic: Status.SYNTHETIC, contested: Status.SYNTHETIC, hash_text("nobody"): Status.UNKNOWN,
    }
    bundles: list[Bundle] = []
    with client(admin_token, "reader") as reader:
        results = list(reader.provenance_many(list(expected), bundle=bundles))
    assert [r.status for r in results] == list(expected.values())
    all_receipts = (created, *[r for r in receipts if r is not None], *[o.receipt for o in withdraw if o.receipt])
    return LedgerData(
        verifier=NoteVerifier.from_vkey(vkey), receipts=all_receipts, bundle=bundles[0],
        expected=expected, early=early, late=late, consistency=consistency, batch_digests=batch,
    )
