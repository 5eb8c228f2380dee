"""The running service end to end: submission semantics, queries, operations, lifecycle.

One server is shared by the tests that do not interfere (``world``); start-up,
restart, TLS and environment configuration get servers of their own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from anchorlog.ledger.batch import BatchPath, verify_batch_path
from anchorlog.ledger.checkpoint import verify_checkpoint
from anchorlog.ledger.dsse import Envelope
from anchorlog.ledger.entry import EntryKind, decode_entry
from anchorlog.ledger.keys import KeyEventType, open_key_event
from anchorlog.ledger.merkle import leaf_hash, root_of, verify_consistency
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.statement import parse_statement
from anchorlog.v1 import anchorlog_pb2 as pb
from anchorlog.v1 import anchorlog_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.conftest import ServerProcess, start_server
from tests.e2e.support import (
    Key,
    World,
    attest,
    attest_batch,
    auth,
    blocking_requests,
    connect,
    envelope,
    failure_of_item,
    fresh_digests,
    populate,
    revoke,
    statement,
    subject,
    verify_proved,
    verify_receipt,
)

PAGE = 5
PAGE_BYTES = 4000
STREAM_LIMIT = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = start_server(
        Path(tmp_path_factory.mktemp("service")) / "data",
        "--auth-failures-per-minute", "100000",
        "--max-entries-page", str(PAGE),
        "--max-entries-bytes", str(PAGE_BYTES),
        "--max-streams-per-principal", str(STREAM_LIMIT),
    )
    try:
        w = populate(server)
        yield w
        w.channel.close()
    finally:
        server.stop()


def _verifier(w: World) -> NoteVerifier:
    assert w.verifier is not None
    return w.verifier


# ---------------------------------------------------------------- submit


def test_resubmission_returns_the_original_receipt(world: World) -> None:
    item = attest(world.keys["acme"], fresh_digests("idem", 3))
    (first,) = world.submit_ok("acme", item)
    size = world.head()[0]
    (again,) = world.submit_ok("acme", item)
    (streamed,) = list(world.stub.SubmitStream(iter([pb.SubmitRequest(items=[item])]), metadata=world.md("acme")))
    assert not first.duplicate and again.duplicate and streamed.results[0].receipt.duplicate
    assert again.entry.entry == first.entry.entry == streamed.results[0].receipt.entry.entry
    assert world.head()[0] == size, "a resubmission added an entry"
    verify_receipt(first, _verifier(world))
    verify_receipt(again, _verifier(world))


def test_mixed_batch_lands_the_valid_items_and_explains_the_rest(world: World) -> None:
    key = world.keys["acme"]
    good_a, good_b = attest(key, fresh_digests("mix-a", 2)), attest(key, fresh_digests("mix-b", 1))
    bad_json = pb.SubmitItem(envelope=b"{")
    foreign = attest(world.keys["globex"], fresh_digests("mix-c", 1))
    size_before = world.head()[0]
    response = world.stub.Submit(pb.SubmitRequest(items=[good_a, bad_json, good_b, foreign, good_a]),
                                 metadata=world.md("acme"))
    results = response.results
    assert [r.position for r in results] == [0, 1, 2, 3, 4]
    assert [r.WhichOneof("outcome") for r in results] == ["receipt", "error", "receipt", "error", "receipt"]
    assert failure_of_item(results[1]).code is grpc.StatusCode.INVALID_ARGUMENT
    assert failure_of_item(results[1]).fields[0][0] == "envelope"
    assert failure_of_item(results[3]).code is grpc.StatusCode.PERMISSION_DENIED
    a, b, a_again = results[0].receipt, results[2].receipt, results[4].receipt
    assert (a.entry.entry.index, b.entry.entry.index) == (size_before, size_before + 1)
    assert a_again.duplicate and a_again.entry.entry.index == a.entry.entry.index
    assert world.head()[0] == size_before + 2
    for receipt in (a, b, a_again):
        verify_receipt(receipt, _verifier(world))


def test_submit_stream_answers_each_item_in_order(world: World) -> None:
    key = world.keys["globex"]
    items = [attest(key, fresh_digests(f"stream-{i}", 2)) for i in range(6)]
    items.insert(3, pb.SubmitItem(envelope=b"[]"))
    size_before = world.head()[0]
    # Messages of 1, 4 and 2 items: one answer per message, positions count across the stream.
    messages = [pb.SubmitRequest(items=items[a:b]) for a, b in ((0, 1), (1, 5), (5, 7))]
    answers = list(world.stub.SubmitStream(iter(messages), metadata=world.md("globex")))
    assert [len(a.results) for a in answers] == [1, 4, 2]
    results = [r for a in answers for r in a.results]
    assert [r.position for r in results] == list(range(7))
    assert failure_of_item(results[3]).fields[0][0] == "envelope"
    receipts = [r.receipt for r in results if r.WhichOneof("outcome") == "receipt"]
    assert len(receipts) == 6
    assert sorted(r.entry.entry.index for r in receipts) == list(range(size_before, size_before + 6))
    for receipt in receipts:
        verify_receipt(receipt, _verifier(world))
    assert world.head()[0] == size_before + 6
    assert list(world.stub.SubmitStream(iter([]), metadata=world.md("globex"))) == []


def test_submit_stream_message_without_items_ends_the_stream(world: World) -> None:
    key = world.keys["globex"]
    first = pb.SubmitRequest(items=[attest(key, fresh_digests("before-empty", 1))])
    answers = world.stub.SubmitStream(iter([first, pb.SubmitRequest()]), metadata=world.md("globex"))
    received = []
    with pytest.raises(grpc.RpcError) as ended:
        received.extend(answers)
    assert ended.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    # The message before it was answered in full first.
    assert [len(a.results) for a in received] == [1] and received[0].results[0].HasField("receipt")


def _register(world: World, vendor: str, *, not_before: int = 0, not_after: int = 0) -> Key:
    key = Key.generate()
    answer = world.stub.RegisterKey(pb.RegisterKeyRequest(
        vendor_id=vendor, public_key=key.public, not_before=not_before, not_after=not_after),
        metadata=world.admin)
    assert answer.key_id == key.key_id
    verify_receipt(answer.receipt, _verifier(world))
    return key


def _refused(world: World, key: Key, vendor: str = "acme") -> tuple[grpc.StatusCode, str]:
    before = world.head()
    response = world.stub.Submit(pb.SubmitRequest(items=[attest(key, fresh_digests("refused", 1))]),
                                 metadata=world.md(vendor))
    failure = failure_of_item(response.results[0])
    assert world.head() == before
    return failure.code, failure.message


def test_revoked_rotated_expired_and_future_keys_are_refused(world: World) -> None:
    now = int(time.time())
    revoked = _register(world, "acme")
    world.submit_ok("acme", attest(revoked, fresh_digests("before-revoke", 1)))
    answer = world.stub.RevokeKey(pb.RevokeKeyRequest(vendor_id="acme", key_id=revoked.key_id,
                                                      reason="left the company"), metadata=world.admin)
    revocation_index = answer.receipt.entry.entry.index
    assert _refused(world, revoked) == (grpc.StatusCode.PERMISSION_DENIED,
                                        f"key {revoked.key_id} was revoked by entry {revocation_index}")

    old = _register(world, "acme")
    new = Key.generate()
    world.stub.RotateKey(pb.RotateKeyRequest(vendor_id="acme", old_key_id=old.key_id,
                                             new_public_key=new.public), metadata=world.admin)
    code, message = _refused(world, old)
    assert code is grpc.StatusCode.PERMISSION_DENIED and "was revoked by entry" in message
    world.submit_ok("acme", attest(new, fresh_digests("rotated-in", 1)))

    expired = _register(world, "acme", not_before=now - 7200, not_after=now - 60)
    code, message = _refused(world, expired)
    assert code is grpc.StatusCode.PERMISSION_DENIED and f"key {expired.key_id} expired at" in message

    future = _register(world, "acme", not_before=now + 3600)
    code, message = _refused(world, future)
    assert code is grpc.StatusCode.PERMISSION_DENIED and "is not valid before" in message


# ---------------------------------------------------------------- queries


def _statement_root(entry_data: bytes) -> bytes:
    envelope = Envelope.parse(decode_entry(entry_data).envelope)
    return parse_statement(envelope.payload).subjects[0].digest


def test_provenance_has_batch_paths_revocations_and_proofs(world: World) -> None:
    key = world.keys["acme"]
    batch_digests = sorted(fresh_digests("prov-batch", 6))
    lone = fresh_digests("prov-lone", 1)[0]
    trusted_size, trusted_root = world.head()
    batch, direct = world.submit_ok("acme", attest_batch(key, batch_digests),
                                    attest(key, [batch_digests[2], lone]))
    (revocation,) = world.submit_ok(
        "acme", revoke(key, [(direct.entry.entry.index, leaf_hash(direct.entry.entry.data))]))

    answer = world.stub.GetProvenance(pb.GetProvenanceRequest(digest=batch_digests[2],
                                                              trusted_size=trusted_size),
                                      metadata=world.md("reader"))
    cp = verify_checkpoint(answer.checkpoint.note, _verifier(world))
    assert cp.size == answer.checkpoint.size == revocation.checkpoint.size
    assert answer.consistency.first_size == trusted_size and answer.consistency.second_size == cp.size
    verify_consistency(trusted_size, cp.size, trusted_root, cp.root_hash, list(answer.consistency.hashes))
    (record,) = answer.digests
    hits = {h.entry_index: h for h in record.hits}
    assert set(hits) == {batch.entry.entry.index, direct.entry.entry.index}
    path = hits[batch.entry.entry.index].batch_path
    assert (path.leaf_index, path.batch_size) == (2, 6)
    verify_batch_path(batch_digests[2], BatchPath(path.leaf_index, path.batch_size, tuple(path.hashes)),
                      _statement_root(batch.entry.entry.data))
    assert not hits[direct.entry.entry.index].HasField("batch_path")
    assert list(record.revocation_indices) == [revocation.entry.entry.index]
    assert record.status_hint == "human-validated", "the batch attestation is still in force"
    sent = {e.entry.index: e for e in answer.entries}
    assert {batch.entry.entry.index, direct.entry.entry.index, revocation.entry.entry.index} <= set(sent)
    kinds = {decode_entry(e.entry.data).kind for e in answer.entries}
    assert EntryKind.KEY_EVENT in kinds, "key events come along so the client can check signers"
    for proved in answer.entries:
        verify_proved(proved, cp.size, cp.root_hash)

    lone_answer = world.stub.GetProvenance(pb.GetProvenanceRequest(digest=lone), metadata=world.md("reader"))
    assert lone_answer.digests[0].status_hint == "revoked"
    assert not lone_answer.HasField("consistency")
    unknown = world.stub.GetProvenance(pb.GetProvenanceRequest(digest=b"\xee" * 32),
                                       metadata=world.md("auditor"))
    assert unknown.digests[0].status_hint == "unknown" and not unknown.digests[0].hits
    assert not unknown.entries


def test_stream_provenance_sends_each_entry_once(world: World) -> None:
    digests = sorted(fresh_digests("shared", 40))
    (batch,) = world.submit_ok("globex", attest_batch(world.keys["globex"], digests))
    trusted = world.head()[0] - 1
    nobody = b"\x00" * 31 + b"\x01"
    queries = [pb.ProvenanceQuery(digests=digests[i:i + 10], trusted_size=trusted) for i in range(0, 40, 10)]
    queries.append(pb.ProvenanceQuery(digests=[nobody, digests[0]]))
    responses = list(world.stub.StreamProvenance(iter(queries), metadata=world.md("reader")))
    assert len(responses) == len(queries)
    first, rest = responses[0], responses[1:]
    assert first.HasField("checkpoint") and not any(r.HasField("checkpoint") for r in rest)
    assert first.consistency.first_size == trusted
    cp = verify_checkpoint(first.checkpoint.note, _verifier(world))
    sent = [e.entry.index for r in responses for e in r.entries]
    assert len(sent) == len(set(sent)), "an entry was sent twice in one stream"
    assert sent.count(batch.entry.entry.index) == 1
    records = [d for r in responses for d in r.digests]
    assert [d.digest for d in records] == [*digests, nobody, digests[0]]
    for record in records:
        for hit in record.hits:
            assert hit.entry_index in sent
    assert not records[40].hits and records[40].status_hint == "unknown"
    for r in responses:
        for proved in r.entries:
            verify_proved(proved, cp.size, cp.root_hash)


def test_stream_provenance_omits_status_hints_per_message_when_asked(world: World) -> None:
    key = world.keys["acme"]
    batch_digests = sorted(fresh_digests("hintless-batch", 4))
    lone = fresh_digests("hintless-lone", 1)[0]
    _, direct = world.submit_ok("acme", attest_batch(key, batch_digests), attest(key, [lone]))
    world.submit_ok("acme", revoke(key, [(direct.entry.entry.index, leaf_hash(direct.entry.entry.data))]))
    asked = [*batch_digests, lone, b"\xee" * 32]

    def stream(*omit: bool) -> list[pb.ProvenanceResponse]:
        queries = [pb.ProvenanceQuery(digests=asked, omit_status_hints=o) for o in omit]
        return list(world.stub.StreamProvenance(iter(queries), metadata=world.md("reader")))

    with_hints, without = stream(False)[0], stream(True)[0]
    assert [d.status_hint for d in with_hints.digests] == ["human-validated"] * 4 + ["revoked", "unknown"]
    assert [d.status_hint for d in without.digests] == [""] * len(asked)
    # Only the hints differ: the same records, entries and proofs.
    for record in with_hints.digests:
        record.status_hint = ""
    assert without == with_hints
    # Read from every message of a stream, not only the first.
    mixed = stream(True, False, True)
    assert [[d.status_hint for d in r.digests] for r in mixed] == [
        [""] * 6, ["human-validated"] * 4 + ["revoked", "unknown"], [""] * 6,
    ]


def test_batched_columns_carry_exactly_the_records_they_replace(world: World) -> None:
    key = world.keys["acme"]
    batch_digests = sorted(fresh_digests("columns-batch", 6))
    also_direct, lone = batch_digests[1], fresh_digests("columns-lone", 1)[0]
    other_batch = sorted(fresh_digests("columns-other", 3))
    revoked_batch = sorted(fresh_digests("columns-revoked", 4))
    _, _, direct, withdrawn = world.submit_ok(
        "acme", attest_batch(key, batch_digests), attest_batch(key, other_batch), attest(key, [lone]),
        attest_batch(key, revoked_batch),
    )
    world.submit_ok("acme", revoke(key, [(direct.entry.entry.index, leaf_hash(direct.entry.entry.data)),
                                         (withdrawn.entry.entry.index, leaf_hash(withdrawn.entry.entry.data))]))
    world.submit_ok("acme", attest(key, [also_direct]))
    asked = [lone, *batch_digests, b"\xee" * 32, other_batch[2], revoked_batch[1], batch_digests[4]]
    # Records stay for: two hits (also_direct), a revoked entry, direct (lone) or a batch, and no hit.
    kept = [lone, also_direct, b"\xee" * 32, revoked_batch[1]]

    def answer(columns: bool, hints: bool) -> pb.ProvenanceResponse:
        query = pb.ProvenanceQuery(digests=asked, batched_columns=columns, omit_status_hints=not hints)
        (response,) = world.stub.StreamProvenance(iter([query]), metadata=world.md("reader"))
        return response

    for hints in (True, False):
        records, columned = answer(False, hints), answer(True, hints)
        assert not records.HasField("batched")
        batched = columned.batched
        singled = [i for i, d in enumerate(asked) if d not in kept]
        assert list(batched.positions) == singled
        assert [d.digest for d in columned.digests] == kept
        revoked_record = columned.digests[3]
        assert list(revoked_record.revocation_indices) and revoked_record.hits[0].HasField("batch_path")
        by_digest = {d.digest: d for d in records.digests}
        assert list(columned.digests) == [by_digest[d.digest] for d in columned.digests]
        offset = 0
        for position, index, leaf in zip(batched.positions, batched.entry_indices, batched.leaf_indices,
                                         strict=True):
            (hit,) = by_digest[asked[position]].hits
            assert (index, leaf) == (hit.entry_index, hit.batch_path.leaf_index)
            path = b"".join(hit.batch_path.hashes)
            assert batched.path_hashes[offset : offset + len(path)] == path
            offset += len(path)
            hint = by_digest[asked[position]].status_hint
            assert batched.status_hints.get(index, "") == hint == ("human-validated" if hints else "")
        assert offset == len(batched.path_hashes)
        assert set(batched.status_hints) == (set(batched.entry_indices) if hints else set())
        assert list(columned.entries) == list(records.entries)


def test_get_entries_pages_and_bounds(world: World) -> None:
    world.submit_ok("acme", *(attest(world.keys["acme"], fresh_digests(f"page-{i}", 1)) for i in range(3)))
    size, root = world.head()
    assert size > 2 * PAGE
    entries: list[pb.Entry] = []
    while len(entries) < size:
        page = world.stub.GetEntries(pb.GetEntriesRequest(start=len(entries), end=size),
                                     metadata=world.md("auditor")).entries
        assert 0 < len(page) <= PAGE
        assert len(page) == 1 or sum(len(e.data) for e in page) <= PAGE_BYTES
        entries.extend(page)
    assert [e.index for e in entries] == list(range(size))
    assert all(decode_entry(e.data).index == e.index for e in entries)
    assert root_of(leaf_hash(e.data) for e in entries) == root
    previous = b"\x00" * 32
    for e in entries:
        assert decode_entry(e.data).previous_hash == previous, "the hash chain is broken"
        previous = leaf_hash(e.data)
    tail = world.stub.GetEntries(pb.GetEntriesRequest(start=size - 2, end=size + 1000),
                                 metadata=world.md("admin")).entries
    assert [e.index for e in tail] == [size - 2, size - 1]
    # A page ends early at the byte budget: large entries come one at a time.
    subjects = [subject(d, "n" * 900) for d in fresh_digests("wide", 6)]
    (wide,) = world.submit_ok("acme", pb.SubmitItem(envelope=envelope(statement(subjects), world.keys["acme"])))
    assert len(wide.entry.entry.data) > PAGE_BYTES
    index = wide.entry.entry.index
    alone = world.stub.GetEntries(pb.GetEntriesRequest(start=index - 1, end=index + 1),
                                  metadata=world.md("auditor")).entries
    assert [e.index for e in alone] == [index - 1]
    alone = world.stub.GetEntries(pb.GetEntriesRequest(start=index, end=index + 1),
                                  metadata=world.md("auditor")).entries
    assert [e.data for e in alone] == [wide.entry.entry.data]


def test_get_key_history(world: World) -> None:
    verifier = _verifier(world)
    everything = world.stub.GetKeyHistory(pb.GetKeyHistoryRequest(), metadata=world.md("auditor"))
    cp = verify_checkpoint(everything.checkpoint.note, verifier)
    events = [open_key_event(decode_entry(e.entry.data).envelope, verifier.public_key)
              for e in everything.entries]
    assert {e.vendor_id for e in events} == {"acme", "globex"}
    assert events[0].type is KeyEventType.VENDOR_CREATED
    for proved in everything.entries:
        verify_proved(proved, cp.size, cp.root_hash)
    globex = world.stub.GetKeyHistory(pb.GetKeyHistoryRequest(vendor_id="globex"), metadata=world.md("admin"))
    globex_events = [open_key_event(decode_entry(e.entry.data).envelope, verifier.public_key)
                     for e in globex.entries]
    assert [e.type for e in globex_events[:2]] == [KeyEventType.VENDOR_CREATED, KeyEventType.KEY_REGISTERED]
    assert {e.vendor_id for e in globex_events} == {"globex"}
    assert [e.entry.index for e in globex.entries] == [
        e.entry.index for e, ev in zip(everything.entries, events, strict=True) if ev.vendor_id == "globex"]
    nobody = world.stub.GetKeyHistory(pb.GetKeyHistoryRequest(vendor_id="nobody"), metadata=world.md("admin"))
    assert not nobody.entries


def test_inclusion_and_consistency_reads(world: World) -> None:
    old_size, old_root = world.head()
    world.submit_ok("acme", attest(world.keys["acme"], fresh_digests("reads", 1)))
    answer = world.stub.GetCheckpoint(pb.GetCheckpointRequest(trusted_size=old_size), metadata=world.md("reader"))
    assert answer.verifier_key == world.server.log_key
    cp = verify_checkpoint(answer.checkpoint.note, _verifier(world))
    verify_consistency(old_size, cp.size, old_root, cp.root_hash, list(answer.consistency.hashes))
    proof = world.stub.GetConsistencyProof(pb.GetConsistencyProofRequest(first_size=old_size,
                                                                         second_size=cp.size),
                                           metadata=world.md("vendor"))
    assert list(proof.hashes) == list(answer.consistency.hashes)
    included = world.stub.GetInclusionProof(pb.GetInclusionProofRequest(index=1), metadata=world.md("reader"))
    verify_proved(included.entry, cp.size, cp.root_hash)
    at_old = world.stub.GetInclusionProof(pb.GetInclusionProofRequest(index=1, tree_size=old_size),
                                          metadata=world.md("reader"))
    verify_proved(at_old.entry, old_size, old_root)


# ---------------------------------------------------------------- operations


def test_deadlines_end_hanging_streams_and_free_their_slots(world: World) -> None:
    """Streams that are cancelled or whose deadline passes are ended server-side: the slots come back."""
    token = world.stub.IssueToken(pb.IssueTokenRequest(principal="slow-reader", role=pb.ROLE_READER),
                                  metadata=world.admin).token
    release = threading.Event()
    query = pb.ProvenanceQuery(digests=[b"\x05" * 32])

    def fresh_stream() -> list[pb.ProvenanceResponse]:
        """A one-query stream, retried while ended streams are still giving their slots back."""
        deadline = time.monotonic() + 20
        while True:
            try:
                return list(world.stub.StreamProvenance(iter([query]), metadata=auth(token), timeout=30))
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "ended streams never gave their slots back"
                time.sleep(0.1)

    # Long deadlines while the slots are being filled: nothing here races a clock.
    calls = [world.stub.StreamProvenance(blocking_requests(query, release), metadata=auth(token), timeout=120)
             for _ in range(STREAM_LIMIT)]
    try:
        for call in calls:
            next(call)  # the handler is running and holds a slot
        with pytest.raises(grpc.RpcError) as crowded:
            list(world.stub.StreamProvenance(iter([query]), metadata=auth(token), timeout=30))
        assert crowded.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"at most {STREAM_LIMIT} concurrent streams" in crowded.value.details()
        # A cancelled stream gives its slot back.
        calls[0].cancel()
        assert fresh_stream()[0].digests[0].status_hint == "unknown"
        # So does one whose (short) deadline passes while it hangs: it is opened
        # alone in the freed slot, so the short deadline covers nothing else.
        deadline = time.monotonic() + 20
        while True:
            expiring = world.stub.StreamProvenance(blocking_requests(query, release), metadata=auth(token),
                                                   timeout=2)
            with pytest.raises(grpc.RpcError) as expired:
                next(expiring)
                next(expiring)
            if expired.value.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                break
            assert time.monotonic() < deadline, "the previous stream never gave its slot back"
            time.sleep(0.1)
        assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert fresh_stream()[0].digests[0].status_hint == "unknown"
    finally:
        release.set()
        for call in calls:
            call.cancel()


def test_health_and_reflection(world: World) -> None:
    health = health_pb2_grpc.HealthStub(world.channel)
    for service in ("", "anchorlog.v1.Ledger"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    database = ProtoReflectionDescriptorDatabase(world.channel)
    services = set(database.get_services())
    assert {"anchorlog.v1.Ledger", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= services
    from google.protobuf.descriptor_pool import DescriptorPool

    ledger = DescriptorPool(database).FindServiceByName("anchorlog.v1.Ledger")
    assert set(ledger.methods_by_name) == set(pb.DESCRIPTOR.services_by_name["Ledger"].methods_by_name)


def test_message_size_limit_is_configured(world: World) -> None:
    """The default limit (64 MiB) lets a message past gRPC's stock 4 MiB, and no further."""
    before = world.head()
    five_mib = pb.SubmitItem(envelope=b" " * (5 << 20))
    response = world.stub.Submit(pb.SubmitRequest(items=[five_mib]), metadata=world.md("acme"))
    failure = failure_of_item(response.results[0])
    # It reached the envelope check (the message itself was accepted).
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT and "exceeds the limit of" in failure.message
    with pytest.raises(grpc.RpcError) as raised:
        world.stub.Submit(pb.SubmitRequest(items=[pb.SubmitItem(envelope=b"x" * ((64 << 20) + 1))]),
                          metadata=world.md("acme"))
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in raised.value.details()
    assert world.head() == before


