"""The gRPC servicer: authentication, the role matrix, and each RPC.

Every RPC goes through :meth:`LedgerService._guard`, which authenticates the
bearer token, checks the role against :data:`~anchorlog.server.auth.RPC_ROLES`
and turns any failure into a precise status. Handlers only read the store or
hand validated entries to the sequencer.
"""

from __future__ import annotations

import binascii
import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeVar

import grpc
from anchorlog.ledger.batch import BatchTree, parse_batch_digests
from anchorlog.ledger.dsse import (
    _COMPACT_ENVELOPE,
    PAYLOAD_TYPE_INTOTO,
    Envelope,
    b64decode_either,
    ed25519_key_id,
    pae,
)
from anchorlog.ledger.ed25519 import check_public_key
from anchorlog.ledger.entry import EntryKind, decode_entry
from anchorlog.ledger.errors import InvalidInput, NotFound
from anchorlog.ledger.keys import (
    NO_EXPIRY,
    KeyEvent,
    KeyEventType,
    KeyRegistry,
    check_vendor_id,
    key_event_envelope,
    open_key_event,
)
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.predicates import Claim, PredicateMemo, ProvenancePredicate, parse_time
from anchorlog.ledger.statement import parse_statement
from anchorlog.ledger.status import AttestationFact, derive_status
from anchorlog.ledger.store import (
    AppendResult,
    LogStore,
    PendingEntry,
    SignedCheckpoint,
    StoredEntry,
    dedup_key,
)
from anchorlog.server.auth import (
    RPC_ROLES,
    TOKEN_ID_HEX_CHARS,
    FailureLimiter,
    Principal,
    Role,
    TokenSelector,
    TokenStore,
    is_token_id,
    token_id,
)
from anchorlog.server.errors import (
    AlreadyExists,
    Cancelled,
    Denied,
    Exhausted,
    Unauthenticated,
    abort_with,
    to_status,
)
from anchorlog.server.sequencer import SequencedItem, Sequencer
from anchorlog.server.submissions import SubmissionLimits, VendorSubmissions
from anchorlog.server.validation_pool import CheckPool, Passed
from anchorlog.v1 import anchorlog_pb2 as pb
from anchorlog.v1 import anchorlog_pb2_grpc as pb_grpc

log = logging.getLogger("anchorlog.server")
T = TypeVar("T")

# A message with fewer items and bytes than these is checked in the handler: a
# worker's round trip (a pickle and a pipe each way) would cost more than it frees.
POOL_MIN_ITEMS = 8
POOL_MIN_BYTES = 256 << 10
# Nor one larger than this (say batches of 10^6 digests): the workers take orders
# in turn, and one such message would hold every other caller's behind it.
POOL_MAX_BYTES = 8 << 20
# Refusals worth a warning in the log: someone tried what they may not do.
_SECURITY_CODES = frozenset({
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})

_ROLE_TO_PB = {
    Role.ADMIN: pb.ROLE_ADMIN,
    Role.VENDOR: pb.ROLE_VENDOR,
    Role.READER: pb.ROLE_READER,
    Role.AUDITOR: pb.ROLE_AUDITOR,
}
_PB_TO_ROLE = {v: k for k, v in _ROLE_TO_PB.items()}


@dataclass(frozen=True)
class ServiceLimits:
    submission: SubmissionLimits = field(default_factory=SubmissionLimits)
    max_items_per_request: int = 10_000
    max_stream_items: int = 10_000_000
    max_digests_per_query: int = 10_000
    max_entries_page: int = 1000
    # Entry bytes per GetEntries answer, so a page of large envelopes stays far
    # below the message limit (at least one entry is always sent).
    max_entries_bytes: int = 16 << 20
    max_streams_per_principal: int = 8
    # All streams together; must stay below the worker count, since each open
    # stream holds a worker thread and unary RPCs need one too.
    max_streams: int = 12
    # A stream that sends no request for this long, or stays open longer, is ended.
    stream_idle_seconds: float = 60.0
    max_stream_seconds: float = 3600.0
    stream_window: int = 2048
    # Batch trees kept for provenance paths, by (estimated) bytes of memory.
    batch_tree_cache_bytes: int = 256 << 20
    # Logged attestations whose status-hint fields are kept parsed (shared by all calls).
    fact_cache: int = 4096


def _checkpoint_pb(cp: SignedCheckpoint) -> pb.Checkpoint:
    return pb.Checkpoint(note=cp.note, size=cp.size, root_hash=cp.root_hash)


def _digest(value: bytes, field_name: str) -> bytes:
    if len(value) != 32:
        raise InvalidInput(field_name, f"must be a 32-byte SHA-256 digest, got {len(value)} bytes")
    return value


class StreamExpired(Cancelled):
    """The server ended a stream that sat idle or stayed open past its limit."""


class _StreamSlots:
    """Concurrent streams per principal and in all, bounded."""

    def __init__(self, limit: int, total_limit: int) -> None:
        self._limit = limit
        self._total_limit = total_limit
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._total = 0

    def acquire(self, principal: str) -> None:
        with self._lock:
            count = self._open.get(principal, 0)
            if count >= self._limit:
                raise Exhausted(f"at most {self._limit} concurrent streams per principal")
            if self._total >= self._total_limit:
                raise Exhausted(
                    f"the server has its limit of {self._total_limit} streams open; try again later"
                )
            self._open[principal] = count + 1
            self._total += 1

    def release(self, principal: str) -> None:
        with self._lock:
            self._open[principal] -= 1
            if not self._open[principal]:
                del self._open[principal]
            self._total -= 1


