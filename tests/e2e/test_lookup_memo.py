"""Lookups with the client's remembered proof work warm: tampered answers are still refused.

Real server subprocess, real client; a proxy alters the real answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anchorlog.client.ledger import LedgerClient
from anchorlog.client.vendor import attest_batch, hash_text
from anchorlog.client.verify import BatchPathError
from anchorlog.ledger.status import Status

from tests.e2e.test_client import VALIDATED, World, _TamperingProxy, proxy, shared_server, world

__all__ = ["proxy", "shared_server", "world"]  # fixtures used here


def _members(world: World, count: int) -> list[bytes]:
    digests = [hash_text(f"memo {i} {world.vendor_id}") for i in range(count)]
    with world.client(world.vendor_token, "vendor") as vendor:
        (outcome,) = vendor.submit([attest_batch(world.key, digests, VALIDATED)])
        assert outcome.ok, outcome.error
    return digests


def _tamper_upper_batch_hash(target: bytes) -> Any:
    def tamper(answers: Iterator[Any]) -> Iterator[Any]:
        for response in answers:
            for record in response.digests:
                if record.digest == target:
                    hashes = record.hits[0].batch_path.hashes
                    hashes[len(hashes) - 1] = bytes(32)  # the sibling just below the root
            yield response

    return tamper


def test_tampered_batch_path_is_refused_after_the_memo_is_warm(
    world: World, proxy: tuple[str, _TamperingProxy], tmp_path: Path
) -> None:
    address, servicer = proxy
    digests = _members(world, 1100)  # big enough for the memo (over 2**8 leaves)
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                      state_path=tmp_path / "reader.json") as reader:
        warm = list(reader.provenance_many(digests[:800], chunk=200))
        assert [r.status for r in warm] == [Status.HUMAN_VALIDATED] * 800
        target = digests[900]
        servicer.tamper["StreamProvenance"] = _tamper_upper_batch_hash(target)
        with pytest.raises(BatchPathError, match="does not verify"):
            list(reader.provenance_many(digests[850:950], chunk=50))
        del servicer.tamper["StreamProvenance"]
        again = list(reader.provenance_many(digests[850:950], chunk=50))
        assert [r.status for r in again] == [Status.HUMAN_VALIDATED] * 100
        assert reader.provenance(target).status is Status.HUMAN_VALIDATED


def _tamper_key_event(how: str) -> Any:
    def tamper(response: Any) -> Any:
        from anchorlog.ledger.entry import EntryKind, decode_entry

        for proved in response.entries:
            if decode_entry(proved.entry.data).kind is EntryKind.KEY_EVENT:
                if how == "data":
                    data = proved.entry.data
                    proved.entry.data = data[:-3] + bytes([data[-3] ^ 1]) + data[-2:]
                else:
                    proved.inclusion.hashes[0] = bytes(32)
                break
        return response

    return tamper


@pytest.mark.parametrize("how", ["data", "proof"])
def test_tampered_key_event_is_refused_after_it_was_remembered(
    world: World, proxy: tuple[str, _TamperingProxy], tmp_path: Path, how: str
) -> None:
    from anchorlog.client.verify import InclusionProofError

    address, servicer = proxy
    digests = _members(world, 3)
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                      state_path=tmp_path / "reader.json") as reader:
        for digest in digests:  # the same key events, verified and remembered
            assert reader.provenance(digest).status is Status.HUMAN_VALIDATED
        servicer.tamper["GetProvenance"] = _tamper_key_event(how)
        with pytest.raises(InclusionProofError):
            reader.provenance(digests[0])
        del servicer.tamper["GetProvenance"]
        assert reader.provenance(digests[0]).status is Status.HUMAN_VALIDATED


def _tamper_attestation(how: str) -> Any:
    """Alter the answer about the batch entry itself: its bytes, its proof or its batch path."""

    def tamper(response: Any) -> Any:
        (record,) = response.digests
        hit = record.hits[0]
        if how == "batch_path":
            hit.batch_path.hashes[0] = bytes(32)
            return response
        for proved in response.entries:
            if proved.entry.index == hit.entry_index:
                if how == "data":
                    data = proved.entry.data
                    proved.entry.data = data[:-3] + bytes([data[-3] ^ 1]) + data[-2:]
                else:
                    proved.inclusion.hashes[0] = bytes(32)
        return response

    return tamper


@pytest.mark.parametrize("how", ["data", "proof", "batch_path"])
def test_tampered_attestation_is_refused_after_single_lookups_remembered_it(
    world: World, proxy: tuple[str, _TamperingProxy], tmp_path: Path, how: str
) -> None:
    from anchorlog.client.verify import InclusionProofError

    address, servicer = proxy
    digests = _members(world, 8)
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                      state_path=tmp_path / "reader.json") as reader:
        for digest in digests[:4]:  # one batch entry: verified once, then remembered
            assert reader.provenance(digest).status is Status.HUMAN_VALIDATED
        assert len(reader._attested) == 1
        servicer.tamper["GetProvenance"] = _tamper_attestation(how)
        refused = BatchPathError if how == "batch_path" else InclusionProofError
        with pytest.raises(refused):
            reader.provenance(digests[5])
        del servicer.tamper["GetProvenance"]
        assert reader.provenance(digests[5]).status is Status.HUMAN_VALIDATED


def test_a_key_compromised_after_single_lookups_remembered_its_attestation(world: World) -> None:
    digests = _members(world, 4)
    with world.client(world.reader_token, "reader") as reader:
        for digest in digests[:2]:
            result = reader.provenance(digest)
            assert result.status is Status.HUMAN_VALIDATED
            assert result.server_status_hint == str(Status.HUMAN_VALIDATED)
        with world.client(world.server.admin_token, "admin") as admin:
            admin.revoke_key(world.vendor_id, world.key.key_id, compromised=True, reason="leaked")
        # The client's remembered check was against the old key registry, the server's
        # remembered hint source has no compromise flag: both see the revocation now.
        for digest in digests[1:3]:
            result = reader.provenance(digest)
            assert result.status is Status.REVOKED
            assert result.attestations[0].key_compromised
            assert result.server_status_hint == str(Status.REVOKED)


def _tamper_batched(target: bytes, how: str) -> Any:
    def tamper(answers: Iterator[Any]) -> Iterator[Any]:
        for response in answers:
            for record in response.digests:
                if record.digest == target:
                    path = record.hits[0].batch_path
                    if how == "lowest":
                        path.hashes[0] = bytes(32)  # the leaf's own sibling: below every remembered node
                    elif how == "leaf_index":
                        path.leaf_index ^= 1
                    elif how == "batch_size":
                        path.batch_size += 1
                    else:  # a batch path added to a direct (per-sample) answer
                        path.leaf_index = 0
                        path.batch_size = 1
            yield response

    return tamper


def test_bulk_answers_tampered_in_every_field_are_refused_when_warm(
    world: World, proxy: tuple[str, _TamperingProxy], tmp_path: Path
) -> None:
    address, servicer = proxy
    digests = _members(world, 600)
    direct = hash_text(f"direct {world.vendor_id}")
    with world.client(world.vendor_token, "vendor") as vendor:
        from anchorlog.client.vendor import attest_samples

        (outcome,) = vendor.submit([attest_samples(world.key, [direct], VALIDATED)])
        assert outcome.ok, outcome.error
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                      state_path=tmp_path / "reader.json") as reader:
        assert {r.status for r in reader.provenance_many(digests[:400], chunk=100)} == {Status.HUMAN_VALIDATED}
        cases = [
            (digests[450], "lowest", "does not verify"),
            (digests[451], "leaf_index", "does not verify"),
            (digests[452], "batch_size", "differs from the signed batch size"),
            (direct, "direct", "batch path for a direct statement"),
        ]
        for target, how, refusal in cases:
            servicer.tamper["StreamProvenance"] = _tamper_batched(target, how)
            with pytest.raises(BatchPathError, match=refusal):
                list(reader.provenance_many([*digests[440:460], direct], chunk=30))
        del servicer.tamper["StreamProvenance"]
        again = list(reader.provenance_many([*digests[440:460], direct], chunk=30))
        assert {r.status for r in again} == {Status.HUMAN_VALIDATED}
