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
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timedelta

from anchorlog.ledger.attestation import check_attestation
from anchorlog.ledger.dsse import verify_envelope
from anchorlog.ledger.errors import VerificationError
from anchorlog.ledger.predicates import PredicateMemo, ProvenancePredicate
from anchorlog.ledger.store import dedup_key

log = logging.getLogger("anchorlog.server")

# How often a worker checks that the server that started it is still there.
ORPHAN_POLL_SECONDS = 0.5


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
    hints = {s.keyid for s in attestation.envelope.signatures if s.keyid}
    # The order VendorSubmissions tries keys in: hinted first, then by registration.
    for key in sorted(order.keys, key=lambda k: (k.key_id not in hints, k.registered_index)):
        try:
            verify_envelope(attestation.envelope, key.public_key, message=message)
        except VerificationError:
            continue
        return Passed(
            key_id=key.key_id,
            dedup_key=dedup_key(f"{order.vendor_id}\x00{key.key_id}", message),
            subject_digests=() if batch_digests else attestation.sample_digests,
        )
    return None


def _start_worker(server_pid: int) -> None:
    """In each worker, first: it lives only as long as the server that started it."""
    # A Ctrl-C reaches the whole process group: the server drains and then closes
    # the pool, so a worker must not die first with requests still in flight.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker holds both ends of its own task queue, so a server killed outright
    # (SIGKILL, out of memory) leaves it waiting for ever; it leaves once orphaned.
    threading.Thread(target=_exit_when_orphaned, args=(server_pid,), name="orphan-watch", daemon=True).start()


def _exit_when_orphaned(server_pid: int) -> None:
    while os.getppid() == server_pid:
        time.sleep(ORPHAN_POLL_SECONDS)
    os._exit(0)


def default_workers() -> int:
    """One less than the CPUs this process may run on (the server's own interpreter
    takes one), at most 8; 0 on a single CPU, where a worker would only add copies."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(8, cpus - 1))


class CheckPool:
    """``workers`` processes running ``check_order``, started at once, closed with ``close``.

    Orders queue when every worker is busy (at most one per RPC thread) rather
    than being checked in the handler: that would take the GIL from the
    sequencer, which is what limits a busy server (measured: 5,924 against
    6,816 appends/s at 10^6 entries with one worker).
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a CheckPool needs at least one worker")
        # spawn, not fork: the server has threads running, and a worker then holds
        # nothing of the server's memory (no log key, no tokens).
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(os.getpid(),),
        )
        self._broken = False
        # Start the processes now, without waiting for them: the first orders queue behind.
        for _ in range(workers):
            self._pool.submit(int)

    def check(self, order: CheckOrder) -> Sequence[Passed | None]:
        """The workers' verdicts; all None (the handler checks every item) once they are gone."""
        if self._broken:
            return [None] * len(order.items)
        try:
            return self._pool.submit(check_order, order).result()
        except BrokenProcessPool:
            if not self._broken:
                self._broken = True
                log.error("the envelope-checking workers died; submissions are checked in the server process")
            return [None] * len(order.items)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
