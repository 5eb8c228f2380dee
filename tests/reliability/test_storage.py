"""Full disk and read-only storage against a real server.

Full disk: ``serve --max-db-bytes`` sets SQLite's ``max_page_count`` on the
writer, so growth past it fails inside SQLite with the same SQLITE_FULL a full
filesystem gives ("database or disk is full"); the server's error mapping is
exercised unchanged. Read-only: the tests run as root, for whom ``chmod a-w``
does not stop writes, so the store opens a DB file without write bits with
SQLite's ``mode=ro`` (what SQLite itself falls back to for a non-root user), and
appends fail with SQLite's real SQLITE_READONLY. A read-only filesystem or a
write-protected data directory are not simulated (no mount privileges in CI).
"""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import pytest
from anchorlog.client.ledger import LedgerClient, LedgerRpcError, Submission
from anchorlog.client.receipts import Receipt
from anchorlog.client.vendor import attest_batch, attest_samples
from anchorlog.ledger.entry import decode_entry
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.status import Status

from tests.conftest import start_server
from tests.reliability.support import (
    DETAILS,
    Vendor,
    audit_database,
    check_receipts,
    connect,
    open_read_only,
    provision_vendor,
    unique_digests,
)

ARGS = ("--auth-failures-per-minute", "100000", "--log-level", "WARNING")


def _logical_bytes(db: Path) -> int:
    conn = open_read_only(db)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return pages * conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()


def _submit_ok(client: LedgerClient, items: list[Submission]) -> list[Receipt]:
    outcomes = client.submit(items)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return [o.receipt for o in outcomes if o.receipt is not None]


def _bulky(vendor: Vendor, digests: object, n: int) -> list[Submission]:
    """Submissions whose batch digests take real space (100 x 32 bytes each)."""
    supply = iter(digests)  # type: ignore[call-overload]
    return [attest_batch(vendor.key, [next(supply) for _ in range(100)], DETAILS) for _ in range(n)]


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, Vendor, list[Receipt], list[bytes]]:
    """A data dir with a vendor and a few verified entries, left by a crash (SIGKILL):
    the storage tests also start from an unrecovered WAL."""
    data = tmp_path / "data"
    server = start_server(data, *ARGS)
    try:
        vendor = provision_vendor(server.address, server.admin_token, server.log_key, tmp_path)
        digests = [hashlib.sha256(b"seed %d" % i).digest() for i in range(6)]
        with connect(server.address, vendor.token, server.log_key, tmp_path / "v.json") as client:
            receipts = _submit_ok(client, [attest_samples(vendor.key, digests[i:i + 2], DETAILS)
                                           for i in range(0, 6, 2)])
    finally:
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert (data / "ledger.db-wal").stat().st_size > 0
    return data, vendor, receipts, digests


def _refused(client: LedgerClient, items: list[Submission]) -> LedgerRpcError:
    with pytest.raises(LedgerRpcError) as caught:
        client.submit(items)
    return caught.value