class _StreamClock:
    """How long a stream may still wait for its caller: idle and total limits."""

    def __init__(self, idle: float, longest: float) -> None:
        self._idle = idle
        self._longest = longest
        self._end = time.monotonic() + longest

    def get(self, source: queue.Queue[T], context: grpc.ServicerContext) -> T:
        """The next item from ``source``; StreamExpired once a limit passes, Cancelled if the caller left."""
        idle_end = time.monotonic() + self._idle
        while True:
            now = time.monotonic()
            if now >= self._end:
                raise StreamExpired(
                    f"stream open longer than the server's limit of {self._longest:g} s; "
                    "open a new one to go on"
                )
            if now >= idle_end:
                raise StreamExpired(
                    f"no request on this stream for {self._idle:g} s; ended to free its slot"
                )
            try:
                # Short waits: a caller that cancelled frees the thread promptly.
                return source.get(timeout=min(idle_end - now, self._end - now, 0.25))
            except queue.Empty:
                if not context.is_active():
                    raise Cancelled("the stream was cancelled or its deadline passed") from None


@dataclass(frozen=True)
class _StreamBatch:
    """One SubmitStream message on its way: its first item's stream position,
    each item validated (or its error), and the sequencer's future for the valid ones."""

    start: int
    prepared: list[SequencedItem | BaseException]
    queued: Future[list[tuple[AppendResult, int] | BaseException]] | None


class _ItemWindow:
    """Items read from a stream but not yet answered, bounded (a caller that never reads stalls)."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._used = 0
        self._changed = threading.Condition()

    def acquire(self, count: int, context: grpc.ServicerContext, stop: threading.Event) -> bool:
        """Wait for room for ``count`` items; False once the RPC is over or its consumer stopped.

        A message larger than the whole window waits for an empty window.
        """
        count = min(count, self._limit)
        with self._changed:
            while self._used + count > self._limit:
                if stop.is_set() or not context.is_active():
                    return False
                self._changed.wait(0.25)
            self._used += count
        return True

    def release(self, count: int) -> None:
        with self._changed:
            self._used -= min(count, self._limit)
            self._changed.notify_all()


def _put_while_wanted(
    target: queue.Queue[T], item: T, context: grpc.ServicerContext, stop: threading.Event
) -> bool:
    """Put ``item``, giving up once the RPC is over or its consumer stopped."""
    while not stop.is_set() and context.is_active():
        try:
            target.put(item, timeout=0.25)
            return True
        except queue.Full:
            continue
    return False


class _BatchTreeCache:
    """Batch trees by entry index, bounded by bytes; each tree is built once at a time.

    A 1M-digest batch's tree takes ~100 MB: a count bound alone could keep
    gigabytes, and concurrent queries for one batch must not each build it.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._trees: OrderedDict[int, tuple[BatchTree, int]] = OrderedDict()
        self._building: dict[int, Future[BatchTree]] = {}
        self._bytes = 0

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def get(self, index: int, build: Callable[[], tuple[BatchTree, int]]) -> BatchTree:
        """The tree of entry ``index``; ``build`` gives (tree, its size in bytes)."""
        with self._lock:
            hit = self._trees.get(index)
            if hit is not None:
                self._trees.move_to_end(index)
                return hit[0]
            building = self._building.get(index)
            if building is None:
                mine: Future[BatchTree] = Future()
                self._building[index] = mine
        if building is not None:
            return building.result()
        try:
            tree, size = build()
        except BaseException as exc:
            with self._lock:
                del self._building[index]
            mine.set_exception(exc)
            raise
        with self._lock:
            del self._building[index]
            if size <= self._max_bytes:
                self._trees[index] = (tree, size)
                self._bytes += size
                while self._bytes > self._max_bytes:
                    _, (_, dropped) = self._trees.popitem(last=False)
                    self._bytes -= dropped
        mine.set_result(tree)
        return tree


@dataclass(frozen=True)
class _HintSource:
    """What the status hint reads from one logged attestation: its bytes never change."""

    vendor_id: str
    claim: Claim
    performed_at: datetime
    hinted_key_ids: frozenset[str]


