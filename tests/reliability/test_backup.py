"""`anchorlog backup` copies a live log while writes continue; the restored copy serves and verifies."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from anchorlog.client.vendor import attest_samples
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.status import Status

from tests.conftest import start_server
from tests.reliability.crash_harness import Ledgerbook, Submitter, Target
from tests.reliability.support import (
    DETAILS,
    audit_database,
    check_receipts,
    connect,
    provision_vendor,
    unique_digests,
)

ARGS = ("--auth-failures-per-minute", "100000", "--log-level", "WARNING")


def _backup(data: Path, out: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "anchorlog.client.cli", "backup", "--data", str(data), "--out", str(out),
         "--json", "--full-check"],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_online_backup_under_writes_restores_serves_and_verifies(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, *ARGS)
    book, target = Ledgerbook(), Target()
    threads: list[Submitter] = []
    try:
        vendor = provision_vendor(server.address, server.admin_token, server.log_key, tmp_path)
        verifier = NoteVerifier.from_vkey(server.log_key)
        with connect(server.address, vendor.reader_token, server.log_key, tmp_path / "reader.json") as reader:
            pre_backup = reader.checkpoint()
        threads = [Submitter(n, vendor, server.log_key, target, book, tmp_path, n, 0.01) for n in range(3)]
        for thread in threads:
            thread.start()
        target.up(server.address)
        deadline = time.monotonic() + 60
        while len(book.snapshot()) < 50:
            # A submitter that fails would never get there: stop at once and say why.
            assert book.failures == [], book.failures
            assert time.monotonic() < deadline, f"only {len(book.snapshot())} receipts in 60 s"
            time.sleep(0.05)
        acknowledged_before = book.snapshot()
        out = tmp_path / "backup.db"
        summary = _backup(data, out)
        during = len(book.snapshot()) - len(acknowledged_before)
        time.sleep(0.3)
        # Refuses to overwrite without --force.
        again = subprocess.run(
            [sys.executable, "-m", "anchorlog.client.cli", "backup", "--data", str(data), "--out", str(out)],
            check=False, capture_output=True, text=True, timeout=120,
        )
        assert again.returncode == 2 and "exists" in again.stderr
    finally:
        target.stop()
        for thread in threads:
            thread.join(30)
        server.stop()
    assert book.failures == []
    live = audit_database(data / "ledger.db", verifier)
    # Writes went on around the backup, and the live log outgrew the copy.
    assert live.size > summary["tree_size"] and len(book.receipts) > len(acknowledged_before)
    print(f"backup of {summary['tree_size']} entries ({summary['bytes']} bytes), "
          f"{during} receipts acknowledged while it ran, live log at {live.size}")
    assert summary["signature_checked"] is True

    # The copy alone is a sound log: everything acknowledged before the backup is in it.
    copy = audit_database(out, verifier)
    assert copy.size == summary["tree_size"]
    assert copy.notes[copy.size].decode() == summary["checkpoint"]
    check_receipts(acknowledged_before, copy, verifier)
    check_receipts([r for r in book.receipts if r.tree_size <= copy.size], copy, verifier)
    assert copy.data == live.data[: copy.size]

    # Restore: the backup as ledger.db plus the original log key.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copyfile(out, restored / "ledger.db")
    shutil.copy2(data / "log.key", restored / "log.key")
    (restored / "log.key").chmod(0o600)
    server = start_server(restored, *ARGS)
    try:
        assert server.log_key == str(verifier.vkey())
        assert f"log size: {copy.size}" in server.output
        with connect(server.address, server.admin_token, server.log_key, tmp_path / "admin2.json") as admin:
            reader_token = admin.issue_token("builder-2", "reader")
            vendor_token = admin.issue_token(vendor.vendor_id, "vendor")  # tokens are not in backups
        # The reader that trusted the pre-backup head accepts the restored log only
        # with a consistency proof from it.
        with connect(server.address, reader_token, server.log_key, tmp_path / "reader.json") as reader:
            head = reader.checkpoint()
            assert head.size == copy.size > pre_backup.size
            first_digest = next(iter(unique_digests(b"submitter-0")))
            assert reader.provenance(first_digest).status is Status.HUMAN_VALIDATED
        with connect(server.address, vendor_token, server.log_key, tmp_path / "v2.json") as client:
            (outcome,) = client.submit([attest_samples(vendor.key, [b"\x01" * 32], DETAILS)])
            assert outcome.receipt is not None and outcome.receipt.index == copy.size
    finally:
        assert server.stop() == 0
    check_receipts([outcome.receipt], audit_database(restored / "ledger.db", verifier), verifier)


def test_backup_of_a_tampered_log_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, *ARGS)
    try:
        vendor = provision_vendor(server.address, server.admin_token, server.log_key, tmp_path)
        with connect(server.address, vendor.token, server.log_key, tmp_path / "v.json") as client:
            for n in range(3):
                (outcome,) = client.submit([attest_samples(vendor.key, [bytes([n]) * 32], DETAILS)])
                assert outcome.ok
    finally:
        assert server.stop() == 0
    # Someone with file access rewrites an entry (the append-only trigger has to go first).
    conn = sqlite3.connect(data / "ledger.db")
    conn.executescript("DROP TRIGGER entries_no_update;")
    conn.execute("UPDATE entries SET data = data || x'00' WHERE idx = 4")
    conn.commit()
    conn.close()
    out = tmp_path / "backup.db"
    done = subprocess.run(
        [sys.executable, "-m", "anchorlog.client.cli", "backup", "--data", str(data), "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "does not verify" in done.stderr and "entry 4" in done.stderr
    assert not out.exists() and not (tmp_path / "backup.db.partial").exists()
