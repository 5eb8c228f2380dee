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
from anchorlog.client.verify import BatchPathError, VerificationError
from anchorlog.ledger.merkle import inclusion_proof_length
from anchorlog.ledger.status import Status

from tests.e2e.test_client import VALIDATED, World, _TamperingProxy, proxy, shared_server, world

__all__ = ["proxy", "shared_server", "world"]  # fixtures used here


def _members(world: World, count: int) -> list[bytes]:
    digests = [hash_text(f"memo {i} {world.vendor_id}") for i in range(count)]
    with world.client(world.vendor_token, "vendor") as vendor:
        (outcome,) = vendor.submit([attest_batch(world.key, digests, VALIDATED)])
        assert outcome.ok, outcome.error
    return digests


class _Queries:
    """Records the digests of each StreamProvenance query the proxy forwards (``asked``,
    to be cleared before each stream). In the ``records`` form it also clears
    ``batched_columns``, as a server older than that field would answer: every
    digest as a DigestProvenance record."""

    def __init__(self, servicer: _TamperingProxy, form: str) -> None:
        self.asked: list[list[bytes]] = []
        # Which form each alteration by _tamper_sample found its target in.
        self.altered: list[str] = []

        def forward(query: Any) -> Any:
            if form == "records":
                query.batched_columns = False
            self.asked.append(list(query.digests))
            return query

        servicer.tamper_request["StreamProvenance"] = forward


def _column_span(batched: Any, k: int, batch_size: int) -> tuple[int, int]:
    """Where sample k's path is in ``batched.path_hashes`` (all samples in one batch)."""
    start = 0
    for leaf in list(batched.leaf_indices)[:k]:
        start += 32 * inclusion_proof_length(leaf, batch_size)
    return start, start + 32 * inclusion_proof_length(batched.leaf_indices[k], batch_size)


def _tamper_sample(queries: _Queries, target: bytes, how: str, batch_size: int) -> Any:
    """Alter the answer about ``target``, a record or a batched sample, in the way ``how`` names."""

    def tamper(answers: Iterator[Any]) -> Iterator[Any]:
        for number, response in enumerate(answers):
            asked = queries.asked[number]
            for record in response.digests:
                if record.digest == target:
                    queries.altered.append("records" if how != "direct" or not response.HasField("batched")
                                           else "columns")
                    path = record.hits[0].batch_path
                    if how == "upper":
                        path.hashes[len(path.hashes) - 1] = bytes(32)  # the sibling just below the root
                    elif how == "lowest":
                        path.hashes[0] = bytes(32)  # the leaf's own sibling: below every remembered node
                    elif how == "leaf_index":
                        path.leaf_index ^= 1
                    elif how == "batch_size":
                        path.batch_size += 1
                    elif how == "repointed":  # at the entry of the record before it (a direct sample)
                        before = list(response.digests).index(record) - 1
                        record.hits[0].entry_index = response.digests[before].hits[0].entry_index
                    elif how == "pathless":
                        record.hits[0].ClearField("batch_path")
                    elif how == "direct" and not response.HasField("batched"):
                        path.leaf_index = 0  # a batch path added to a direct (per-sample) answer
                        path.batch_size = 1
                    elif how == "direct":  # the same, as a batched sample
                        position = asked.index(target)
                        batched = response.batched
                        at = sum(1 for p in batched.positions if p < position)
                        columns = [list(batched.positions), list(batched.entry_indices), list(batched.leaf_indices)]
                        for column, value in zip(columns, (position, record.hits[0].entry_index, 0), strict=True):
                            column.insert(at, value)
                        for field, column in zip(("positions", "entry_indices", "leaf_indices"), columns, strict=True):
                            del getattr(batched, field)[:]
                            getattr(batched, field).extend(column)
                        kept = [r for r in response.digests if r.digest != target]
                        del response.digests[:]
                        response.digests.extend(kept)
                    break
            else:
                if target in asked and response.HasField("batched"):
                    batched = response.batched
                    k = list(batched.positions).index(asked.index(target))
                    queries.altered.append("columns")
                    start, end = _column_span(batched, k, batch_size)
                    blob = batched.path_hashes
                    if how == "upper":
                        batched.path_hashes = blob[: end - 32] + bytes(32) + blob[end:]
                    elif how == "lowest":
                        batched.path_hashes = blob[:start] + bytes(32) + blob[start + 32 :]
                    elif how == "leaf_index":
                        batched.leaf_indices[k] ^= 1
                    elif how == "leaf_outside":
                        batched.leaf_indices[k] = batch_size
            yield response

    return tamper


