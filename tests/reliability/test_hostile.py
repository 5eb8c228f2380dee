"""Hostile input against a real server: fuzzed and mutated gRPC messages, every limit, and
rate-limited authentication failures.

Every call carries a deadline, so a hang fails as DEADLINE_EXCEEDED; every refusal
must be one of the precise codes below (never INTERNAL or UNKNOWN); and the log
grows only by the entries the server acknowledged (invalid input changes nothing).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from anchorlog.client.ledger import Submission
from anchorlog.client.vendor import attest_batch, attest_samples
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, sign_envelope
from anchorlog.v1 import anchorlog_pb2 as pb
from anchorlog.v1 import anchorlog_pb2_grpc as pb_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServerProcess, start_server
from tests.reliability.support import (
    DETAILS,
    Vendor,
    logged_errors,
    provision_vendor,
    unique_digests,
)

DEADLINE = 15.0
REFUSALS = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
})
LIMITS = {
    "--max-message-bytes": 256 * 1024,
    "--max-envelope-bytes": 64 * 1024,
    "--max-subjects": 50,
    "--max-batch-digests": 200,
    "--max-items-per-request": 20,
    "--max-stream-items": 30,
    "--max-streams-per-principal": 2,
}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


class Hostile:
    """A server with small limits, a vendor, and raw stubs (no client-side checks)."""

    def __init__(self, server: ServerProcess, vendor: Vendor) -> None:
        self.server, self.vendor = server, vendor
        self.channel = grpc.insecure_channel(
            server.address, options=[("grpc.max_send_message_length", 64 << 20)]
        )
        self.stub = pb_grpc.LedgerStub(self.channel)
        self.digests = iter(unique_digests(b"hostile"))
        self.valid = attest_samples(vendor.key, [next(self.digests) for _ in range(3)], DETAILS)

    def meta(self, token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),)

    def size(self) -> int:
        answer = self.stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=self.meta(self.vendor.reader_token),
                                         timeout=DEADLINE)
        return answer.checkpoint.size

    def call(self, fn: Callable[..., Any], request: Any, token: str) -> tuple[Any, grpc.StatusCode]:
        try:
            return fn(request, metadata=self.meta(token), timeout=DEADLINE), grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            assert code in REFUSALS, f"{code}: {exc.details()}"  # type: ignore[attr-defined]
            assert "Traceback" not in (exc.details() or "")  # type: ignore[attr-defined]
            return None, code


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    base = tmp_path_factory.mktemp("hostile")
    args = [str(v) for pair in LIMITS.items() for v in pair]
    server = start_server(base / "data", "--auth-failures-per-minute", "1000000", "--log-level", "WARNING", *args)
    try:
        vendor = provision_vendor(server.address, server.admin_token, server.log_key, base)
        h = Hostile(server, vendor)
        yield h
        h.channel.close()
    finally:
        assert server.stop() == 0
    # No handler raised an unexpected exception during all of the module's fuzzing.
    assert logged_errors(server.log()) == []


# ------------------------------------------------------------------ mutations

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["sha256", "", "0" * 64, "https://in-toto.io/Statement/v1"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _mutate_json(doc: Any, data: st.DataObject) -> Any:
    """Replace, delete or add one value somewhere inside a JSON document."""
    if isinstance(doc, dict) and doc:
        key = data.draw(st.sampled_from(sorted(doc)))
        action = data.draw(st.sampled_from(["descend", "replace", "delete", "add"]))
        out = dict(doc)
        if action == "descend":
            out[key] = _mutate_json(doc[key], data)
        elif action == "replace":
            out[key] = data.draw(json_values)
        elif action == "delete":
            del out[key]
        else:
            out[data.draw(st.text(max_size=12))] = data.draw(json_values)
        return out
    if isinstance(doc, list) and doc:
        i = data.draw(st.integers(0, len(doc) - 1))
        out_list = list(doc)
        action = data.draw(st.sampled_from(["descend", "replace", "delete", "duplicate"]))
        if action == "descend":
            out_list[i] = _mutate_json(doc[i], data)
        elif action == "replace":
            out_list[i] = data.draw(json_values)
        elif action == "delete":
            del out_list[i]
        else:
            out_list.append(doc[i])
        return out_list
    return data.draw(json_values)


def _mutate_bytes(raw: bytes, data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "splice"]))
    if not raw:
        return data.draw(st.binary(max_size=64))
    at = data.draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        return raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:]
    if kind == "truncate":
        return raw[:at]
    if kind == "insert":
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=16)) + raw[at:]
    end = data.draw(st.integers(at, len(raw)))
    return raw[:at] + raw[end:]


def _hostile_item(h: Hostile, data: st.DataObject) -> pb.SubmitItem:
    """A submission that is random, byte-mutated, JSON-mutated, or re-signed with bad content."""
    kind = data.draw(st.sampled_from(["random", "bytes", "envelope-json", "resigned", "batch"]))
    envelope, batch = h.valid.envelope, b""
    if kind == "random":
        envelope = data.draw(st.binary(max_size=300))
        batch = data.draw(st.binary(max_size=70))
    elif kind == "bytes":
        envelope = _mutate_bytes(envelope, data)
    elif kind == "envelope-json":
        envelope = json.dumps(_mutate_json(json.loads(envelope), data)).encode()
    elif kind == "resigned":
        # A valid signature by the vendor's registered key over a mutated statement:
        # this reaches the statement and predicate parsers, not just the signature check.
        statement = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
        payload = json.dumps(_mutate_json(statement, data)).encode()
        envelope = sign_envelope(PAYLOAD_TYPE_INTOTO, payload, h.vendor.key.private_key)
    else:
        good = attest_batch(h.vendor.key, [next(h.digests) for _ in range(5)], DETAILS)
        envelope, batch = good.envelope, _mutate_bytes(good.batch_digests, data)
    return pb.SubmitItem(envelope=envelope, batch_digests=batch)


# ------------------------------------------------------------------ fuzzing


@FUZZ
@given(data=st.data())
def test_fuzzed_submissions_get_precise_errors_and_change_nothing(hostile: Hostile, data: st.DataObject) -> None:
    items = [_hostile_item(hostile, data) for _ in range(data.draw(st.integers(1, 3)))]
    before = hostile.size()
    stream = data.draw(st.booleans())
    if stream:
        try:
            # One message per item, or all in one: both shapes are allowed.
            messages = [pb.SubmitRequest(items=[i]) for i in items] if data.draw(st.booleans()) \
                else [pb.SubmitRequest(items=items)]
            answers = hostile.stub.SubmitStream(iter(messages), metadata=hostile.meta(hostile.vendor.token),
                                                timeout=DEADLINE)
            results = [r for a in answers for r in a.results]
        except grpc.RpcError as exc:
            assert exc.code() in REFUSALS, f"{exc.code()}: {exc.details()}"
            results = []
    else:
        response, _ = hostile.call(hostile.stub.Submit, pb.SubmitRequest(items=items), hostile.vendor.token)
        results = list(response.results) if response is not None else []
    new_entries = set()
    for result in results:
        if result.HasField("receipt"):
            if not result.receipt.duplicate:
                new_entries.add(result.receipt.entry.entry.index)
        else:
            assert grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == result.error.code)) \
                in REFUSALS, result.error
            assert result.error.message
    # Only acknowledged, valid submissions grew the log.
    assert hostile.size() == before + len(new_entries)


def _raw_call(h: Hostile, method: str, payload: bytes) -> grpc.StatusCode:
    call = h.channel.unary_unary(f"/anchorlog.v1.Ledger/{method}", request_serializer=None,
                                 response_deserializer=None)
    try:
        call(payload, metadata=h.meta(h.server.admin_token), timeout=DEADLINE)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        assert exc.code() in REFUSALS, f"{method}: {exc.code()}: {exc.details()}"
        return exc.code()


UNARY = ["Submit", "GetProvenance", "GetCheckpoint", "GetConsistencyProof", "GetInclusionProof",
         "GetEntries", "GetBatchDigests", "GetKeyHistory", "WhoAmI"]


@FUZZ
@given(method=st.sampled_from(UNARY), payload=st.binary(max_size=200))
def test_undecodable_request_bytes_are_invalid_argument(hostile: Hostile, method: str, payload: bytes) -> None:
    before = hostile.size()
    _raw_call(hostile, method, payload)
    assert hostile.size() == before


sizes = st.integers(0, 2**64 - 1) | st.integers(0, 40)


@FUZZ
@given(data=st.data())
def test_fuzzed_queries_get_precise_errors(hostile: Hostile, data: st.DataObject) -> None:
    s = hostile.stub
    token = data.draw(st.sampled_from([hostile.vendor.reader_token, hostile.vendor.auditor_token,
                                       hostile.server.admin_token, "not-a-token"]))
    digest = data.draw(st.binary(min_size=0, max_size=40) | st.just(next(hostile.digests)))
    query = data.draw(st.sampled_from([
        (s.GetProvenance, pb.GetProvenanceRequest(digest=digest, trusted_size=data.draw(sizes))),
        (s.GetCheckpoint, pb.GetCheckpointRequest(trusted_size=data.draw(sizes))),
        (s.GetConsistencyProof, pb.GetConsistencyProofRequest(first_size=data.draw(sizes),
                                                              second_size=data.draw(sizes))),
        (s.GetInclusionProof, pb.GetInclusionProofRequest(index=data.draw(sizes), tree_size=data.draw(sizes))),
        (s.GetEntries, pb.GetEntriesRequest(start=data.draw(sizes), end=data.draw(sizes))),
        (s.GetBatchDigests, pb.GetBatchDigestsRequest(entry_index=data.draw(sizes))),
        (s.GetKeyHistory, pb.GetKeyHistoryRequest(vendor_id=data.draw(st.text(max_size=300)))),
        (s.IssueToken, pb.IssueTokenRequest(principal=data.draw(st.text(max_size=300)),
                                            role=data.draw(st.integers(0, 9)))),
        (s.RevokeKey, pb.RevokeKeyRequest(vendor_id=data.draw(st.text(max_size=40)),
                                          key_id=data.draw(st.text(max_size=70)))),
    ]))
    before = hostile.size()
    if data.draw(st.booleans()):
        fn, request = query
        hostile.call(fn, request, token)
    else:
        queries = [pb.ProvenanceQuery(digests=data.draw(st.lists(st.binary(max_size=40), max_size=5)),
                                      trusted_size=data.draw(sizes)) for _ in range(data.draw(st.integers(0, 3)))]
        try:
            list(s.StreamProvenance(iter(queries), metadata=hostile.meta(token), timeout=DEADLINE))
        except grpc.RpcError as exc:
            assert exc.code() in REFUSALS, f"{exc.code()}: {exc.details()}"
    assert hostile.size() == before


# ------------------------------------------------------------------ limits


def _refusal(fn: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        fn()
    return caught.value


def test_limits_each_give_a_clear_error_and_change_nothing(hostile: Hostile) -> None:
    h, token = hostile, hostile.vendor.token
    meta = h.meta(token)
    before = h.size()

    # Message size: refused by gRPC before any handler runs.
    huge = pb.SubmitRequest(items=[pb.SubmitItem(envelope=b"x" * (LIMITS["--max-message-bytes"] + 1))])
    err = _refusal(lambda: h.stub.Submit(huge, metadata=meta, timeout=DEADLINE))
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in err.details()

    # Items per request.
    many = pb.SubmitRequest(items=[pb.SubmitItem(envelope=h.valid.envelope)] * (LIMITS["--max-items-per-request"] + 1))
    err = _refusal(lambda: h.stub.Submit(many, metadata=meta, timeout=DEADLINE))
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "per request" in err.details()

    # Envelope size, subjects per statement, batch size: per-item INVALID_ARGUMENT naming the limit.
    # Valid JSON, but padded past the envelope limit with insignificant whitespace.
    big_envelope = Submission(envelope=h.valid.envelope + b" " * LIMITS["--max-envelope-bytes"])
    too_many = attest_samples(h.vendor.key, [next(h.digests) for _ in range(LIMITS["--max-subjects"] + 1)], DETAILS)
    big_batch = attest_batch(h.vendor.key, [next(h.digests) for _ in range(LIMITS["--max-batch-digests"] + 1)],
                             DETAILS)
    response = h.stub.Submit(pb.SubmitRequest(items=[
        pb.SubmitItem(envelope=s.envelope, batch_digests=s.batch_digests)
        for s in (big_envelope, too_many, big_batch)
    ]), metadata=meta, timeout=DEADLINE)
    errors = [r.error for r in response.results]
    assert [e.code for e in errors] == [grpc.StatusCode.INVALID_ARGUMENT.value[0]] * 3, errors
    assert errors[0].message.endswith(f"exceeds the limit of {LIMITS['--max-envelope-bytes']}"), errors[0]
    assert errors[1].message == f"statement.subject: {LIMITS['--max-subjects'] + 1} subjects exceeds the limit " \
        f"of {LIMITS['--max-subjects']}", errors[1]
    assert errors[2].message == f"batch_digests: {LIMITS['--max-batch-digests'] + 1} digests exceeds the limit " \
        f"of {LIMITS['--max-batch-digests']}", errors[2]

    # Stream length: the stream ends RESOURCE_EXHAUSTED at the message that would pass the
    # allowed items (messages of 10: 30 answered, then the refusal).
    item = pb.SubmitItem(envelope=h.valid.envelope)
    messages = [pb.SubmitRequest(items=[item] * 10)] * 3 + [pb.SubmitRequest(items=[item] * 5)]
    answers: list[pb.ItemResult] = []

    def drain() -> None:
        for answer in h.stub.SubmitStream(iter(messages), metadata=meta, timeout=DEADLINE):
            answers.extend(answer.results)

    err = _refusal(drain)
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "stream longer" in err.details()
    assert len(answers) == LIMITS["--max-stream-items"]
    # Items per stream message: the same limit as per Submit request.
    big = pb.SubmitRequest(items=[item] * (LIMITS["--max-items-per-request"] + 1))
    err = _refusal(lambda: list(h.stub.SubmitStream(iter([big]), metadata=meta, timeout=DEADLINE)))
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "per request" in err.details()
    # All of them one entry (the same envelope): at most one new entry in the log.
    assert h.size() <= before + 1
    assert len({a.receipt.entry.entry.index for a in answers}) == 1

    # Concurrent streams per principal: hold two open, the third is refused.
    release = threading.Event()

    def held() -> Iterator[pb.ProvenanceQuery]:
        yield pb.ProvenanceQuery(digests=[bytes(32)])
        release.wait(DEADLINE)

    reader_meta = h.meta(h.vendor.reader_token)
    open_streams = [h.stub.StreamProvenance(held(), metadata=reader_meta, timeout=DEADLINE) for _ in range(2)]
    for stream in open_streams:
        next(stream)  # each is being served
    try:
        third = h.stub.StreamProvenance(iter([pb.ProvenanceQuery(digests=[bytes(32)])]), metadata=reader_meta,
                                        timeout=DEADLINE)
        err = _refusal(lambda: list(third))
        assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "concurrent streams" in err.details()
    finally:
        release.set()
        for stream in open_streams:
            list(stream)
    # Slots are released: a new stream works again.
    assert list(h.stub.StreamProvenance(iter([pb.ProvenanceQuery(digests=[bytes(32)])]), metadata=reader_meta,
                                        timeout=DEADLINE))


def test_repeated_authentication_failures_are_rate_limited(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--auth-failures-per-minute", "5", "--log-level", "WARNING")
    channel = grpc.insecure_channel(server.address)
    stub = pb_grpc.LedgerStub(channel)
    try:
        codes = []
        for n in range(8):
            try:
                stub.WhoAmI(pb.WhoAmIRequest(), metadata=(("authorization", f"Bearer wrong-{n}"),), timeout=DEADLINE)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                assert "wrong-" not in (exc.details() or "")  # the token is never echoed
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 5 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
    finally:
        channel.close()
        assert server.stop() == 0