def test_full_disk_refuses_writes_atomically_keeps_reads_and_recovers(
    seeded: tuple[Path, Vendor, list[Receipt], list[bytes]], tmp_path: Path
) -> None:
    data, vendor, receipts, digests = seeded
    db = data / "ledger.db"
    # Room for a few more groups, then the "disk" is full.
    limit = _logical_bytes(db) + 48 * 1024
    server = start_server(data, *ARGS, "--max-db-bytes", str(limit))
    verifier = NoteVerifier.from_vkey(server.log_key)
    supply = unique_digests(b"full disk")
    try:
        with connect(server.address, vendor.token, server.log_key, tmp_path / "v.json") as client, \
                connect(server.address, vendor.reader_token, server.log_key, tmp_path / "r.json") as reader:
            trusted = reader.checkpoint()
            failure = None
            for _ in range(200):
                items = _bulky(vendor, supply, 3)
                try:
                    receipts += _submit_ok(client, items)
                except LedgerRpcError as exc:
                    failure, refused = exc, items
                    break
            assert failure is not None, "the size cap was never reached"
            assert failure.code == "RESOURCE_EXHAUSTED", failure
            assert "full" in failure.message

            # Nothing partial: the stored log is exactly the acknowledged groups.
            before = audit_database(db, verifier)
            check_receipts(receipts, before, verifier)
            assert before.size == max(r.index for r in receipts) + 1
            # Retrying is refused the same way and changes nothing.
            assert _refused(client, refused).code == "RESOURCE_EXHAUSTED"
            assert audit_database(db, verifier).notes == before.notes

            # Reads keep working and verify.
            assert reader.checkpoint().size == before.size >= trusted.size
            assert reader.provenance(digests[0]).status is Status.HUMAN_VALIDATED
            assert reader.provenance(next(iter(refused)).batch_digests[:32]).status is Status.UNKNOWN
    finally:
        assert server.stop() == 0

    # Space returns (a larger cap): the refused submissions go in, the log extends consistently.
    server = start_server(data, *ARGS, "--max-db-bytes", str(limit * 4))
    try:
        with connect(server.address, vendor.token, server.log_key, tmp_path / "v.json") as client, \
                connect(server.address, vendor.reader_token, server.log_key, tmp_path / "r.json") as reader:
            resumed = _submit_ok(client, refused)
            assert all(not r.duplicate for r in resumed)
            assert reader.checkpoint().size == before.size + len(refused)  # consistency-checked
            assert reader.provenance(refused[0].batch_digests[:32]).status is Status.HUMAN_VALIDATED
        after = audit_database(db, verifier)
        check_receipts(receipts + resumed, after, verifier)
    finally:
        assert server.stop() == 0


def test_read_only_database_refuses_writes_keeps_reads_and_recovers(
    seeded: tuple[Path, Vendor, list[Receipt], list[bytes]], tmp_path: Path
) -> None:
    data, vendor, receipts, digests = seeded
    db = data / "ledger.db"
    db.chmod(0o444)
    server = start_server(data, *ARGS)
    verifier = NoteVerifier.from_vkey(server.log_key)
    before = audit_database(db, verifier)
    fresh = [attest_samples(vendor.key, [hashlib.sha256(b"ro %d" % i).digest()], DETAILS) for i in range(3)]
    try:
        assert any("storage: read-only" in line for line in server.output)
        with connect(server.address, vendor.token, server.log_key, tmp_path / "v.json") as client, \
                connect(server.address, vendor.reader_token, server.log_key, tmp_path / "r.json") as reader, \
                connect(server.address, server.admin_token, server.log_key, tmp_path / "a.json") as admin:
            refusal = _refused(client, fresh)
            assert refusal.code == "UNAVAILABLE"
            assert "readonly" in refusal.message  # SQLite's own SQLITE_READONLY
            # A duplicate of an entry already stored needs no write: still answered.
            stored = decode_entry(receipts[0].data).envelope
            (again,) = client.submit([Submission(envelope=stored)])
            assert again.receipt is not None and again.receipt.duplicate
            assert again.receipt.index == receipts[0].index
            with pytest.raises(LedgerRpcError) as caught:
                admin.create_vendor("late-vendor")
            assert caught.value.code == "UNAVAILABLE"
            with pytest.raises(LedgerRpcError) as caught:
                list(client.submit_stream(fresh))
            assert caught.value.code == "UNAVAILABLE"
            # Reads work and verify.
            assert reader.checkpoint().size == before.size
            assert reader.provenance(digests[3]).status is Status.HUMAN_VALIDATED
            assert reader.provenance(hashlib.sha256(b"ro 0").digest()).status is Status.UNKNOWN
        unchanged = audit_database(db, verifier)
        assert (unchanged.size, unchanged.notes) == (before.size, before.notes)
        check_receipts(receipts, unchanged, verifier)
    finally:
        assert server.stop() == 0

    db.chmod(0o600)
    server = start_server(data, *ARGS)
    try:
        assert not any("read-only" in line for line in server.output)
        with connect(server.address, vendor.token, server.log_key, tmp_path / "v.json") as client, \
                connect(server.address, vendor.reader_token, server.log_key, tmp_path / "r.json") as reader:
            resumed = _submit_ok(client, fresh)
            assert reader.checkpoint().size == before.size + len(fresh)
        check_receipts(receipts + resumed, audit_database(db, verifier), verifier)
    finally:
        assert server.stop() == 0