@pytest.mark.parametrize("form", ["columns", "records"])
def test_tampered_batch_path_is_refused_after_the_memo_is_warm(
    world: World, proxy: tuple[str, _TamperingProxy], tmp_path: Path, form: str
) -> None:
    address, servicer = proxy
    digests = _members(world, 1100)  # big enough for the memo (over 2**8 leaves)
    queries = _Queries(servicer, form)
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                      state_path=tmp_path / "reader.json") as reader:
        warm = list(reader.provenance_many(digests[:800], chunk=200))
        assert [r.status for r in warm] == [Status.HUMAN_VALIDATED] * 800
        target = digests[900]
        servicer.tamper["StreamProvenance"] = _tamper_sample(queries, target, "upper", 1100)
        queries.asked.clear()
        with pytest.raises(BatchPathError, match="does not verify"):
            list(reader.provenance_many(digests[850:950], chunk=50))
        del servicer.tamper["StreamProvenance"]
        assert queries.altered == [form]
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


@pytest.mark.parametrize("form", ["columns", "records"])
def test_bulk_answers_tampered_in_every_field_are_refused_when_warm(
    world: World, proxy: tuple[str, _TamperingProxy], tmp_path: Path, form: str
) -> None:
    address, servicer = proxy
    digests = _members(world, 600)
    queries = _Queries(servicer, form)
    direct = hash_text(f"direct {world.vendor_id}")
    other = hash_text(f"other direct {world.vendor_id}")
    with world.client(world.vendor_token, "vendor") as vendor:
        from anchorlog.client.vendor import attest_samples

        outcomes = vendor.submit([attest_samples(world.key, [d], VALIDATED) for d in (direct, other)])
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                      state_path=tmp_path / "reader.json") as reader:
        assert {r.status for r in reader.provenance_many(digests[:400], chunk=100)} == {Status.HUMAN_VALIDATED}
        cases = [
            (digests[450], "lowest", "does not verify"),
            (digests[451], "leaf_index", "does not verify"),
            (direct, "direct", "batch path for a direct statement"),
        ]
        if form == "records":  # a batched sample carries no batch size: the client takes the signed one
            cases.append((digests[452], "batch_size", "differs from the signed batch size"))
            # A record naming the batch entry without its path: past check_direct_sample too.
            cases.append((digests[454], "pathless", "commits to a batch but no batch path was sent"))
        else:
            cases.append((digests[453], "leaf_outside", "outside the signed batch of 600"))
        # A direct record naming another verified direct attestation, which does not name it.
        cases.append((direct, "repointed", "does not name digest"))
        for target, how, refusal in cases:
            servicer.tamper["StreamProvenance"] = _tamper_sample(queries, target, how, 600)
            queries.asked.clear()
            with pytest.raises(BatchPathError, match=refusal):
                list(reader.provenance_many([*digests[440:460], other, direct], chunk=30))
        del servicer.tamper["StreamProvenance"]
        # A direct sample's answer is a record in both forms.
        assert queries.altered == [form] * (len(cases) - 1) + ["records"]
        again = list(reader.provenance_many([*digests[440:460], other, direct], chunk=30))
        assert {r.status for r in again} == {Status.HUMAN_VALIDATED}