class _HintSources:
    """Parsed hint sources by (entry index, leaf hash), shared by all calls; bounded.

    Single lookups of samples that share an entry (a batch) parse its envelope
    once. Whether a hinted key is compromised is not kept: the registry changes.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._sources: dict[tuple[int, bytes], _HintSource] = {}

    def get(self, stored: StoredEntry) -> _HintSource:
        key = (stored.index, stored.leaf_hash)
        with self._lock:
            known = self._sources.get(key)
        if known is not None:
            return known
        entry = decode_entry(stored.data)
        claim, performed_at, hinted = _hint_fields(entry.envelope)
        source = _HintSource(entry.submitter, claim, performed_at, frozenset(hinted))
        with self._lock:
            if len(self._sources) >= self._capacity:
                self._sources.clear()
            self._sources[key] = source
        return source


class LedgerService(pb_grpc.LedgerServicer):
    def __init__(
        self,
        *,
        store: LogStore,
        registry: KeyRegistry,
        sequencer: Sequencer,
        tokens: TokenStore,
        signer: NoteSigner,
        limits: ServiceLimits,
        failures: FailureLimiter,
        check_pool: CheckPool | None = None,
    ) -> None:
        missing = [m for m in pb.DESCRIPTOR.services_by_name["Ledger"].methods_by_name if m not in RPC_ROLES]
        if missing:
            raise RuntimeError(f"RPCs without a role rule: {missing}")
        self._store = store
        self._registry = registry
        self._sequencer = sequencer
        self._tokens = tokens
        self._signer = signer
        self._limits = limits
        self._failures = failures
        self._check_pool = check_pool
        self._streams = _StreamSlots(limits.max_streams_per_principal, limits.max_streams)
        self._batch_trees = _BatchTreeCache(limits.batch_tree_cache_bytes)
        # Vendors repeat one predicate over many one-sample envelopes: each is checked once.
        self._predicates = PredicateMemo()
        self._hint_sources = _HintSources(limits.fact_cache)
        # (tree size, its key events with proofs): see _key_event_proofs.
        self._key_events_at: tuple[int, tuple[pb.ProvedEntry, ...]] | None = None

    # ------------------------------------------------------------ plumbing

    def _authenticate(self, context: grpc.ServicerContext, rpc: str) -> Principal:
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                token = value
        if token is None:
            raise Unauthenticated("missing authorization metadata (expected 'Bearer <token>')")
        scheme, _, secret = token.partition(" ")
        well_formed = scheme.lower() == "bearer" and bool(secret.strip())
        principal = self._tokens.authenticate(secret.strip()) if well_formed else None
        if principal is None:
            # Only guesses are limited: a valid token from the same address (a NAT,
            # a shared host) still works while someone else is being refused.
            peer = (context.peer() or "unknown").rsplit(":", 1)[0]
            if self._failures.blocked(peer):
                raise Exhausted("too many failed authentications from this address; try again later")
            self._failures.record_failure(peer)
            if not well_formed:
                raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
            raise Unauthenticated("unknown or revoked token")
        if principal.role not in RPC_ROLES[rpc]:
            raise Denied(f"role {principal.role} may not call {rpc}")
        return principal

    def _guard(self, rpc: str, context: grpc.ServicerContext, handler: Callable[[Principal], T]) -> T:
        principal: Principal | None = None
        try:
            principal = self._authenticate(context, rpc)
            answer = handler(principal)
        except grpc.RpcError:
            raise
        except Exception as exc:
            self._refuse(rpc, principal, context, exc)
            raise AssertionError("unreachable") from exc
        log.debug("%s by %s: OK", rpc, principal.name)
        return answer

    def _guard_stream(
        self, rpc: str, context: grpc.ServicerContext, handler: Callable[[Principal], Iterator[T]]
    ) -> Iterator[T]:
        principal: Principal | None = None
        try:
            principal = self._authenticate(context, rpc)
            self._streams.acquire(principal.name)
        except Exception as exc:  # noqa: BLE001
            self._refuse(rpc, principal, context, exc)
            return
        # Backstop for a handler stuck sending to a caller that never reads: the
        # idle and total limits are checked between requests, this cancels outright.
        watchdog = threading.Timer(
            self._limits.max_stream_seconds + self._limits.stream_idle_seconds, context.cancel
        )
        watchdog.daemon = True
        watchdog.start()
        try:
            yield from handler(principal)
        except grpc.RpcError:
            log.debug("%s by %s: ended by the caller or its deadline", rpc, principal.name)
            raise
        except Exception as exc:  # noqa: BLE001
            self._refuse(rpc, principal, context, exc)
        finally:
            watchdog.cancel()
            self._streams.release(principal.name)
        log.debug("%s by %s: OK", rpc, principal.name)

    @staticmethod
    def _refuse(
        rpc: str, principal: Principal | None, context: grpc.ServicerContext, exc: BaseException
    ) -> None:
        """Log the refusal (never the token: only who, what and why) and abort the RPC."""
        status = to_status(exc)
        code = grpc.StatusCode.UNKNOWN
        for candidate in grpc.StatusCode:
            if candidate.value[0] == status.code:
                code = candidate
        who = principal.name if principal is not None else f"unauthenticated {context.peer()}"
        level = logging.WARNING if code in _SECURITY_CODES else logging.DEBUG
        log.log(level, "%s by %s refused: %s: %s", rpc, who, code.name, status.message)
        abort_with(context, status)

    @staticmethod
    def _still_wanted(context: grpc.ServicerContext) -> None:
        """Refuse to start a write (or more work) for a caller whose deadline passed."""
        if not context.is_active():
            raise Cancelled("the call's deadline passed or it was cancelled; nothing was written")

    def _latest(self) -> SignedCheckpoint:
        cp = self._store.latest_checkpoint()
        if cp is None:
            raise NotFound("the log has no checkpoint yet")
        return cp

    def _proved(self, entry: StoredEntry, size: int) -> pb.ProvedEntry:
        return pb.ProvedEntry(
            entry=pb.Entry(index=entry.index, data=entry.data),
            inclusion=pb.InclusionProof(
                leaf_index=entry.index,
                tree_size=size,
                hashes=self._store.inclusion_proof(entry.index, size),
            ),
        )

    def _receipt(self, result: AppendResult, position: int) -> pb.Receipt:
        cp = result.checkpoint
        return pb.Receipt(
            entry=self._proved(result.entries[position], cp.size),
            checkpoint=_checkpoint_pb(cp),
            duplicate=result.duplicate[position],
        )

    def _consistency(self, trusted_size: int, size: int) -> pb.ConsistencyProof | None:
        if trusted_size > size:
            raise InvalidInput(
                "trusted_size", f"{trusted_size} is beyond the latest checkpoint size {size}"
            )
        if trusted_size == 0:
            return None
        if trusted_size == size:
            # A tree is consistent with itself by an empty proof (RFC 9162 §2.1.4):
            # the common case of a client that is up to date, without building a plan.
            return pb.ConsistencyProof(first_size=size, second_size=size)
        return pb.ConsistencyProof(
            first_size=trusted_size,
            second_size=size,
            hashes=self._store.consistency_proof(trusted_size, size),
        )

    def _checked_trusted_size(self, trusted_size: int) -> int:
        """A client's trusted size, refused when it is beyond the log (a rollback or a bad client)."""
        if trusted_size == 0:
            return 0
        cp = self._store.latest_checkpoint()
        size = cp.size if cp is not None else 0
        if trusted_size > size:
            raise InvalidInput(
                "trusted_size", f"{trusted_size} is beyond the latest checkpoint size {size}"
            )
        return trusted_size

    # ------------------------------------------------------------ submit

    def _prepare_all(
        self, items: Iterable[pb.SubmitItem], principal: Principal
    ) -> list[SequencedItem | BaseException]:
        """Each item validated on its own: a bad one is answered with its error, the rest go on."""
        submissions = VendorSubmissions(
            principal.name, registry=self._registry, store=self._store,
            limits=self._limits.submission, predicates=self._predicates,
        )
        pairs = [(item.envelope, item.batch_digests) for item in items]
        passed: Sequence[Passed | None] = [None] * len(pairs)
        if self._check_pool is not None:
            size = sum(len(e) + len(b) for e, b in pairs)
            if size <= POOL_MAX_BYTES and (len(pairs) >= POOL_MIN_ITEMS or size >= POOL_MIN_BYTES):
                passed = self._check_pool.check(submissions.order(pairs))
        prepared: list[SequencedItem | BaseException] = []
        for (envelope, batch_digests), verdict in zip(pairs, passed, strict=True):
            try:
                if verdict is None:
                    prepared.append(submissions.prepare(envelope, batch_digests))
                else:
                    prepared.append(submissions.accept(envelope, batch_digests, verdict))
            except Exception as exc:  # noqa: BLE001 - reported per item
                prepared.append(exc)
        return prepared

    def _checked_items(self, request: pb.SubmitRequest) -> int:
        count = len(request.items)
        if not count:
            raise InvalidInput("items", "at least one item is required")
        if count > self._limits.max_items_per_request:
            raise Exhausted(
                f"{count} items exceeds the limit of {self._limits.max_items_per_request} per "
                "request (per message on a stream)"
            )
        return count

    def _settle_into(
        self,
        response: pb.SubmitResponse,
        start: int,
        prepared: list[SequencedItem | BaseException],
        sequenced: list[tuple[AppendResult, int] | BaseException],
    ) -> list[tuple[pb.ItemResult, tuple[AppendResult, int] | BaseException]]:
        """Results for ``prepared`` (numbered from ``start``), given the sequencer's answers to
        the valid ones, written into ``response`` in place (building each receipt as a separate
        message and copying it in cost twice as much)."""
        # The audit paths first, per checkpoint, all together: a message's new entries
        # are neighbours in their group, and neighbours' paths come from one walk.
        wanted: dict[int, list[int]] = {}
        for answer in sequenced:
            if not isinstance(answer, BaseException):
                group, index = answer
                wanted.setdefault(group.checkpoint.size, []).append(group.entries[index].index)
        paths = {size: self._store.inclusion_proofs(indices, size) for size, indices in wanted.items()}
        answers = iter(sequenced)
        add = response.results.add
        out = []
        checkpoints: dict[int, pb.Checkpoint] = {}
        for offset, item in enumerate(prepared):
            answer = item if isinstance(item, BaseException) else next(answers)
            result = add(position=start + offset)
            if isinstance(answer, BaseException):
                result.error.CopyFrom(to_status(answer))
            else:
                group, index = answer
                cp = group.checkpoint
                cp_pb = checkpoints.get(cp.size)
                if cp_pb is None:
                    cp_pb = checkpoints[cp.size] = _checkpoint_pb(cp)
                stored = group.entries[index]
                receipt = result.receipt
                proved = receipt.entry
                entry = proved.entry
                entry.index = stored.index
                entry.data = stored.data
                inclusion = proved.inclusion
                inclusion.leaf_index = stored.index
                inclusion.tree_size = cp.size
                inclusion.hashes.extend(paths[cp.size][stored.index])
                receipt.checkpoint.CopyFrom(cp_pb)
                receipt.duplicate = group.duplicate[index]
            out.append((result, answer))
        return out

    def Submit(self, request: pb.SubmitRequest, context: grpc.ServicerContext) -> pb.SubmitResponse:
        def handle(principal: Principal) -> pb.SubmitResponse:
            self._checked_items(request)
            prepared = self._prepare_all(request.items, principal)
            valid = [p for p in prepared if isinstance(p, SequencedItem)]
            self._still_wanted(context)
            sequenced = self._sequencer.submit(valid).result() if valid else []
            response = pb.SubmitResponse()
            self._settle_into(response, 0, prepared, sequenced)
            return response

        return self._guard("Submit", context, handle)

    def SubmitStream(
        self, request_iterator: Iterator[pb.SubmitRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.SubmitResponse]:
        def handle(principal: Principal) -> Iterator[pb.SubmitResponse]:
            # A feeder thread reads and validates messages and queues their futures,
            # so many items are in flight and the sequencer can group them; the window
            # bounds the items read but not yet answered.
            window = _ItemWindow(self._limits.stream_window)
            pending: queue.Queue[_StreamBatch | None] = queue.Queue()
            failure: list[BaseException] = []
            # Set when the consumer below is gone: the feeder must not block on a full window.
            stopped = threading.Event()
            # The first message's trusted_size, set by the feeder before it queues that
            # message (the queue orders the hand-over to the consumer).
            trusted: list[int] = []

            def feed() -> None:
                try:
                    position = 0
                    for request in request_iterator:
                        count = self._checked_items(request)
                        if position + count > self._limits.max_stream_items:
                            raise Exhausted(
                                f"stream longer than {self._limits.max_stream_items} items"
                            )
                        if not trusted:
                            trusted.append(self._checked_trusted_size(request.trusted_size))
                        if not window.acquire(count, context, stopped):
                            return
                        prepared = self._prepare_all(request.items, principal)
                        valid = [p for p in prepared if isinstance(p, SequencedItem)]
                        queued = None
                        if valid:
                            self._still_wanted(context)
                            queued = self._sequencer.submit(valid)
                        if not _put_while_wanted(
                            pending, _StreamBatch(position, prepared, queued), context, stopped
                        ):
                            return
                        position += count
                except Exception as exc:  # noqa: BLE001 - ends the stream
                    failure.append(exc)
                finally:
                    _put_while_wanted(pending, None, context, stopped)

            clock = _StreamClock(self._limits.stream_idle_seconds, self._limits.max_stream_seconds)
            feeder = threading.Thread(target=feed, name="anchorlog-submit-feed", daemon=True)
            feeder.start()
            # Size of the last checkpoint this stream sent (or the client trusts):
            # a newer receipt checkpoint comes with a proof from it, so the client
            # need not ask GetConsistencyProof before accepting the receipt.
            last_size: int | None = None
            try:
                while True:
                    batch = clock.get(pending, context)
                    if batch is None:
                        break
                    if last_size is None:
                        last_size = trusted[0] if trusted else 0
                    sequenced = batch.queued.result() if batch.queued is not None else []
                    response = pb.SubmitResponse()
                    for result, answer in self._settle_into(response, batch.start, batch.prepared, sequenced):
                        if isinstance(answer, BaseException):
                            continue
                        size = answer[0].checkpoint.size
                        # Sizes are non-decreasing along the stream; a smaller one gets no proof.
                        if size > last_size:
                            if last_size > 0:
                                proof = result.consistency
                                proof.first_size = last_size
                                proof.second_size = size
                                proof.hashes.extend(self._store.consistency_proof(last_size, size))
                            last_size = size
                    window.release(len(batch.prepared))
                    yield response
            finally:
                stopped.set()
            feeder.join()
            if failure:
                raise failure[0]

        return self._guard_stream("SubmitStream", context, handle)

    def _timed_requests(self, requests: Iterator[T], context: grpc.ServicerContext) -> Iterator[T]:
        """``requests`` read by a helper thread, so idle and total stream limits apply."""
        inbox: queue.Queue[tuple[T | None, BaseException | None, bool]] = queue.Queue(maxsize=1)
        stopped = threading.Event()

        def pull() -> None:
            try:
                for request in requests:
                    if not _put_while_wanted(inbox, (request, None, False), context, stopped):
                        return
            except Exception as exc:  # noqa: BLE001 - handed to the handler thread
                _put_while_wanted(inbox, (None, exc, True), context, stopped)
                return
            _put_while_wanted(inbox, (None, None, True), context, stopped)

        clock = _StreamClock(self._limits.stream_idle_seconds, self._limits.max_stream_seconds)
        threading.Thread(target=pull, name="anchorlog-stream-reader", daemon=True).start()
        try:
            while True:
                request, error, finished = clock.get(inbox, context)
                if error is not None:
                    raise error
                if finished:
                    return
                assert request is not None
                yield request
        finally:
            stopped.set()

    # ------------------------------------------------------------ query

    def _batch_tree(self, index: int) -> BatchTree:
        def build() -> tuple[BatchTree, int]:
            blob = self._store.batch_digests(index)
            tree = BatchTree(parse_batch_digests(blob, max_count=1 << 40))
            # The digests, the leaf level and all parent levels, and the kept top.
            return tree, 3 * len(blob) + tree.cached_bytes

        return self._batch_trees.get(index, build)

    def _provenance(
        self,
        digests: Iterable[bytes],
        size: int,
        sent: set[int],
        response: pb.ProvenanceResponse,
        *,
        hints: bool = True,
        columns: bool = False,
    ) -> None:
        """Add the answer about ``digests`` to ``response``: its records, then the entries
        not yet ``sent`` with their proofs, in index order. Without ``hints`` every
        record's status hint stays empty and no envelope is parsed. With ``columns``
        the digests found through one batch root only go in ``response.batched``.

        Everything is built in place: a message built on its own and then added to a
        repeated field is copied (most of the protobuf time of a per-sample answer).
        """
        needed: dict[int, StoredEntry] = {}
        digests = list(digests)
        if any(len(digest) != 32 for digest in digests):  # name the first culprit only then
            for position, digest in enumerate(digests):
                _digest(digest, f"digests[{position}]")
        # A handful of queries for the whole message, not four per digest.
        found_of = self._store.lookup_hits(digests, below=size)
        all_hits = {h.index for found in found_of.values() for h in found}
        entries = self._store.entries_by_index(all_hits)
        flagged = {h.index for found in found_of.values() for h in found if h.maybe_revoked}
        all_revocations = self._store.revocations(flagged, below=size) if flagged else {}
        # Many digests share their entries (a batch): one status hint per distinct shape.
        hint_of: dict[tuple[tuple[int, bool], ...], str] = {}

        def hint_for(shape: tuple[tuple[int, bool], ...]) -> str:
            hint = hint_of.get(shape)
            if hint is None:
                facts = [self._fact(entries[index], revoked) for index, revoked in shape]
                hint = hint_of[shape] = str(derive_status(facts))
            return hint

        trees: dict[int, BatchTree] = {}  # this message's batches, without the shared cache's lock

        def tree_of(index: int) -> BatchTree:
            tree = trees.get(index)
            if tree is None:
                tree = trees[index] = self._batch_tree(index)
            return tree

        # The batched columns: position in the query, entry, leaf, and each path packed.
        positions: list[int] = []
        batch_entries: list[int] = []
        leaves: list[int] = []
        path_hashes: list[bytes] = []
        add_record = response.digests.add
        for position, digest in enumerate(digests):
            if columns:
                found_list = found_of.get(digest, ())
                if len(found_list) == 1 and found_list[0].batched and not all_revocations.get(found_list[0].index):
                    index = found_list[0].index
                    tree = tree_of(index)
                    leaf = tree.position(digest)
                    positions.append(position)
                    batch_entries.append(index)
                    leaves.append(leaf)
                    path_hashes.append(tree.packed_hashes(leaf))
                    needed[index] = entries[index]
                    continue
            record = add_record(digest=digest)
            revoking: set[int] = set()
            shape = []
            for found in found_of.get(digest, ()):
                index = found.index
                hit = record.hits.add(entry_index=index)
                if found.batched:
                    tree = tree_of(index)
                    leaf = tree.position(digest)
                    batch_path = hit.batch_path
                    batch_path.leaf_index = leaf
                    batch_path.batch_size = tree.size
                    batch_path.hashes.extend(tree.hashes(leaf))
                needed[index] = entries[index]
                revoked_by = all_revocations.get(index)
                if revoked_by:
                    revoking.update(revoked_by)
                shape.append((index, bool(revoked_by)))
            if revoking:
                ordered = sorted(revoking)
                record.revocation_indices.extend(ordered)
                for index, stored in self._store.entries_by_index(ordered).items():
                    needed[index] = stored
            if hints:
                record.status_hint = hint_for(tuple(shape))
        if positions:
            batched = response.batched
            batched.positions.extend(positions)
            batched.entry_indices.extend(batch_entries)
            batched.leaf_indices.extend(leaves)
            batched.path_hashes = b"".join(path_hashes)
            if hints:
                for index in set(batch_entries):
                    batched.status_hints[index] = hint_for(((index, False),))
        new = sorted(i for i in needed if i not in sent)
        proofs = self._store.inclusion_proofs(new, size)
        sent.update(new)
        key_events: dict[int, pb.ProvedEntry] = {}
        if needed:
            key_events = {p.entry.index: p for p in self._key_event_proofs(size) if p.entry.index not in sent}
            sent.update(key_events)
        add_entry = response.entries.add
        append_entry = response.entries.append
        for i in sorted((*new, *key_events)) if key_events else new:
            known = key_events.get(i)
            if known is not None:
                append_entry(known)  # a copy: the kept message is never changed
                continue
            proved = add_entry()
            entry = proved.entry
            entry.index = i
            entry.data = needed[i].data
            inclusion = proved.inclusion
            inclusion.leaf_index = i
            inclusion.tree_size = size
            inclusion.hashes.extend(proofs[i])

    def _key_event_proofs(self, size: int) -> tuple[pb.ProvedEntry, ...]:
        """Every key event below ``size`` with its proof; the same for every answer at one size.

        Kept for the latest size asked (an append-only log has one tree per size).
        Callers copy them into their responses and never change them.
        """
        cached = self._key_events_at
        if cached is not None and cached[0] == size:
            return cached[1]
        indices = self._store.key_event_indices(below=size)
        stored = self._store.entries_by_index(indices)
        proofs = self._store.inclusion_proofs(indices, size)
        proved = tuple(
            pb.ProvedEntry(
                entry=pb.Entry(index=i, data=stored[i].data),
                inclusion=pb.InclusionProof(leaf_index=i, tree_size=size, hashes=proofs[i]),
            )
            for i in indices
        )
        self._key_events_at = (size, proved)
        return proved

    def _fact(self, stored: StoredEntry, revoked: bool) -> AttestationFact:
        # Only for the status hint: the key is found by the keyid hint, unverified.
        source = self._hint_sources.get(stored)
        compromised = any(
            k.compromised for k in self._registry.vendor_keys(source.vendor_id)
            if k.key_id in source.hinted_key_ids
        )
        return AttestationFact(
            entry_index=stored.index,
            vendor_id=source.vendor_id,
            claim=source.claim,
            performed_at=source.performed_at,
            revoked=revoked,
            key_compromised=compromised,
        )

    def GetProvenance(
        self, request: pb.GetProvenanceRequest, context: grpc.ServicerContext
    ) -> pb.ProvenanceResponse:
        def handle(principal: Principal) -> pb.ProvenanceResponse:
            _digest(request.digest, "digest")
            cp = self._latest()
            consistency = self._consistency(request.trusted_size, cp.size)
            response = pb.ProvenanceResponse(checkpoint=_checkpoint_pb(cp))
            self._provenance([request.digest], cp.size, set(), response)
            if consistency is not None:
                response.consistency.CopyFrom(consistency)
            return response

        return self._guard("GetProvenance", context, handle)

    def StreamProvenance(
        self, request_iterator: Iterator[pb.ProvenanceQuery], context: grpc.ServicerContext
    ) -> Iterator[pb.ProvenanceResponse]:
        def handle(principal: Principal) -> Iterator[pb.ProvenanceResponse]:
            cp = self._latest()
            sent: set[int] = set()
            first = True
            for query in self._timed_requests(request_iterator, context):
                self._still_wanted(context)
                if len(query.digests) > self._limits.max_digests_per_query:
                    raise Exhausted(
                        f"{len(query.digests)} digests in one message exceeds "
                        f"{self._limits.max_digests_per_query}"
                    )
                response = pb.ProvenanceResponse()
                if first:
                    response.checkpoint.CopyFrom(_checkpoint_pb(cp))
                    consistency = self._consistency(query.trusted_size, cp.size)
                    if consistency is not None:
                        response.consistency.CopyFrom(consistency)
                    first = False
                self._provenance(
                    query.digests, cp.size, sent, response,
                    hints=not query.omit_status_hints, columns=query.batched_columns,
                )
                yield response

        return self._guard_stream("StreamProvenance", context, handle)

    # ------------------------------------------------------------ reads

    def GetCheckpoint(
        self, request: pb.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> pb.GetCheckpointResponse:
        def handle(principal: Principal) -> pb.GetCheckpointResponse:
            cp = self._latest()
            response = pb.GetCheckpointResponse(
                checkpoint=_checkpoint_pb(cp), verifier_key=self._signer.verifier().vkey()
            )
            consistency = self._consistency(request.trusted_size, cp.size)
            if consistency is not None:
                response.consistency.CopyFrom(consistency)
            return response

        return self._guard("GetCheckpoint", context, handle)

    def GetConsistencyProof(
        self, request: pb.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> pb.ConsistencyProof:
        def handle(principal: Principal) -> pb.ConsistencyProof:
            size = self._latest().size
            if request.second_size > size:
                raise InvalidInput("second_size", f"{request.second_size} is beyond the log size {size}")
            if request.first_size > request.second_size:
                raise InvalidInput("first_size", "must not exceed second_size")
            return pb.ConsistencyProof(
                first_size=request.first_size,
                second_size=request.second_size,
                hashes=self._store.consistency_proof(request.first_size, request.second_size),
            )

        return self._guard("GetConsistencyProof", context, handle)

    def GetInclusionProof(
        self, request: pb.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> pb.GetInclusionProofResponse:
        def handle(principal: Principal) -> pb.GetInclusionProofResponse:
            cp = self._latest()
            size = request.tree_size or cp.size
            if size > cp.size:
                raise InvalidInput("tree_size", f"{size} is beyond the latest checkpoint size {cp.size}")
            if request.index >= size:
                raise InvalidInput("index", f"{request.index} is not below the tree size {size}")
            return pb.GetInclusionProofResponse(
                entry=self._proved(self._store.entry(request.index), size),
                checkpoint=_checkpoint_pb(cp),
            )

        return self._guard("GetInclusionProof", context, handle)

    # ------------------------------------------------------------ auditors

    def GetEntries(
        self, request: pb.GetEntriesRequest, context: grpc.ServicerContext
    ) -> pb.GetEntriesResponse:
        def handle(principal: Principal) -> pb.GetEntriesResponse:
            size = self._latest().size
            if request.end <= request.start:
                raise InvalidInput("end", "must be greater than start")
            if request.start >= size:
                raise InvalidInput("start", f"{request.start} is not below the log size {size}")
            end = min(request.end, size, request.start + self._limits.max_entries_page)
            page: list[pb.Entry] = []
            budget = self._limits.max_entries_bytes
            for stored in self._store.entries(request.start, end):
                budget -= len(stored.data)
                if page and budget < 0:
                    break
                page.append(pb.Entry(index=stored.index, data=stored.data))
            return pb.GetEntriesResponse(entries=page)

        return self._guard("GetEntries", context, handle)

    def GetBatchDigests(
        self, request: pb.GetBatchDigestsRequest, context: grpc.ServicerContext
    ) -> pb.GetBatchDigestsResponse:
        def handle(principal: Principal) -> pb.GetBatchDigestsResponse:
            if request.entry_index >= self._latest().size:
                raise InvalidInput("entry_index", f"{request.entry_index} is beyond the log")
            return pb.GetBatchDigestsResponse(digests=self._store.batch_digests(request.entry_index))

        return self._guard("GetBatchDigests", context, handle)

    def GetKeyHistory(
        self, request: pb.GetKeyHistoryRequest, context: grpc.ServicerContext
    ) -> pb.GetKeyHistoryResponse:
        def handle(principal: Principal) -> pb.GetKeyHistoryResponse:
            if request.vendor_id:
                check_vendor_id(request.vendor_id)
            cp = self._latest()
            entries = self._store.entries_by_index(self._store.key_event_indices(below=cp.size))
            proved = []
            for index in sorted(entries):
                stored = entries[index]
                if request.vendor_id:
                    event = open_key_event(decode_entry(stored.data).envelope, self._signer.public_key)
                    if event.vendor_id != request.vendor_id:
                        continue
                proved.append(self._proved(stored, cp.size))
            return pb.GetKeyHistoryResponse(checkpoint=_checkpoint_pb(cp), entries=proved)

        return self._guard("GetKeyHistory", context, handle)

    # ------------------------------------------------------------ admin

    def _check_key_event(self, event: KeyEvent) -> None:
        """Refuse an event that cannot apply, with the most precise status."""
        registry = self._registry
        if event.type is KeyEventType.VENDOR_CREATED:
            if event.vendor_id in registry.vendors:
                raise AlreadyExists(f"vendor {event.vendor_id!r} already exists")
            return
        if event.vendor_id not in registry.vendors:
            raise NotFound(f"unknown vendor {event.vendor_id!r}; create it first")
        if event.type in (KeyEventType.KEY_REGISTERED, KeyEventType.KEY_ROTATED):
            key_id = ed25519_key_id(event.public_key)
            if key_id in registry.keys:
                raise AlreadyExists(f"key {key_id} is already registered")
        if event.type in (KeyEventType.KEY_ROTATED, KeyEventType.KEY_REVOKED):
            target = event.old_key_id if event.type is KeyEventType.KEY_ROTATED else event.key_id
            key = registry.keys.get(target)
            if key is None or key.vendor_id != event.vendor_id:
                raise NotFound(f"vendor {event.vendor_id!r} has no key {target[:80]!r}")
        try:
            registry.check(event)
        except InvalidInput as exc:
            if event.type is KeyEventType.KEY_ROTATED and exc.field == "key_id":
                raise InvalidInput("old_key_id", exc.message) from None
            raise

    def _key_event(
        self, principal: Principal, event: KeyEvent, context: grpc.ServicerContext
    ) -> pb.KeyEventResponse:
        self._check_key_event(event)
        self._still_wanted(context)
        envelope = key_event_envelope(
            event, self._signer.sign, ed25519_key_id(self._signer.public_key)
        )
        payload_pae = pae(PAYLOAD_TYPE_INTOTO, event.statement_bytes())
        item = SequencedItem(
            pending=_key_event_pending(principal.name, envelope, payload_pae), key_event=event
        )
        (answer,) = self._sequencer.submit([item]).result()
        if isinstance(answer, BaseException):
            raise answer
        result, position = answer
        key_id = ""
        if event.type in (KeyEventType.KEY_REGISTERED, KeyEventType.KEY_ROTATED):
            key_id = ed25519_key_id(event.public_key)
        elif event.type is KeyEventType.KEY_REVOKED:
            key_id = event.key_id
        return pb.KeyEventResponse(receipt=self._receipt(result, position), key_id=key_id)

    @staticmethod
    def _validity(not_before: int, not_after: int) -> tuple[datetime, datetime | None]:
        now = datetime.now(UTC).replace(microsecond=0)
        if not_before < 0 or not_after < 0:
            raise InvalidInput("not_before", "times must be non-negative Unix seconds")
        start = datetime.fromtimestamp(not_before, UTC) if not_before else now
        end = datetime.fromtimestamp(not_after, UTC) if not_after else None
        if end is not None and end <= start:
            raise InvalidInput("not_after", "must be after not_before")
        return start, end

    def CreateVendor(self, request: pb.CreateVendorRequest, context: grpc.ServicerContext) -> pb.KeyEventResponse:
        def handle(principal: Principal) -> pb.KeyEventResponse:
            check_vendor_id(request.vendor_id)
            if len(request.display_name) > 200:
                raise InvalidInput("display_name", "must be at most 200 characters")
            event = KeyEvent(
                type=KeyEventType.VENDOR_CREATED,
                vendor_id=request.vendor_id,
                display_name=request.display_name,
            )
            return self._key_event(principal, event, context)

        return self._guard("CreateVendor", context, handle)

    def RegisterKey(self, request: pb.RegisterKeyRequest, context: grpc.ServicerContext) -> pb.KeyEventResponse:
        def handle(principal: Principal) -> pb.KeyEventResponse:
            check_vendor_id(request.vendor_id)
            start, end = self._validity(request.not_before, request.not_after)
            event = KeyEvent(
                type=KeyEventType.KEY_REGISTERED,
                vendor_id=request.vendor_id,
                public_key=check_public_key(request.public_key, "public_key"),
                not_before=start,
                not_after=end,
            )
            return self._key_event(principal, _normalize(event), context)

        return self._guard("RegisterKey", context, handle)

    def RotateKey(self, request: pb.RotateKeyRequest, context: grpc.ServicerContext) -> pb.KeyEventResponse:
        def handle(principal: Principal) -> pb.KeyEventResponse:
            check_vendor_id(request.vendor_id)
            if not request.old_key_id:
                raise InvalidInput("old_key_id", "required")
            start, end = self._validity(0, request.not_after)
            event = KeyEvent(
                type=KeyEventType.KEY_ROTATED,
                vendor_id=request.vendor_id,
                public_key=check_public_key(request.new_public_key, "new_public_key"),
                old_key_id=request.old_key_id,
                not_before=start,
                not_after=end,
            )
            return self._key_event(principal, _normalize(event), context)

        return self._guard("RotateKey", context, handle)

    def RevokeKey(self, request: pb.RevokeKeyRequest, context: grpc.ServicerContext) -> pb.KeyEventResponse:
        def handle(principal: Principal) -> pb.KeyEventResponse:
            check_vendor_id(request.vendor_id)
            if not request.key_id:
                raise InvalidInput("key_id", "required")
            if len(request.reason) > 1000:
                raise InvalidInput("reason", "must be at most 1000 characters")
            event = KeyEvent(
                type=KeyEventType.KEY_REVOKED,
                vendor_id=request.vendor_id,
                key_id=request.key_id,
                compromised=request.compromised,
                reason=request.reason,
            )
            return self._key_event(principal, event, context)

        return self._guard("RevokeKey", context, handle)

    def IssueToken(self, request: pb.IssueTokenRequest, context: grpc.ServicerContext) -> pb.IssueTokenResponse:
        def handle(principal: Principal) -> pb.IssueTokenResponse:
            role = _PB_TO_ROLE.get(request.role)
            if role is None:
                raise InvalidInput("role", "must be one of ROLE_ADMIN, ROLE_VENDOR, ROLE_READER, ROLE_AUDITOR")
            if role is Role.VENDOR:
                if request.principal not in self._registry.vendors:
                    raise InvalidInput("principal", f"no vendor {request.principal!r}; create it first")
            else:
                check_vendor_id(request.principal, "principal")
            token = self._tokens.issue(request.principal, role)
            log.info("issued %s token %s for %s", role, token_id(token), request.principal)
            return pb.IssueTokenResponse(token=token, token_id=token_id(token))

        return self._guard("IssueToken", context, handle)

    def RevokeToken(
        self, request: pb.RevokeTokenRequest, context: grpc.ServicerContext
    ) -> pb.RevokeTokenResponse:
        def handle(principal: Principal) -> pb.RevokeTokenResponse:
            revoked = self._tokens.revoke(_token_selector(request))
            # Ids only: a token (even a revoked one) never reaches the log.
            log.info("%s revoked token(s) %s", principal.name, ", ".join(revoked))
            return pb.RevokeTokenResponse(token_ids=revoked)

        return self._guard("RevokeToken", context, handle)

    def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.ServicerContext) -> pb.WhoAmIResponse:
        def handle(principal: Principal) -> pb.WhoAmIResponse:
            return pb.WhoAmIResponse(principal=principal.name, role=_ROLE_TO_PB[principal.role])

        return self._guard("WhoAmI", context, handle)


def _hint_fields(envelope_bytes: bytes) -> tuple[Claim, datetime, set[str]]:
    """The claim, time and signature keyids of a logged attestation, for the status hint.

    Logged envelopes passed the strict parse and the full predicate validation
    before they were appended, so the plain C JSON parser reads them the same
    and the hint needs only the fields it uses, not the whole predicate check
    again (a third of a per-sample lookup's server time). Anything unexpected
    goes through the strict parse.
    """
    try:
        compact = _COMPACT_ENVELOPE.fullmatch(envelope_bytes)
        if compact is not None:  # one signature; the regex took the payload in the base64 alphabet
            payload_b64, _, keyid, _ = compact.groups()
            payload, hinted = binascii.a2b_base64(payload_b64, strict_mode=True), {keyid.decode("ascii")}
        else:
            doc = json.loads(envelope_bytes)
            payload = b64decode_either(doc["payload"], "envelope.payload")
            hinted = {s.get("keyid", "") for s in doc["signatures"]}
        predicate = json.loads(payload)["predicate"]
        return Claim(predicate["claim"]), parse_time(predicate["performedAt"], "predicate.performedAt"), hinted
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, InvalidInput):
        envelope = Envelope.parse(envelope_bytes)
        statement_parsed = parse_statement(envelope.payload, max_subjects=1 << 30)
        parsed = ProvenancePredicate.parse(statement_parsed.predicate)
        return parsed.claim, parsed.performed_at, {s.keyid for s in envelope.signatures}


def _token_selector(request: pb.RevokeTokenRequest) -> TokenSelector:
    given = [name for name in ("token_id", "token", "principal") if getattr(request, name)]
    if len(given) != 1:
        raise InvalidInput("request", "set exactly one of token_id, token, principal")
    if request.token_id:
        if not is_token_id(request.token_id):
            raise InvalidInput("token_id", f"must be {TOKEN_ID_HEX_CHARS} lowercase hex characters")
        return TokenSelector(token_id=request.token_id)
    if request.token:
        if request.token != request.token.strip() or not request.token.isprintable():
            raise InvalidInput("token", "must be the bare token, without surrounding spaces or control characters")
        return TokenSelector(token=request.token)
    check_vendor_id(request.principal, "principal")
    return TokenSelector(principal=request.principal)


def _normalize(event: KeyEvent) -> KeyEvent:
    """The in-memory event must equal what a replay reads back from the log."""
    return replace(event, not_after=event.not_after or NO_EXPIRY)


def _key_event_pending(submitter: str, envelope: bytes, payload_pae: bytes) -> PendingEntry:
    return PendingEntry(
        kind=EntryKind.KEY_EVENT,
        submitter=submitter,
        envelope=envelope,
        dedup_key=dedup_key(submitter, payload_pae),
    )