# ---------------------------------------------------------------- lifecycle


def _finish(server: ServerProcess, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    """Stop the server with ``sig``; its exit code and the rest of its stdout and stderr."""
    code = server.stop(sig)
    assert server.process.stdout is not None
    return code, server.process.stdout.read(), server.log()


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_first_start_restart_and_shutdown(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, "--auth-failures-per-minute", "100000")
    flood: list[pb.Receipt] = []
    submitters: list[threading.Thread] = []
    try:
        printed = "\n".join(server.output)
        assert "origin: anchorlog.local/log" in printed
        assert f"verifier key: {server.log_key}" in printed
        assert f"admin token file: {data / 'admin.token'}" in printed
        assert server.admin_token not in printed, "the token itself is never printed"
        assert _mode(data / "log.key") == 0o600 and _mode(data / "admin.token") == 0o600
        assert _mode(data / "tokens.db") == 0o600 and _mode(data) == 0o700
        token_file = (data / "admin.token").read_bytes(), (data / "admin.token").stat().st_mtime_ns
        key_file = (data / "log.key").read_bytes()

        world = populate(server)
        items = [attest(world.keys["acme"], fresh_digests(f"restart-{i}", 2)) for i in range(3)]
        receipts = world.submit_ok("acme", *items)
        old_size, old_root = world.head()
        with pytest.raises(grpc.RpcError):
            world.stub.WhoAmI(pb.WhoAmIRequest(), metadata=auth("alt_wrong-token-value"))
        # Submissions keep coming while SIGTERM arrives: whatever was acknowledged must survive.
        acknowledged = threading.Event()

        def submit_until_refused(worker: int) -> None:
            for round_ in range(200):
                batch = [attest(world.keys["acme"], fresh_digests(f"flood-{worker}-{round_}-{i}", 1))
                         for i in range(5)]
                try:
                    response = world.stub.Submit(pb.SubmitRequest(items=batch), metadata=world.md("acme"),
                                                 timeout=30)
                except grpc.RpcError:
                    return
                flood.extend(r.receipt for r in response.results)
                acknowledged.set()

        submitters.extend(threading.Thread(target=submit_until_refused, args=(n,)) for n in range(3))
        for thread in submitters:
            thread.start()
        assert acknowledged.wait(30)
    finally:
        code, out, err = _finish(server)
    for thread in submitters:
        thread.join()
    world.channel.close()
    assert code == 0 and "anchorlog stopped" in out
    assert flood and all(r.entry.entry.data for r in flood)
    for secret in (*world.tokens.values(), "alt_wrong-token-value", key_file.decode().strip()):
        assert secret not in err and secret not in out, "a secret reached the logs"
    for line in filter(None, err.splitlines()):
        assert set(json.loads(line)) >= {"time", "level", "msg"}, "logs are JSON lines"

    again = start_server(data, "--auth-failures-per-minute", "100000")
    try:
        assert again.log_key == server.log_key
        assert ((data / "admin.token").read_bytes(), (data / "admin.token").stat().st_mtime_ns) == token_file
        assert (data / "log.key").read_bytes() == key_file
        restarted_size = int(again.output[-1].removeprefix("log size: "))
        assert restarted_size >= old_size + len(flood)
        channel = connect(again.address)
        stub = pb_grpc.LedgerStub(channel)
        verifier = NoteVerifier.from_vkey(again.log_key)
        for receipt in receipts + flood:
            verify_receipt(receipt, verifier)
        # Tokens and keys survive; resubmitting gives the same entries back.
        assert stub.WhoAmI(pb.WhoAmIRequest(), metadata=auth(world.tokens["acme"])).principal == "acme"
        response = stub.Submit(pb.SubmitRequest(items=items), metadata=auth(world.tokens["acme"]))
        assert [r.receipt.entry.entry for r in response.results] == [r.entry.entry for r in receipts]
        assert all(r.receipt.duplicate for r in response.results)
        fresh = stub.Submit(pb.SubmitRequest(items=[attest(world.keys["acme"], fresh_digests("after", 1))]),
                            metadata=auth(world.tokens["acme"])).results[0].receipt
        verify_receipt(fresh, verifier)
        head = stub.GetCheckpoint(pb.GetCheckpointRequest(trusted_size=old_size),
                                  metadata=auth(again.admin_token))
        cp = verify_checkpoint(head.checkpoint.note, verifier)
        assert cp.size == restarted_size + 1
        verify_consistency(old_size, cp.size, old_root, cp.root_hash, list(head.consistency.hashes))
        for receipt in receipts + flood:
            proof = stub.GetInclusionProof(pb.GetInclusionProofRequest(index=receipt.entry.entry.index),
                                           metadata=auth(world.tokens["reader"]))
            assert proof.entry.entry.data == receipt.entry.entry.data
            verify_proved(proof.entry, cp.size, cp.root_hash)
        channel.close()
    finally:
        code, out, both_runs = _finish(again, signal.SIGINT)
    assert code == 0 and "anchorlog stopped" in out
    for secret in (*world.tokens.values(), key_file.decode().strip()):
        assert secret not in both_runs


def _serve_from_env(data: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """``anchorlog serve`` with no flags at all: everything from ANCHORLOG_* variables."""
    process = subprocess.Popen([sys.executable, "-m", "anchorlog.client.cli", "serve"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **env, "ANCHORLOG_DATA": str(data)})
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("log size:"):
            return process, lines
    process.kill()
    raise AssertionError(f"server did not start: {lines} {process.communicate()[1]}")


def test_configuration_from_environment_variables(tmp_path: Path) -> None:
    process, lines = _serve_from_env(tmp_path / "envdata", {
        "ANCHORLOG_LISTEN": "127.0.0.1:0",
        "ANCHORLOG_ORIGIN": "env.example/ledger",
        "ANCHORLOG_AUTH_FAILURES_PER_MINUTE": "3",
        "ANCHORLOG_MAX_ENTRIES_PAGE": "2",
        "ANCHORLOG_LOG_LEVEL": "DEBUG",
    })
    try:
        address = re.match(r"anchorlog serving on (\S+)", lines[0]).group(1)  # type: ignore[union-attr]
        assert "origin: env.example/ledger" in lines
        vkey = next(line.split(": ", 1)[1] for line in lines if line.startswith("verifier key: "))
        assert vkey.startswith("env.example/ledger+")
        token = (tmp_path / "envdata" / "admin.token").read_text().strip()
        channel = connect(address)
        stub = pb_grpc.LedgerStub(channel)
        cp = verify_checkpoint(stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=auth(token)).checkpoint.note,
                               NoteVerifier.from_vkey(vkey))
        assert cp.origin == "env.example/ledger"
        for name in ("a", "b", "c"):
            stub.CreateVendor(pb.CreateVendorRequest(vendor_id=name), metadata=auth(token))
        assert len(stub.GetEntries(pb.GetEntriesRequest(start=0, end=3), metadata=auth(token)).entries) == 2
        # ANCHORLOG_AUTH_FAILURES_PER_MINUTE=3: three guesses, then this address is refused...
        codes = []
        for attempt in range(4):
            try:
                stub.WhoAmI(pb.WhoAmIRequest(), metadata=auth(f"alt_guess-{attempt}"))
            except grpc.RpcError as error:
                codes.append(error.code())
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
        # ...but a valid token from the same address still works.
        assert stub.WhoAmI(pb.WhoAmIRequest(), metadata=auth(token)).role == pb.ROLE_ADMIN
        channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0 and "anchorlog stopped" in out
    messages = [json.loads(line)["msg"] for line in err.splitlines() if line]
    assert "WhoAmI by admin: OK" in messages, "ANCHORLOG_LOG_LEVEL=DEBUG logs each call"
    assert sum("WhoAmI by unauthenticated" in m and "refused: UNAUTHENTICATED" in m for m in messages) == 3
    assert any("refused: RESOURCE_EXHAUSTED: too many failed authentications" in m for m in messages)
    assert token not in err and "alt_guess" not in err, "a token reached the logs"


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anchorlog test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "server.crt", tmp / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = start_server(tmp_path / "data", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(server.address, credentials) as channel:
            stub = pb_grpc.LedgerStub(channel)
            who = stub.WhoAmI(pb.WhoAmIRequest(), metadata=auth(server.admin_token), timeout=10)
            assert who.role == pb.ROLE_ADMIN
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(server.address) as plain:
            with pytest.raises(grpc.RpcError) as raised:
                pb_grpc.LedgerStub(plain).WhoAmI(pb.WhoAmIRequest(), metadata=auth(server.admin_token),
                                                 timeout=3)
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        code, out, _ = _finish(server)
    assert code == 0 and "anchorlog stopped" in out