def _alter_columns(queries: _Queries, how: str) -> Any:
    """Alter the shape of each batched answer (more than one sample) in the way ``how`` names."""

    def tamper(answers: Iterator[Any]) -> Iterator[Any]:
        for number, response in enumerate(answers):
            batched = response.batched
            if response.HasField("batched") and len(batched.positions) >= 2:
                if how == "positions swapped":
                    batched.positions[0], batched.positions[1] = batched.positions[1], batched.positions[0]
                elif how == "position beyond the query":
                    batched.positions[len(batched.positions) - 1] = len(queries.asked[number])
                elif how == "sample dropped":
                    for field in ("positions", "entry_indices", "leaf_indices"):
                        del getattr(batched, field)[-1]
                elif how == "leaf missing":
                    del batched.leaf_indices[-1]
                elif how == "path short":
                    batched.path_hashes = batched.path_hashes[:-32]
                elif how == "path long":
                    batched.path_hashes = batched.path_hashes + bytes(32)
                elif how == "entry never sent":
                    batched.entry_indices[0] = 1 << 40
                elif how == "a key event":
                    batched.entry_indices[0] = 0  # the log's first entry: a key event, sent in every stream
            yield response

    return tamper


@pytest.mark.parametrize(("how", "refusal"), [
    ("positions swapped", "positions are not ascending below the 30 digests asked"),
    ("position beyond the query", "positions are not ascending below the 30 digests asked"),
    ("sample dropped", "asked about 30 digests, the server answered 29"),
    ("leaf missing", "30 positions, 30 entries and 29 leaves differ in number"),
    ("path short", "the path hashes end inside sample 29's path"),
    ("path long", "32 bytes of path hashes beyond the samples' paths"),
    ("entry never sent", "server named entry 1099511627776 for [0-9a-f]{64} without proof"),
    ("a key event", "entry 0 is not an attestation"),
])
def test_batched_columns_of_the_wrong_shape_or_entry_are_refused(
    world: World, proxy: tuple[str, _TamperingProxy], tmp_path: Path, how: str, refusal: str
) -> None:
    address, servicer = proxy
    digests = _members(world, 40)
    queries = _Queries(servicer, "columns")
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                      state_path=tmp_path / "reader.json") as reader:
        servicer.tamper["StreamProvenance"] = _alter_columns(queries, how)
        with pytest.raises(VerificationError, match=refusal):
            # One message of 30 (chunk 240: the first message is an eighth of it).
            list(reader.provenance_many(digests[:30], chunk=240))
        del servicer.tamper["StreamProvenance"]
        assert {r.status for r in reader.provenance_many(digests[:30], chunk=240)} == {Status.HUMAN_VALIDATED}


def test_batched_columns_nobody_asked_for_are_refused(
    world: World, proxy: tuple[str, _TamperingProxy], tmp_path: Path
) -> None:
    address, servicer = proxy
    digests = _members(world, 4)

    def add_columns(response: Any) -> Any:
        response.batched.positions.append(0)
        response.batched.entry_indices.append(response.digests[0].hits[0].entry_index)
        response.batched.leaf_indices.append(0)
        return response

    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                      state_path=tmp_path / "reader.json") as reader:
        servicer.tamper["GetProvenance"] = add_columns
        with pytest.raises(VerificationError, match="batched columns, which this query did not ask for"):
            reader.provenance(digests[0])
        # A query for a bundle asks for records: the bundle keeps each sample's own path.
        asked_columns: list[bool] = []
        servicer.tamper_request["StreamProvenance"] = lambda q: (asked_columns.append(q.batched_columns), q)[1]
        servicer.tamper["StreamProvenance"] = lambda answers: map(add_columns, answers)
        with pytest.raises(VerificationError, match="batched columns, which this query did not ask for"):
            list(reader.provenance_many(digests, bundle=[]))
        assert asked_columns == [False]
