"""Crash-safety harness: SIGKILL a busy server again and again and prove nothing is lost.

A real ``anchorlog serve`` subprocess runs under several submitter threads (each a
real :class:`LedgerClient`, some using Submit, some SubmitStream, occasionally
resubmitting an acknowledged envelope) and an admin thread creating vendors (key
events). At a random moment the server gets SIGKILL, then it is restarted on the
same data directory, and after every restart:

* every receipt ever acknowledged still verifies offline, its entry is stored
  byte for byte, and its checkpoint is a prefix of the stored tree;
* indices have no gaps or duplicates; the same envelope always has one index;
* the root recomputed from the stored entries equals the stored tree (every
  node) and the latest stored checkpoint (the file is opened read-only);
* every checkpoint ever signed (stored ones and those seen in receipts) is
  consistent with the latest: recomputed locally for all, and by consistency
  proofs from the restarted server for a sample of them;
* the key registry replayed from the log holds every vendor whose creation was
  acknowledged (or found committed when retried);
* unacknowledged work is retried as it was: a retry of something committed
  before the kill comes back as the original entry, never a second one;
* the server logged no error (an unhandled exception) in any generation.

SIGKILL kills the process, not the machine: this proves the transaction and
acknowledgement ordering, not the disk's flush behaviour (``synchronous=FULL``
covers that by SQLite's contract).

By hand::

    python -m tests.reliability.crash_harness --kills 100 --seconds 600

``tests/reliability/test_crash.py`` runs a bounded form in CI.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from anchorlog.client.ledger import LedgerRpcError, Submission
from anchorlog.client.receipts import Receipt
from anchorlog.client.vendor import attest_batch, attest_samples
from anchorlog.client.verify import key_state
from anchorlog.ledger.errors import VerificationError
from anchorlog.ledger.note import NoteVerifier

from tests.conftest import ServerProcess, start_server
from tests.reliability.support import (
    DETAILS,
    Vendor,
    audit_database,
    check_consistency_online,
    check_receipts,
    connect,
    provision_vendor,
    unique_digests,
)

# While the server is being killed, in-flight calls fail with one of these.
KILL_CODES = frozenset({"UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED"})


class Target:
    """Where the server currently listens; ``None`` while it is down."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._address: str | None = None
        self.generation = 0
        self.stopping = False

    def up(self, address: str) -> None:
        with self._cond:
            self._address = address
            self.generation += 1
            self._cond.notify_all()

    def down(self) -> None:
        with self._cond:
            self._address = None

    def is_current(self, generation: int) -> bool:
        """The server of ``generation`` is still up (not being killed)."""
        with self._cond:
            return self._address is not None and self.generation == generation

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()

    def wait_up(self, after_generation: int) -> tuple[str, int] | None:
        """Block until a server generation newer than ``after_generation`` is up."""
        with self._cond:
            while not self.stopping and (self._address is None or self.generation <= after_generation):
                self._cond.wait(0.5)
            if self.stopping:
                return None
            assert self._address is not None
            return self._address, self.generation


