"""Envelope checks in worker processes: a submission's CPU-heavy part off the server's GIL.

One interpreter runs the handlers, the sequencer and the receipts; parsing an
envelope, validating its statement and checking its signature hold the GIL for
most of a one-sample submission's server time (bench/README.md). A worker
process does that part for a whole message at once and answers, per item,
either "passed, signed by this key" or nothing.

The workers only accelerate: an item they did not pass is checked again in the
handler by ``VendorSubmissions.prepare``, which gives the precise error (or,
for a revocation, reads the entries it names). An item they passed still gets
the handler's own key checks (registered to this vendor, not revoked, within
its validity), so the registry stays in one process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing import resource_tracker
from pathlib import Path

from anchorlog.ledger.attestation import check_attestation
from anchorlog.ledger.dsse import verify_envelope
from anchorlog.ledger.errors import VerificationError
from anchorlog.ledger.keys import in_trial_order
from anchorlog.ledger.predicates import PredicateMemo, ProvenancePredicate
from anchorlog.ledger.store import signed_dedup_key

log = logging.getLogger("anchorlog.server")

# How often a worker checks that the server that started it is still there.
ORPHAN_POLL_SECONDS = 0.5
# How long closing waits for the workers to finish their orders before killing them.
CLOSE_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class CandidateKey:
    key_id: str
    public_key: bytes
    registered_index: int


@dataclass(frozen=True)
class CheckOrder:
    """One message's items of one vendor, with what checking them needs (pickled to a worker)."""

    vendor_id: str
    keys: tuple[CandidateKey, ...]
    now: datetime
    max_future: timedelta  # how far ahead of ``now`` a claim may be dated
    max_subjects: int
    max_batch: int
    max_envelope_bytes: int
    items: tuple[tuple[bytes, bytes], ...]  # (envelope, batch_digests)


@dataclass(frozen=True)
class Passed:
    """An item that passed every check a worker can make."""

    key_id: str
    dedup_key: bytes
    subject_digests: tuple[bytes, ...]


def check_order(order: CheckOrder) -> list[Passed | None]:
    """Per item, ``Passed`` or None (anything else: the handler checks it again). Pure."""
    predicates = PredicateMemo()
    out: list[Passed | None] = []
    for envelope, batch_digests in order.items:
        try:
            out.append(_check_item(order, envelope, batch_digests, predicates))
        except Exception:  # noqa: BLE001 - whatever failed, the handler finds it again and reports it
            out.append(None)
    return out


def _check_item(order: CheckOrder, envelope: bytes, batch_digests: bytes, predicates: PredicateMemo) -> Passed | None:
    attestation = check_attestation(
        envelope, batch_digests, max_subjects=order.max_subjects, max_batch=order.max_batch,
        max_envelope_bytes=order.max_envelope_bytes, predicates=predicates,
    )
    predicate = attestation.predicate
    if not isinstance(predicate, ProvenancePredicate):
        return None  # a revocation: its targets are read from the store by the handler
    if predicate.performed_at > order.now + order.max_future:
        return None
    message = attestation.envelope.pae()
    hints = [s.keyid for s in attestation.envelope.signatures if s.keyid]
    for key in in_trial_order(order.keys, hints):  # the order VendorSubmissions tries them in
        try:
            verify_envelope(attestation.envelope, key.public_key, message=message)
        except VerificationError:
            continue
        return Passed(
            key_id=key.key_id,
            dedup_key=signed_dedup_key(order.vendor_id, key.key_id, message),
            subject_digests=() if batch_digests else attestation.sample_digests,
        )
    return None


def _start_worker(server_pid: int) -> None:
    """In each worker, first: it ends when its server closes it or is gone, not on Ctrl-C."""
    # Ctrl-C reaches the whole process group: the server drains and then closes
    # the pool, so a worker must not die first with orders in flight. SIGTERM
    # keeps its default: the pool itself ends workers with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker holds both ends of its own task queue, so a server killed outright
    # (SIGKILL, out of memory) would leave it waiting for ever; it leaves once orphaned.
    threading.Thread(target=_exit_when_orphaned, args=(server_pid,), name="orphan-watch", daemon=True).start()


def _exit_when_orphaned(server_pid: int) -> None:
    while os.getppid() == server_pid:
        time.sleep(ORPHAN_POLL_SECONDS)
    os._exit(0)


def _cgroup_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """CPUs a cgroup v2 quota allows (``cpu.max``: "quota period" or "max period"), rounded up."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, -(-int(quota) // int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def default_workers() -> int:
    """One less than the CPUs the server may use (its own interpreter takes one),
    at most 8; 0 on a single CPU, where a worker would only add copies.

    CPUs it may use: the scheduler's affinity mask, lowered by a cgroup v2 CPU
    quota (a container limited to one CPU on a larger host gets none).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cpus = min(cpus, quota)
    return max(0, min(8, cpus - 1))


