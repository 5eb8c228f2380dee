"""The sequencer: one writer thread that groups concurrent submissions.

Handler threads validate and verify envelopes in parallel, then hand the
resulting :class:`~anchorlog.ledger.store.PendingEntry` values here. The writer
thread drains whatever is queued (up to ``max_batch`` entries), appends it in one
SQLite transaction, signs one checkpoint for the group and only then resolves the
callers' futures: nothing is acknowledged before it is durable.

Key events are appended in a group of their own, checked against the registry
first and applied to it after the commit, so the registry always equals a replay
of the committed log.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime

from anchorlog.ledger.checkpoint import Checkpoint
from anchorlog.ledger.keys import KeyEvent, KeyRegistry
from anchorlog.ledger.store import AppendResult, LogStore, PendingEntry, SignedCheckpoint

_STOP = object()


class KeyNoLongerValid(Exception):
    """The signing key was revoked or expired while the item waited in the queue."""


@dataclass(frozen=True)
class SequencedItem:
    pending: PendingEntry
    # Vendor key that signed the envelope; re-checked when the group is sealed.
    signing_key_id: str | None = None
    key_event: KeyEvent | None = None


@dataclass
class _Job:
    items: Sequence[SequencedItem]
    future: Future[list[tuple[AppendResult, int] | BaseException]]


class Sequencer:
    def __init__(
        self,
        store: LogStore,
        registry: KeyRegistry,
        sign: Callable[[Checkpoint], bytes],
        *,
        max_batch: int = 20_000,
        clock: Callable[[], float] = time.time,
        linger: float = 0.002,
        on_commit: Callable[[SignedCheckpoint], None] | None = None,
    ) -> None:
        self._store = store
        # Runs after each commit and before any caller is answered (the log.head
        # high-water mark): an acknowledged entry is always covered by it.
        self._on_commit = on_commit
        self._registry = registry
        self._sign = sign
        self._max_batch = max_batch
        self._clock = clock
        # Under concurrent load, wait this long for more submissions before sealing
        # a group: fewer, larger groups mean fewer fsyncs and checkpoints (and fewer
        # checkpoints for every client to verify). A lone submitter never waits.
        self._linger = linger
        self._queue: queue.Queue[_Job | object] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="anchorlog-sequencer", daemon=True)
        self._thread.start()

    def submit(
        self, items: Sequence[SequencedItem]
    ) -> Future[list[tuple[AppendResult, int] | BaseException]]:
        """Queue items; the future gives, per item, (group result, position) or an error."""
        future: Future[list[tuple[AppendResult, int] | BaseException]] = Future()
        self._queue.put(_Job(items, future))
        return future

    def close(self) -> None:
        """Finish everything queued so far, then stop the writer thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        busy = False  # the last group had more than one job: others are submitting too
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Job)
            jobs = [first]
            count = len(first.items)
            if not self._has_key_event(first):
                deadline = time.monotonic() + (self._linger if busy else 0.0)
                while count < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        wait = deadline - time.monotonic()
                        if wait <= 0:
                            break
                        try:
                            nxt = self._queue.get(timeout=wait)
                        except queue.Empty:
                            break
                    if nxt is _STOP:
                        stopping = True
                        break
                    assert isinstance(nxt, _Job)
                    if self._has_key_event(nxt):
                        self._process([nxt])
                        continue
                    jobs.append(nxt)
                    count += len(nxt.items)
            busy = len(jobs) > 1
            self._process(jobs)

    @staticmethod
    def _has_key_event(job: _Job) -> bool:
        return any(item.key_event is not None for item in job.items)

    def _process(self, jobs: list[_Job]) -> None:
        now = self._clock()
        now_ms = int(now * 1000)
        at = datetime.fromtimestamp(now, UTC)
        outcomes: list[list[BaseException | None]] = []
        accepted: list[PendingEntry] = []
        for job in jobs:
            per_item: list[BaseException | None] = []
            for item in job.items:
                error = self._recheck(item, at)
                per_item.append(error)
                if error is None:
                    accepted.append(item.pending)
            outcomes.append(per_item)
        try:
            result = self._store.append(accepted, now_ms=now_ms, sign=self._sign)
        except BaseException as exc:  # noqa: BLE001 - every caller must hear about it
            for job in jobs:
                job.future.set_exception(exc)
            return
        # The registry follows the committed log, acknowledged or not.
        self._apply_key_events(jobs, outcomes, result)
        try:
            if self._on_commit is not None:
                self._on_commit(result.checkpoint)
        except BaseException as exc:  # noqa: BLE001 - committed but not acknowledged; a retry dedups
            for job in jobs:
                job.future.set_exception(exc)
            return
        position = 0
        for job, per_item in zip(jobs, outcomes, strict=True):
            answers: list[tuple[AppendResult, int] | BaseException] = []
            for item, error in zip(job.items, per_item, strict=True):
                if error is not None:
                    answers.append(error)
                    continue
                answers.append((result, position))
                position += 1
            job.future.set_result(answers)

    def _apply_key_events(
        self, jobs: list[_Job], outcomes: list[list[BaseException | None]], result: AppendResult
    ) -> None:
        position = 0
        for job, per_item in zip(jobs, outcomes, strict=True):
            for item, error in zip(job.items, per_item, strict=True):
                if error is not None:
                    continue
                if item.key_event is not None and not result.duplicate[position]:
                    self._registry.apply(item.key_event, result.entries[position].index)
                position += 1

    def _recheck(self, item: SequencedItem, at: datetime) -> BaseException | None:
        if item.key_event is not None:
            try:
                self._registry.check(item.key_event)
            except Exception as exc:  # noqa: BLE001 - returned to the caller
                return exc
            return None
        if item.signing_key_id is None:
            return None
        key = self._registry.keys.get(item.signing_key_id)
        if key is None or key.revoked_index is not None or not (key.not_before <= at < key.not_after):
            return KeyNoLongerValid(f"key {item.signing_key_id} is no longer valid")
        return None
