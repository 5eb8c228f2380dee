"""Envelope-checking workers inside the real server: the same answers as without them,
the same answers once they are killed, and no worker outliving its server."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from anchorlog.ledger.entry import decode_entry
from anchorlog.ledger.note import NoteVerifier
from anchorlog.v1 import anchorlog_pb2 as pb
from anchorlog.v1 import anchorlog_pb2_grpc as pb_grpc

from tests.conftest import ServerProcess, proc_stat, spawned_workers, start_server
from tests.e2e.support import (
    Key,
    attest,
    attest_batch,
    auth,
    connect,
    failure_of_item,
    fresh_digests,
    verify_receipt,
)


def _workers(server: ServerProcess) -> list[int]:
    return spawned_workers(server.process.pid)


def _wait_for(condition, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        return proc_stat(pid)[0] != "Z"
    except OSError:
        return False


class Setup:
    """A server with vendor acme (key ``acme``) and a vendor token; the same keys on every server."""

    def __init__(self, server: ServerProcess, keys: dict[str, Key]) -> None:
        self.server = server
        self.stub = pb_grpc.LedgerStub(connect(server.address))
        self.verifier = NoteVerifier.from_vkey(server.log_key)
        admin = auth(server.admin_token)
        for vendor in ("acme", "globex"):
            self.stub.CreateVendor(pb.CreateVendorRequest(vendor_id=vendor, display_name=vendor), metadata=admin)
            self.stub.RegisterKey(pb.RegisterKeyRequest(vendor_id=vendor, public_key=keys[vendor].public),
                                  metadata=admin)
        self.token = self.stub.IssueToken(pb.IssueTokenRequest(principal="acme", role=pb.ROLE_VENDOR),
                                          metadata=admin).token

    def submit(self, items: list[pb.SubmitItem]) -> list[object]:
        """Per item: the refusal, or the logged envelope and whether it was a duplicate."""
        response = self.stub.Submit(pb.SubmitRequest(items=items), metadata=auth(self.token))
        out: list[object] = []
        for result in response.results:
            if result.WhichOneof("outcome") == "error":
                out.append(failure_of_item(result))
                continue
            verify_receipt(result.receipt, self.verifier)
            entry = decode_entry(result.receipt.entry.entry.data)
            out.append((entry.envelope, result.receipt.duplicate))
        return out


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {"acme": Key.generate(), "globex": Key.generate(), "stranger": Key.generate()}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Key]) -> Iterator[tuple[Setup, Setup]]:
    base = tmp_path_factory.mktemp("workers")
    with_workers = start_server(base / "with", "--check-workers", "1")
    without = start_server(base / "without", "--check-workers", "0")
    try:
        yield Setup(with_workers, keys), Setup(without, keys)
    finally:
        with_workers.stop()
        without.stop()


def _message(keys: dict[str, Key], tag: str) -> list[pb.SubmitItem]:
    """Ten items, enough to go to the workers: valid ones and every kind of fault."""
    future = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    one = attest(keys["acme"], fresh_digests(f"{tag}-one", 1))
    return [
        one,
        attest(keys["acme"], fresh_digests(f"{tag}-many", 20)),
        attest_batch(keys["acme"], fresh_digests(f"{tag}-batch", 50)),
        attest(keys["stranger"], fresh_digests(f"{tag}-stranger", 1)),
        attest(keys["globex"], fresh_digests(f"{tag}-globex", 1)),
        attest(keys["acme"], fresh_digests(f"{tag}-future", 1), performedAt=future),
        pb.SubmitItem(envelope=b"{"),
        pb.SubmitItem(envelope=one.envelope[:-2]),
        one,  # the same envelope again: a duplicate of the first
        attest(keys["acme"], fresh_digests(f"{tag}-last", 2)),
    ]


def test_a_server_with_workers_answers_every_item_as_one_without(
    pair: tuple[Setup, Setup], keys: dict[str, Key]
) -> None:
    with_workers, without = pair
    assert len(_workers(with_workers.server)) == 1 and not _workers(without.server)
    items = _message(keys, "same")
    answers = with_workers.submit(items)
    assert answers == without.submit(items)
    accepted = [i for i, a in enumerate(answers) if isinstance(a, tuple)]
    assert accepted == [0, 1, 2, 8, 9]
    assert answers[8] == (items[0].envelope, True)
    refusals = [answers[i] for i in (3, 4, 5, 6, 7)]
    assert [r.code for r in refusals] == [  # type: ignore[attr-defined]
        grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT,
    ]


def _cpu_ticks(pid: int) -> int:
    fields = proc_stat(pid)
    return int(fields[11]) + int(fields[12])


def test_the_worker_does_the_checking(pair: tuple[Setup, Setup], keys: dict[str, Key]) -> None:
    with_workers, _ = pair
    (worker,) = _workers(with_workers.server)
    before = _cpu_ticks(worker)
    items = [attest(keys["acme"], [digest]) for digest in fresh_digests("busy", 400)]
    assert all(isinstance(a, tuple) for a in with_workers.submit(items))
    # 400 signature checks and parses, about 50 ms of CPU: in the worker, not the server.
    assert _cpu_ticks(worker) - before >= 2


def test_small_and_very_large_messages_are_checked_in_the_server(pair: tuple[Setup, Setup], keys: dict[str, Key]) -> None:
    with_workers, _ = pair
    (worker,) = _workers(with_workers.server)
    before = _cpu_ticks(worker)
    # Seven one-sample items (under 8 items and 256 KiB), then one batch of 300,000
    # digests (9.6 MB, over 8 MiB): both answered without the worker's help.
    small = [attest(keys["acme"], [digest]) for digest in fresh_digests("small", 7)]
    assert all(isinstance(a, tuple) for a in with_workers.submit(small))
    large = [attest_batch(keys["acme"], fresh_digests("large", 300_000))]
    assert len(large[0].batch_digests) > 8 << 20
    assert all(isinstance(a, tuple) for a in with_workers.submit(large))
    assert _cpu_ticks(worker) - before <= 1  # checking the batch alone takes hundreds of ms


def test_killed_workers_leave_the_server_answering_the_same(
    pair: tuple[Setup, Setup], keys: dict[str, Key]
) -> None:
    with_workers, without = pair
    (worker,) = _workers(with_workers.server)
    os.kill(worker, signal.SIGKILL)
    assert _wait_for(lambda: not _alive(worker))
    items = _message(keys, "after-kill")
    assert with_workers.submit(items) == without.submit(items)
    assert _wait_for(lambda: "envelope-checking workers died" in with_workers.server.log())
    # Later messages too, checked in the server process.
    items = _message(keys, "after-kill-2")
    assert with_workers.submit(items) == without.submit(items)


def test_workers_end_with_their_server_however_it_ends(tmp_path: Path) -> None:
    stopped = start_server(tmp_path / "stopped", "--check-workers", "2")
    killed = start_server(tmp_path / "killed", "--check-workers", "1")
    try:
        stopped_workers, killed_workers = _workers(stopped), _workers(killed)
        assert len(stopped_workers) == 2 and len(killed_workers) == 1
        assert stopped.stop() == 0
        killed.stop(signal.SIGKILL)
        # Orphaned by SIGKILL, a worker notices within its poll interval and leaves.
        assert _wait_for(lambda: not any(_alive(p) for p in stopped_workers + killed_workers))
    finally:
        stopped.stop()
        killed.stop()