# multiprocessing's resource tracker (a helper process sharing the server's
# stderr) removes the pool's semaphores once the server is gone; after a
# SIGKILL it also prints a plain-text UserWarning that it did, into a log of
# JSON lines. The cleanup stays, the warning goes: the tracker is started with
# the interpreter's -W options, which it takes from sys.warnoptions.
_TRACKER_WARNING = "ignore::UserWarning:multiprocessing.resource_tracker"


def _start_quiet_resource_tracker() -> None:
    """Start the tracker (if it is not running) with that warning ignored, and
    leave this process's warning options as they were."""
    added = _TRACKER_WARNING not in sys.warnoptions
    if added:
        sys.warnoptions.append(_TRACKER_WARNING)
    try:
        resource_tracker.ensure_running()
    finally:
        if added:
            sys.warnoptions.remove(_TRACKER_WARNING)


class CheckPool:
    """``workers`` processes running ``check_order``, started at once, closed with ``close``.

    Orders queue when every worker is busy (at most one per RPC thread) rather
    than being checked in the handler: that would take the GIL from the
    sequencer, which is what limits a busy server (measured: 5,924 against
    6,816 appends/s at 10^6 entries with one worker). When orders are waiting
    and none has been answered for ``timeout`` seconds (a stopped or stuck
    worker), or a worker dies, the workers are ended and the handlers check
    everything themselves from then on.
    """

    def __init__(self, workers: int, *, timeout: float = 60.0) -> None:
        if workers < 1:
            raise ValueError("a CheckPool needs at least one worker")
        _start_quiet_resource_tracker()
        # spawn, not fork: the server has threads running, and a worker then holds
        # nothing of the server's memory (no log key, no tokens).
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(os.getpid(),),
        )
        self._timeout = timeout
        self._broken = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = 0
        # When an order was last answered, or the pool last went from idle to busy.
        self._progress = time.monotonic()
        # Start the processes now, without waiting for them: the first orders queue behind.
        try:
            for _ in range(workers):
                self._pool.submit(int)
        except BaseException:
            self._end_workers(grace=0.0)
            raise

    def check(self, order: CheckOrder) -> Sequence[Passed | None]:
        """The workers' verdicts; all None (the handler checks every item) once they are gone."""
        nothing: list[Passed | None] = [None] * len(order.items)
        if self._broken.is_set():
            return nothing
        try:
            future = self._submit(order)
            while True:
                stalled_at = self._progress + self._timeout
                try:
                    return future.result(max(0.05, stalled_at - time.monotonic()))
                except TimeoutError:
                    if time.monotonic() >= self._progress + self._timeout:
                        break
            self._give_up(f"the envelope-checking workers answered nothing for {self._timeout:g} s")
        except BrokenProcessPool:
            if not self._closed.is_set():
                self._give_up("the envelope-checking workers died")
        except CancelledError:
            pass  # the pool is closing: the server is stopping
        except Exception as exc:  # noqa: BLE001 - the handler checks this order itself
            if not (self._closed.is_set() or self._broken.is_set()):
                log.error("an envelope-checking worker failed (%s); this message is checked in the server "
                          "process", type(exc).__name__)
        return nothing

    def _submit(self, order: CheckOrder) -> Future[list[Passed | None]]:
        with self._lock:
            if self._in_flight == 0:
                self._progress = time.monotonic()
            self._in_flight += 1
        try:
            future = self._pool.submit(check_order, order)
        except BaseException:
            with self._lock:
                self._in_flight -= 1
            raise
        future.add_done_callback(self._answered)
        return future

    def _answered(self, _: Future[list[Passed | None]]) -> None:
        with self._lock:
            self._in_flight -= 1
            self._progress = time.monotonic()

    def _give_up(self, why: str) -> None:
        with self._lock:
            if self._broken.is_set():
                return
            self._broken.set()
        log.error("%s; submissions are checked in the server process from now on", why)
        self._end_workers(grace=0.0)

    def _end_workers(self, *, grace: float) -> None:
        """Shut the pool down; workers still running after ``grace`` seconds (in all) are killed."""
        # ProcessPoolExecutor has no public way to stop a stuck worker (3.14 adds
        # kill_workers); its _processes map is the only handle on them.
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(CLOSE_GRACE_SECONDS)

    def close(self) -> None:
        """Stop the workers: at once when idle, killed after a grace period when busy or stuck."""
        self._closed.set()
        self._end_workers(grace=CLOSE_GRACE_SECONDS)
