"""Load: many concurrent verifying clients, mixed reads and writes, for a bounded time.

Each client is a real :class:`LedgerClient` on its own channel. Vendor clients
submit (Submit) and read (verified provenance of their own and others' samples,
checkpoints with consistency proofs, single entries); auditor clients read
entry pages and consistency proofs. Any error is counted. At the end every
acknowledged write is looked up in the stored log (opened read-only) and its
receipt re-checked. The server's RSS is reported at start and end.

By hand (the long form)::

    python -m tests.reliability.load_harness --seconds 60 --clients 32
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from anchorlog.client.receipts import Receipt
from anchorlog.client.vendor import attest_samples
from anchorlog.client.verify import VerifiedCheckpoint
from anchorlog.ledger.merkle import verify_consistency
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.status import Status

from tests.conftest import start_server
from tests.reliability.support import (
    DETAILS,
    Vendor,
    audit_database,
    check_receipts,
    connect,
    logged_errors,
    provision_vendor,
    server_rss_kib,
    unique_digests,
)


@dataclass
class LoadReport:
    clients: int
    seconds: float = 0.0
    ops: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    acknowledged: int = 0
    log_size: int = 0
    rss_start_kib: int = 0
    rss_end_kib: int = 0
    rss_peak_kib: int = 0

    @property
    def total_ops(self) -> int:
        return sum(self.ops.values())

    def summary(self) -> str:
        rate = self.total_ops / self.seconds if self.seconds else 0.0
        writes = self.ops["submit"] / self.seconds if self.seconds else 0.0
        return (
            f"{self.clients} clients for {self.seconds:.1f}s: {self.total_ops} verified operations "
            f"({rate:.0f} ops/s, {writes:.0f} submits/s), mix {dict(self.ops)}, "
            f"{len(self.errors)} errors, {self.acknowledged} writes acknowledged and all present "
            f"(log size {self.log_size}); server RSS start {self.rss_start_kib / 1024:.1f} MiB, "
            f"end {self.rss_end_kib / 1024:.1f} MiB, peak sampled {self.rss_peak_kib / 1024:.1f} MiB"
        )


@dataclass
class _Shared:
    lock: threading.Lock = field(default_factory=threading.Lock)
    receipts: list[Receipt] = field(default_factory=list)
    written: list[bytes] = field(default_factory=list)
    ops: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def _client_loop(number: int, address: str, log_key: str, vendor: Vendor, state_dir: Path,
                 stop: threading.Event, shared: _Shared, write_share: float) -> None:
    rng = random.Random(number)
    auditor = number % 4 == 3
    token = vendor.auditor_token if auditor else vendor.token
    digests = iter(unique_digests(f"load-{number}".encode()))
    previous: VerifiedCheckpoint | None = None
    with connect(address, token, log_key, state_dir / f"client-{number}.json") as client:
        while not stop.is_set():
            op = "?"
            try:
                if not auditor and rng.random() < write_share:
                    op = "submit"
                    mine = [next(digests) for _ in range(rng.randint(1, 2))]
                    (outcome,) = client.submit([attest_samples(vendor.key, mine, DETAILS)])
                    if outcome.receipt is None:
                        raise AssertionError(f"write refused: {outcome.error}")
                    with shared.lock:
                        shared.receipts.append(outcome.receipt)
                        shared.written.extend(mine)
                        shared.ops[op] += 1
                    continue
                choice = rng.random()
                with shared.lock:
                    known = rng.choice(shared.written) if shared.written else None
                if auditor and choice < 0.5:
                    op = "entries"
                    head = client.checkpoint()
                    start = rng.randrange(head.size)
                    page = client.raw_entries(start, start + 20)
                    if not page or page[0][0] != start:
                        raise AssertionError(f"entries page at {start} came back as {page[:1]}")
                elif auditor:
                    op = "consistency"
                    head = client.checkpoint()
                    if previous is not None and previous.size < head.size:
                        proof = client.consistency_proof(previous.size, head.size)
                        verify_consistency(previous.size, head.size, previous.root_hash, head.root_hash, proof)
                    previous = head
                elif choice < 0.6 and known is not None:
                    op = "provenance"
                    if client.provenance(known).status is not Status.HUMAN_VALIDATED:
                        raise AssertionError("an acknowledged sample is not human-validated")
                elif choice < 0.8:
                    op = "checkpoint"
                    client.checkpoint()
                else:
                    op = "entry"
                    head = client.checkpoint()
                    client.entry(rng.randrange(head.size))
                with shared.lock:
                    shared.ops[op] += 1
            except Exception as exc:  # noqa: BLE001 - every error is counted and reported
                with shared.lock:
                    shared.errors.append(f"client {number} {op}: {type(exc).__name__}: {exc}")


def run(data_dir: Path, *, clients: int = 32, seconds: float = 10.0, write_share: float = 0.3) -> LoadReport:
    report = LoadReport(clients=clients)
    state_dir = data_dir.parent / f"{data_dir.name}-load-state"
    state_dir.mkdir(parents=True, exist_ok=True)
    server = start_server(data_dir, "--auth-failures-per-minute", "1000000", "--log-level", "WARNING",
                          "--workers", "48", "--max-streams-per-principal", "64")
    stop = threading.Event()
    shared = _Shared()
    try:
        vendor = provision_vendor(server.address, server.admin_token, server.log_key, state_dir)
        report.rss_start_kib = server_rss_kib(server.process.pid)
        threads = [
            threading.Thread(target=_client_loop, name=f"load-{n}", daemon=True,
                             args=(n, server.address, server.log_key, vendor, state_dir, stop, shared,
                                   write_share))
            for n in range(clients)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        peak = report.rss_start_kib
        while time.monotonic() - started < seconds:
            time.sleep(min(0.5, seconds / 10))
            peak = max(peak, server_rss_kib(server.process.pid))
        stop.set()
        for thread in threads:
            thread.join(60)
        report.seconds = time.monotonic() - started
        report.rss_end_kib = server_rss_kib(server.process.pid)
        report.rss_peak_kib = max(peak, report.rss_end_kib)
        verifier = NoteVerifier.from_vkey(server.log_key)
        audit = audit_database(data_dir / "ledger.db", verifier)
        report.acknowledged = check_receipts(shared.receipts, audit, verifier, memoize_signatures=True)
        report.log_size = audit.size
    finally:
        stop.set()
        server.stop()
    report.ops = shared.ops
    report.errors = shared.errors + [f"server log: {line}" for line in logged_errors(server.log())]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--write-share", type=float, default=0.3)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="anchorlog-load-"))
    try:
        report = run(scratch / "data", clients=args.clients, seconds=args.seconds, write_share=args.write_share)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(report.summary())
    for error in report.errors[:20]:
        print(f"ERROR: {error}", file=sys.stderr)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