@dataclass
class Ledgerbook:
    """Everything the submitters were told, shared between threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    receipts: list[Receipt] = field(default_factory=list)
    index_of: dict[bytes, int] = field(default_factory=dict)
    acked: list[Submission] = field(default_factory=list)
    duplicates: int = 0
    # Retried after a kill and found already in the log: committed, but the kill
    # came before the acknowledgement reached the client.
    committed_unacknowledged: int = 0
    kill_errors: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    log_offset: int = 0
    # Vendors whose creation (a key event) was acknowledged, or found committed on retry.
    vendors_created: set[str] = field(default_factory=set)

    def record(self, submission: Submission, receipt: Receipt, retried: bool) -> None:
        with self.lock:
            if retried and receipt.duplicate and submission.envelope not in self.index_of:
                self.committed_unacknowledged += 1
            known = self.index_of.setdefault(submission.envelope, receipt.index)
            if known != receipt.index:
                self.failures.append(
                    f"envelope acknowledged at index {known} and again at {receipt.index}"
                )
            if receipt.duplicate:
                self.duplicates += 1
            else:
                self.acked.append(submission)
            self.receipts.append(receipt)

    def snapshot(self) -> list[Receipt]:
        with self.lock:
            return list(self.receipts)


class Submitter(threading.Thread):
    def __init__(self, number: int, vendor: Vendor, log_key: str, target: Target, book: Ledgerbook,
                 state_dir: Path, seed: int, pause: float) -> None:
        super().__init__(name=f"submitter-{number}", daemon=True)
        self.vendor, self.log_key, self.target, self.book = vendor, log_key, target, book
        self.state = state_dir / f"submitter-{number}.json"
        self.rng = random.Random(seed)
        self.digests: Iterator[bytes] = iter(unique_digests(f"submitter-{number}".encode()))
        self.use_stream = number % 3 == 2
        # Think time between calls, so the CI form stays small enough to re-check every round.
        self.pause = pause

    def _fresh(self) -> list[Submission]:
        out = []
        for _ in range(self.rng.randint(1, 4)):
            if self.rng.random() < 0.15:
                batch = [next(self.digests) for _ in range(self.rng.randint(2, 40))]
                out.append(attest_batch(self.vendor.key, batch, DETAILS))
            else:
                samples = [next(self.digests) for _ in range(self.rng.randint(1, 3))]
                out.append(attest_samples(self.vendor.key, samples, DETAILS))
        if self.rng.random() < 0.1:
            with self.book.lock:
                if self.book.acked:
                    out.append(self.rng.choice(self.book.acked))
        return out

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported to the harness
            with self.book.lock:
                self.book.failures.append(f"{self.name}: {type(exc).__name__}: {exc}")

    def _run(self) -> None:
        generation = 0
        pending: list[Submission] = []
        while True:
            up = self.target.wait_up(generation)
            if up is None:
                return
            address, generation = up
            with connect(address, self.vendor.token, self.log_key, self.state) as client:
                while not self.target.stopping and self.target.generation == generation:
                    # Unacknowledged submissions are retried as they were: a retry
                    # of one that was committed before the kill must be a duplicate.
                    retried = bool(pending)
                    pending = pending or self._fresh()
                    try:
                        if self.use_stream:
                            outcomes = list(client.submit_stream(pending))
                        else:
                            outcomes = client.submit(pending)
                    except LedgerRpcError as exc:
                        killed = not self.target.is_current(generation) or self.target.stopping
                        with self.book.lock:
                            if killed and exc.code in KILL_CODES:
                                self.book.kill_errors[exc.code] += 1
                            else:
                                self.book.failures.append(f"{self.name}: {exc}")
                        break
                    except VerificationError as exc:
                        with self.book.lock:
                            self.book.failures.append(f"{self.name}: receipt does not verify: {exc}")
                        return
                    if len(outcomes) != len(pending):
                        with self.book.lock:
                            self.book.failures.append(f"{self.name}: {len(outcomes)} answers "
                                                      f"for {len(pending)} items")
                        return
                    for submission, outcome in zip(pending, outcomes, strict=True):
                        if outcome.receipt is None:
                            with self.book.lock:
                                self.book.failures.append(f"{self.name}: item refused: {outcome.error}")
                            return
                        self.book.record(submission, outcome.receipt, retried)
                    pending = []
                    if self.pause:
                        time.sleep(self.rng.uniform(0, 2 * self.pause))


class KeyEventer(threading.Thread):
    """An admin creating vendors now and then, so kills also land on key-event groups
    (appended alone, then applied to the in-memory registry)."""

    def __init__(self, admin_token: str, log_key: str, target: Target, book: Ledgerbook,
                 state_dir: Path, pause: float) -> None:
        super().__init__(name="key-eventer", daemon=True)
        self.admin_token, self.log_key, self.target, self.book = admin_token, log_key, target, book
        self.state = state_dir / "key-eventer.json"
        self.pause = pause

    def run(self) -> None:
        generation, number, retried = 0, 0, False
        try:
            while True:
                up = self.target.wait_up(generation)
                if up is None:
                    return
                address, generation = up
                with connect(address, self.admin_token, self.log_key, self.state) as admin:
                    while not self.target.stopping and self.target.generation == generation:
                        vendor_id = f"crash-v{number}"
                        try:
                            receipt = admin.create_vendor(vendor_id, "Crash Test")
                        except LedgerRpcError as exc:
                            if retried and exc.code == "ALREADY_EXISTS":
                                # Committed before the kill; the acknowledgement was lost.
                                with self.book.lock:
                                    self.book.vendors_created.add(vendor_id)
                                    self.book.committed_unacknowledged += 1
                                number, retried = number + 1, False
                                continue
                            killed = not self.target.is_current(generation) or self.target.stopping
                            with self.book.lock:
                                if not (killed and exc.code in KILL_CODES):
                                    self.book.failures.append(f"{self.name}: {exc}")
                                    return
                                self.book.kill_errors[exc.code] += 1
                            retried = True
                            break
                        with self.book.lock:
                            self.book.receipts.append(receipt)
                            self.book.vendors_created.add(vendor_id)
                        number, retried = number + 1, False
                        time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported to the harness
            with self.book.lock:
                self.book.failures.append(f"{self.name}: {type(exc).__name__}: {exc}")


@dataclass
class CrashReport:
    kills: int = 0
    entries: int = 0
    receipts: int = 0
    duplicates: int = 0
    committed_unacknowledged: int = 0
    vendors_created: int = 0
    checkpoints: int = 0
    online_proofs: int = 0
    kill_errors: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.kills} SIGKILLs in {self.seconds:.1f}s: {self.entries} entries, "
            f"{self.receipts} receipts re-verified after every restart ({self.duplicates} duplicates, "
            f"{self.committed_unacknowledged} committed but unacknowledged when killed), "
            f"{self.vendors_created} vendors created by key events and replayed, "
            f"{self.checkpoints} stored checkpoints checked, {self.online_proofs} online consistency "
            f"proofs, calls cut by kills: {self.kill_errors}, failures: {len(self.failures)}"
        )


def _collect_server_errors(server: ServerProcess, book: Ledgerbook) -> None:
    """What the (now dead) server logged as errors (internal errors and their traces): a
    healthy run logs none. Refusals are WARNINGs and are caught by the submitters."""
    text = server.log()
    fresh, book.log_offset = text[book.log_offset:], len(text)
    if fresh.strip():
        with book.lock:
            book.failures.append(f"server log: {fresh.strip()[-4000:]}")


def _verify_after_restart(server: ServerProcess, book: Ledgerbook, auditor_state: Path,
                          vendor: Vendor, proofs_per_round: int, *, final: bool = False) -> tuple[int, int, int]:
    verifier = NoteVerifier.from_vkey(server.log_key)
    receipts = book.snapshot()  # taken before the audit snapshot, so all of them are stored
    audit = audit_database(server.data_dir / "ledger.db", verifier)
    check_receipts(receipts, audit, verifier, memoize_signatures=not final)
    # check_receipts proved each receipt's root equals the stored root at its size,
    # so one note per size stands for all checkpoints signed at that size.
    notes = dict(audit.notes)
    for receipt in receipts:
        notes.setdefault(receipt.tree_size, receipt.checkpoint)
    with book.lock:
        created = set(book.vendors_created)
    with connect(server.address, vendor.auditor_token, server.log_key, auditor_state) as auditor:
        proved = check_consistency_online(auditor, notes, verifier, limit=proofs_per_round)
        # The key registry replayed from the restarted log holds every vendor created.
        _, history = auditor.key_history()
        replayed = key_state(history, verifier)
        assert created <= set(replayed.vendors), f"vendors lost: {sorted(created - set(replayed.vendors))}"
    return audit.size, len(audit.notes), proved


def run(data_dir: Path, *, kills: int, seconds: float | None = None, submitters: int = 4,
        min_run: float = 0.1, max_run: float = 0.6, seed: int | None = None,
        proofs_per_round: int = 25, pause: float = 0.0, log: bool = False) -> CrashReport:
    """Kill and restart the server ``kills`` times (or until ``seconds``); return what was checked."""
    rng = random.Random(seed)
    report = CrashReport()
    book = Ledgerbook()
    target = Target()
    state_dir = data_dir.parent / f"{data_dir.name}-client-state"
    state_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    server = start_server(data_dir, "--log-level", "ERROR", "--auth-failures-per-minute", "100000")
    threads: list[threading.Thread] = []
    try:
        vendor = provision_vendor(server.address, server.admin_token, server.log_key, state_dir)
        threads = [
            Submitter(n, vendor, server.log_key, target, book, state_dir, rng.randrange(1 << 30), pause)
            for n in range(submitters)
        ]
        threads.append(KeyEventer(server.admin_token, server.log_key, target, book, state_dir,
                                  max(pause, 0.05) * 4))
        for thread in threads:
            thread.start()
        target.up(server.address)
        while report.kills < kills and (seconds is None or time.monotonic() - started < seconds):
            time.sleep(rng.uniform(min_run, max_run))
            target.down()
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            _collect_server_errors(server, book)
            report.kills += 1
            server = start_server(data_dir, "--log-level", "ERROR",
                                  "--auth-failures-per-minute", "100000")
            target.up(server.address)
            report.entries, report.checkpoints, proved = _verify_after_restart(
                server, book, state_dir / "auditor.json", vendor, proofs_per_round
            )
            report.online_proofs += proved
            if log:
                print(f"kill {report.kills}: {report.entries} entries, "
                      f"{len(book.receipts)} receipts verified", flush=True)
        # Final round with the writers stopped: everything acknowledged, checked once more.
        target.stop()
        for thread in threads:
            thread.join(60)
        report.entries, report.checkpoints, proved = _verify_after_restart(
            server, book, state_dir / "auditor.json", vendor, proofs_per_round, final=True
        )
        report.online_proofs += proved
    except AssertionError as exc:
        book.failures.append(f"check failed: {exc}")
    finally:
        target.stop()
        server.stop()
        _collect_server_errors(server, book)
        for thread in threads:
            thread.join(10)
    report.receipts = len(book.receipts)
    report.duplicates = book.duplicates
    report.committed_unacknowledged = book.committed_unacknowledged
    report.vendors_created = len(book.vendors_created)
    report.kill_errors = dict(book.kill_errors)
    report.failures = list(book.failures)
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--submitters", type=int, default=6)
    parser.add_argument("--min-run", type=float, default=0.1, help="shortest life of a server (s)")
    parser.add_argument("--max-run", type=float, default=1.5, help="longest life of a server (s)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--pause", type=float, default=0.0, help="mean think time between calls (s)")
    parser.add_argument("--data", type=Path, default=None, help="data dir (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    scratch = None
    data_dir = args.data
    if data_dir is None:
        scratch = Path(tempfile.mkdtemp(prefix="anchorlog-crash-"))
        data_dir = scratch / "data"
    try:
        report = run(data_dir, kills=args.kills, seconds=args.seconds, submitters=args.submitters,
                     min_run=args.min_run, max_run=args.max_run, seed=args.seed, pause=args.pause,
                     log=True)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(report.summary())
    for failure in report.failures:
        print(f"FAILURE: {failure}", file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
