"""log.head: the server refuses a database older than (or forked from) a checkpoint it already signed."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from anchorlog.client.vendor import attest_samples
from anchorlog.ledger.checkpoint import Checkpoint
from anchorlog.ledger.note import NoteVerifier, open_note

from tests.conftest import ServerProcess, start_server
from tests.reliability.support import DETAILS, Vendor, connect, provision_vendor

ARGS = ("--auth-failures-per-minute", "100000", "--log-level", "WARNING")


def _submit(server: ServerProcess, vendor: Vendor, state: Path, tag: bytes, count: int) -> int:
    """Submit ``count`` single-digest attestations; the tree size of the last receipt."""
    size = 0
    with connect(server.address, vendor.token, server.log_key, state) as client:
        for n in range(count):
            (outcome,) = client.submit([attest_samples(vendor.key, [tag + bytes([n]) * 31], DETAILS)])
            assert outcome.ok and outcome.receipt is not None
            size = outcome.receipt.tree_size
    return size


def _backup(data: Path, out: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "anchorlog.client.cli", "backup", "--data", str(data), "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr


def _put_database(source: Path, data: Path) -> None:
    """Replace a stopped server's ledger.db (and its WAL) with ``source``."""
    for suffix in ("-wal", "-shm"):
        (data / f"ledger.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, data / "ledger.db")


def _serve_refused(data: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "anchorlog.client.cli", "serve", "--data", str(data), "--listen", "127.0.0.1:0"],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0, done.stdout
    assert "anchorlog serving" not in done.stdout
    return done.stderr


def _head(data: Path, verifier: NoteVerifier) -> Checkpoint:
    return Checkpoint.parse(open_note((data / "log.head").read_bytes(), [verifier]).text)


def test_restoring_an_older_database_under_a_newer_head_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, *ARGS)
    try:
        verifier = NoteVerifier.from_vkey(server.log_key)
        vendor = provision_vendor(server.address, server.admin_token, server.log_key, tmp_path)
        _submit(server, vendor, tmp_path / "v.json", b"a", 2)
    finally:
        assert server.stop() == 0
    old = tmp_path / "old.db"
    _backup(data, old)

    server = start_server(data, *ARGS)
    try:
        acknowledged = _submit(server, vendor, tmp_path / "v.json", b"b", 3)
        # Every acknowledged receipt is covered by the durable head, while the server runs.
        head = _head(data, verifier)
        assert head.size >= acknowledged
    finally:
        assert server.stop() == 0
    head = _head(data, verifier)
    signed_at_head = (data / "log.head").read_bytes()
    live = tmp_path / "live.db"
    _backup(data, live)

    # An old backup restored into the live data directory (log.head still there).
    _put_database(old, data)
    message = _serve_refused(data)
    assert "ledger.db holds" in message and f"at size {head.size}" in message
    assert "inconsistent with one this log already published" in message
    assert (data / "log.head").read_bytes() == signed_at_head  # nothing was re-signed

    # The same backup served from a fresh directory (no head) grows a different
    # history past the head's size; that fork is refused under the head too.
    fork = tmp_path / "fork"
    fork.mkdir(mode=0o700)
    _put_database(old, fork)
    shutil.copy2(data / "log.key", fork / "log.key")
    server = start_server(fork, *ARGS)
    try:
        with connect(server.address, server.admin_token, server.log_key, tmp_path / "a2.json") as admin:
            vendor = Vendor(vendor.vendor_id, vendor.key, admin.issue_token(vendor.vendor_id, "vendor"),
                            vendor.reader_token, vendor.auditor_token)
        grown = _submit(server, vendor, tmp_path / "v2.json", b"c", head.size - _stored_size(old) + 1)
        assert grown > head.size
    finally:
        assert server.stop() == 0
    _put_database(fork / "ledger.db", data)
    message = _serve_refused(data)
    assert f"tree at size {head.size} has a different root" in message

    # A head file that is not this log's signed checkpoint is refused, not ignored.
    (data / "log.head").write_bytes(signed_at_head.replace(b"\n", b" ", 1))
    assert "is not a checkpoint signed by this log's key" in _serve_refused(data)

    # The live database and its head back in place: the server starts and serves on.
    (data / "log.head").write_bytes(signed_at_head)
    _put_database(live, data)
    server = start_server(data, *ARGS)
    try:
        assert f"log size: {head.size}" in server.output
    finally:
        assert server.stop() == 0


def _stored_size(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        (size,) = conn.execute("SELECT max(size) FROM checkpoints").fetchone()
    finally:
        conn.close()
    return int(size)
