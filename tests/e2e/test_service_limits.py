"""Stream limits on a real server: idle streams cannot take every worker, and idle streams end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from anchorlog.v1 import anchorlog_pb2 as pb
from anchorlog.v1 import anchorlog_pb2_grpc as pb_grpc

from tests.conftest import ServerProcess, start_server
from tests.e2e.support import auth, blocking_requests, connect

QUERY = pb.ProvenanceQuery(digests=[b"\x07" * 32])


def _issue(stub: pb_grpc.LedgerStub, server: ServerProcess, principal: str, role: int) -> str:
    return stub.IssueToken(pb.IssueTokenRequest(principal=principal, role=role),
                           metadata=auth(server.admin_token), timeout=30).token


def _open_until_refused(stub: pb_grpc.LedgerStub, token: str, release: threading.Event,
                        count: int) -> tuple[list[grpc.Future], list[grpc.RpcError]]:
    """Open ``count`` streams that send one query and then idle; (held, refused)."""
    held, refused = [], []
    for _ in range(count):
        call = stub.StreamProvenance(blocking_requests(QUERY, release), metadata=auth(token), timeout=120)
        try:
            next(call)  # the handler answered: it is running and holds a worker thread
            held.append(call)
        except grpc.RpcError as error:
            refused.append(error)
    return held, refused


def _wait_for_stream(stub: pb_grpc.LedgerStub, token: str) -> list[pb.ProvenanceResponse]:
    """A fresh one-query stream, retried while slots are still being given back."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return list(stub.StreamProvenance(iter([QUERY]), metadata=auth(token), timeout=30))
        except grpc.RpcError as error:
            assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
            assert time.monotonic() < deadline, "ended streams never gave their slots back"
            time.sleep(0.1)


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path / "data", "--auth-failures-per-minute", "100000",
                        "--workers", "4", "--max-streams", "2", "--max-streams-per-principal", "2")
    try:
        yield proc
    finally:
        proc.stop()


def test_idle_streams_of_two_principals_leave_threads_for_unary_calls(small_server: ServerProcess) -> None:
    channel = connect(small_server.address)
    stub = pb_grpc.LedgerStub(channel)
    alice = _issue(stub, small_server, "alice-reader", pb.ROLE_READER)
    bob = _issue(stub, small_server, "bob-reader", pb.ROLE_READER)
    release = threading.Event()
    calls: list[grpc.Future] = []
    try:
        # Each principal stays within its own cap of 2; together they would hold all 4 workers.
        held_a, refused_a = _open_until_refused(stub, alice, release, 2)
        held_b, refused_b = _open_until_refused(stub, bob, release, 2)
        calls = held_a + held_b
        assert len(calls) == 2
        refused = refused_a + refused_b
        assert len(refused) == 2
        for error in refused:
            assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 2 streams" in error.details()
        # A unary call still finds a thread (it would queue behind the streams without the cap).
        who = stub.WhoAmI(pb.WhoAmIRequest(), metadata=auth(small_server.admin_token), timeout=30)
        assert who.role == pb.ROLE_ADMIN
        cp = stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=auth(alice), timeout=30)
        assert cp.checkpoint.size >= 0 and cp.checkpoint.note
        # Cancelling one stream gives its slot back.
        calls[0].cancel()
        answer = _wait_for_stream(stub, bob)
        assert answer[0].digests[0].status_hint == "unknown"
    finally:
        release.set()
        for call in calls:
            call.cancel()
        channel.close()


def test_start_refuses_a_stream_cap_at_the_worker_count(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="max_streams.*must be below the worker count"):
        start_server(tmp_path / "data", "--workers", "4", "--max-streams", "4")


def test_idle_streams_are_ended_by_the_server_and_free_their_slots(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--auth-failures-per-minute", "100000",
                          "--max-streams-per-principal", "1", "--stream-idle-seconds", "1")
    channel = connect(server.address)
    release = threading.Event()
    try:
        stub = pb_grpc.LedgerStub(channel)
        reader = _issue(stub, server, "idle-reader", pb.ROLE_READER)
        stub.CreateVendor(pb.CreateVendorRequest(vendor_id="idlevendor"),
                          metadata=auth(server.admin_token), timeout=30)
        vendor = _issue(stub, server, "idlevendor", pb.ROLE_VENDOR)

        # A provenance stream that asks once and then goes quiet (the client keeps it open).
        call = stub.StreamProvenance(blocking_requests(QUERY, release), metadata=auth(reader), timeout=120)
        assert next(call).digests[0].status_hint == "unknown"
        with pytest.raises(grpc.RpcError) as idle:
            next(call)
        assert idle.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no request on this stream for 1 s" in idle.value.details()
        assert _wait_for_stream(stub, reader)[0].digests

        # A submit stream that never sends an item is ended the same way.
        never = threading.Event()
        submit = stub.SubmitStream(_nothing_until(never), metadata=auth(vendor), timeout=120)
        try:
            with pytest.raises(grpc.RpcError) as idle_submit:
                next(submit)
            assert idle_submit.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert "no request on this stream for 1 s" in idle_submit.value.details()
        finally:
            never.set()
        # Its slot came back: the vendor can stream again (an empty stream answers nothing).
        deadline = time.monotonic() + 30
        while True:
            try:
                assert list(stub.SubmitStream(iter([]), metadata=auth(vendor), timeout=30)) == []
                break
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
                assert time.monotonic() < deadline, "the ended submit stream kept its slot"
                time.sleep(0.1)
    finally:
        release.set()
        channel.close()
        server.stop()
    assert "Traceback" not in server.log()


def test_streams_open_past_the_maximum_duration_are_ended(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--auth-failures-per-minute", "100000",
                          "--max-stream-seconds", "2")
    channel = connect(server.address)
    stop = threading.Event()
    try:
        stub = pb_grpc.LedgerStub(channel)
        reader = _issue(stub, server, "chatty-reader", pb.ROLE_READER)
        # Never idle (a query every 0.2 s), but open too long.
        call = stub.StreamProvenance(_every(QUERY, 0.2, stop), metadata=auth(reader), timeout=120)
        answered = 0
        with pytest.raises(grpc.RpcError) as ended:
            for _ in call:
                answered += 1
        assert answered >= 1
        assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stream open longer than the server's limit of 2 s" in ended.value.details()
    finally:
        stop.set()
        channel.close()
        server.stop()


def _every(query: pb.ProvenanceQuery, pause: float, stop: threading.Event) -> Iterator[pb.ProvenanceQuery]:
    while not stop.is_set():
        yield query
        stop.wait(pause)


def _nothing_until(event: threading.Event) -> Iterator[pb.SubmitRequest]:
    event.wait()
    yield from ()
