"""``LedgerClient``: talk to an anchorlog service and verify every answer.

Nothing is returned before it is verified against the pinned log key: checkpoint
signatures, consistency with the last checkpoint this client trusted (kept in a
state file), inclusion proofs, batch paths and DSSE signatures against the key
registry replayed from the log.

What a single client cannot prove is completeness: that the server named every
entry about a digest and every key event. Omissions are what auditors catch by
mirroring the whole log (``anchorlog.client.audit``); everything the server did
send is proved.
"""

from __future__ import annotations

import enum
import hashlib
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Self

import grpc
from anchorlog.client.receipts import Bundle, Receipt
from anchorlog.client.signature_process import SignatureProcess, pack_check
from anchorlog.client.state import (
    advance_trusted,
    default_state_path,
    default_tofu_state_path,
    load_trusted,
    pinned_vkey,
)
from anchorlog.client.verify import (
    BatchPathError,
    CheckpointError,
    CheckpointMemo,
    DigestClaim,
    InclusionMemo,
    InclusionProofError,
    KeyStateMemo,
    OpenedAttestation,
    PredicateMemo,
    SampleProvenance,
    VerifiedAttestation,
    VerifiedCheckpoint,
    VerifiedEntry,
    attestation_named,
    check_batched_sample,
    check_checkpoint,
    check_consistency,
    check_direct_sample,
    check_entry,
    check_provenance,
    finish_attestation,
    open_attestation_entry,
    signer_of,
)
from anchorlog.ledger.batch import BatchPath
from anchorlog.ledger.dsse import Envelope, ed25519_key_id
from anchorlog.ledger.entry import EntryKind, decode_entry
from anchorlog.ledger.errors import (
    InconsistentLogError,
    InvalidInput,
    LedgerError,
    VerificationError,
)
from anchorlog.ledger.keys import KeyEvent, KeyEventType, KeyRegistry, VendorKey, open_key_event
from anchorlog.ledger.merkle import inclusion_proof_length
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import Claim
from anchorlog.ledger.status import Status
from anchorlog.v1 import anchorlog_pb2 as pb
from anchorlog.v1 import anchorlog_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

ROLES = {"admin": pb.ROLE_ADMIN, "vendor": pb.ROLE_VENDOR, "reader": pb.ROLE_READER, "auditor": pb.ROLE_AUDITOR}
ROLE_NAMES = {v: k for k, v in ROLES.items()}
MAX_MESSAGE_BYTES = 64 << 20
# How often, at most, a newly trusted checkpoint is written to the state file.
STATE_SAVE_INTERVAL_S = 0.5
TOKEN_ID_HEX_CHARS = 16
# SubmitStream packing: items and bytes per message. Well below the service's
# default window (2,048 items per stream), so several messages are in flight.
STREAM_MESSAGE_ITEMS = 256
STREAM_MESSAGE_BYTES = 4 << 20
# Verified key-event entries remembered across lookups (a registry has few).
KEY_EVENT_MEMO = 4096
# Attestation entries verified by earlier single lookups, kept for later ones.
ATTESTATION_MEMO = 1024
# A streamed answer naming at least this many new attestations has their signatures
# checked by VERIFIER_THREADS threads besides the caller's, SIGNATURE_SLICE at a time.
PARALLEL_SIGNATURES = 16
# A stream answer with at least this many such signatures starts the signature
# process (client/signature_process.py) if it is not running yet: spawning it
# costs a new interpreter, worth it only for long streams.
PROCESS_SIGNATURES = 128
# Seconds the signature process may take to answer a message, and to read one (it
# waits for each message idle, so a healthy one reads at once), before it is ended
# (and the threads check instead).
PROCESS_TIMEOUT = 60.0
PROCESS_WRITE_TIMEOUT = 5.0
# An entry's second byte is its kind (ledger/entry.py).
_KEY_EVENT_KIND = bytes((EntryKind.KEY_EVENT,))
# Seconds to wait for the answer the process owes once this thread took every check.
OWED_ANSWER_TIMEOUT = 1.0
# Whether the calling thread, rather than wait for the process's verdicts, makes the
# answer's last checks itself (taken from the end; see _collect). Off only in tests.
TAKE_CHECKS = True
VERIFIER_THREADS = max(1, (os.cpu_count() or 2) - 1)
SIGNATURE_SLICE = 8


def token_id_of(token: str) -> str:
    """A token's public id (first 16 hex characters of its SHA-256), as the service names it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:TOKEN_ID_HEX_CHARS]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: str


class LedgerRpcError(LedgerError):
    """The service refused a request; ``code`` is the gRPC status code name."""

    def __init__(self, code: str, message: str, fields: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = tuple(fields)


def _status_details(code: str, message: str, details: Iterable[object]) -> LedgerRpcError:
    fields: list[tuple[str, str]] = []
    for detail in details:
        bad = error_details_pb2.BadRequest()
        if detail.Is(bad.DESCRIPTOR):  # type: ignore[attr-defined]
            detail.Unpack(bad)  # type: ignore[attr-defined]
            fields.extend((v.field, v.description) for v in bad.field_violations)
    return LedgerRpcError(code, message, fields)


def rpc_error(exc: grpc.RpcError) -> LedgerRpcError:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    code = exc.code().name  # type: ignore[attr-defined]
    if status is None:
        return LedgerRpcError(code, exc.details() or "")  # type: ignore[attr-defined]
    return _status_details(code, status.message, status.details)


@dataclass(frozen=True)
class Submission:
    envelope: bytes
    batch_digests: bytes = b""


@dataclass(frozen=True)
class SubmitOutcome:
    position: int
    receipt: Receipt | None = None
    error: LedgerRpcError | None = None

    @property
    def ok(self) -> bool:
        return self.receipt is not None


def _shown(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex() or "(none)"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return repr(value)


def _registered(
    kind: KeyEventType, vendor_id: str, public_key: bytes, not_before: int, not_after: int
) -> KeyEvent:
    """The registration a request asks for; an unset time (0) is left to the service."""
    return KeyEvent(
        kind, vendor_id, public_key=public_key,
        not_before=datetime.fromtimestamp(not_before, UTC) if not_before > 0 else None,
        not_after=datetime.fromtimestamp(not_after, UTC) if not_after > 0 else None,
    )


def _submit_request(items: Sequence[Submission], trusted_size: int = 0) -> pb.SubmitRequest:
    """Items added in place: building each as its own message and copying it in costs twice as much."""
    request = pb.SubmitRequest(trusted_size=trusted_size)
    add = request.items.add
    for item in items:
        if item.batch_digests:
            add(envelope=item.envelope, batch_digests=item.batch_digests)
        else:
            add(envelope=item.envelope)
    return request


def _misanswered(positions: Sequence[int], start: int, count: int) -> str:
    """Why a SubmitStream response does not answer exactly the items of its message, in order."""
    seen: set[int] = set()
    for p in positions:
        if p in seen:
            return f"server answered item {p} twice"
        seen.add(p)
        if not start <= p < start + count:
            return f"server answered item {p}, not one of the message's items {start}..{start + count - 1}"
    if len(positions) < count:
        return (
            f"server answered {len(positions)} of the {count} items of a message (items "
            f"{start}..{start + count - 1}): the rest have no receipt"
        )
    return f"server answered the items {start}..{start + count - 1} out of order"


class _ReadyItems:
    """Items pulled from an iterable by a helper thread, handed out in chunks of what is ready.

    A stream message then carries every item already produced (up to a count
    and a byte budget) without waiting for a slow producer to make more.
    """

    def __init__(self, items: Iterable[Submission], capacity: int) -> None:
        self._buffer: deque[Submission] = deque()
        self._capacity = capacity
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pull, args=(iter(items),), daemon=True,
                                        name="anchorlog-submit-items")
        self._thread.start()

    def _pull(self, items: Iterator[Submission]) -> None:
        try:
            for item in items:
                with self._changed:
                    while len(self._buffer) >= self._capacity and not self._closed:
                        self._changed.wait()
                    if self._closed:
                        return
                    self._buffer.append(item)
                    self._changed.notify_all()
        except BaseException as exc:  # noqa: BLE001 - raised to the caller of submit_stream
            self._error = exc
        finally:
            with self._changed:
                self._done = True
                self._changed.notify_all()

    def take(self, max_items: int, max_bytes: int) -> list[Submission]:
        """Wait for at least one item; return what is ready (empty once the items ran out)."""
        with self._changed:
            while not self._buffer and not self._done and not self._closed:
                self._changed.wait()
            if self._error is not None or self._closed:
                return []
            chunk: list[Submission] = []
            size = 0
            while self._buffer and len(chunk) < max_items:
                item = self._buffer[0]
                cost = len(item.envelope) + len(item.batch_digests)
                if chunk and size + cost > max_bytes:
                    break
                chunk.append(self._buffer.popleft())
                size += cost
            self._changed.notify_all()
            return chunk

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def reraise(self) -> None:
        """The producer's own exception, if iterating the items failed."""
        if self._error is not None:
            raise self._error


@dataclass
class _StreamContext:
    checkpoint: VerifiedCheckpoint | None = None
    entries: dict[int, VerifiedEntry] = field(default_factory=dict)
    proofs: dict[int, tuple[bytes, tuple[bytes, ...]]] = field(default_factory=dict)
    registry: KeyRegistry | None = None
    claims: dict[bytes, DigestClaim] = field(default_factory=dict)
    keep_claims: bool = True  # only a bundle needs every claim; a million-sample stream must not hold them
    # Attestation entries verified against ``registry``, and statuses derived from
    # them; cleared when it is rebuilt.
    attestations: dict[int, VerifiedAttestation] = field(default_factory=dict)
    statuses: dict[tuple[tuple[int, bool], ...], Status] = field(default_factory=dict)
    # Status of one unrevoked attestation by its claim and key compromise (see check_direct_sample).
    single_statuses: dict[tuple[Claim, bool], Status] = field(default_factory=dict)
    # Batch root and signed size of each attestation (see check_batched_sample).
    batch_roots: dict[int, tuple[VerifiedAttestation, bytes, int, tuple[VerifiedAttestation], Status]] = field(
        default_factory=dict
    )
    # Single lookups share verified attestations across calls (see LedgerClient._attested).
    remember: bool = False
    # Answers opened so far, and the one each entry (by index) first arrived in: an
    # answer finished after the next was opened sees only entries it could have seen.
    answers: int = 0
    arrival: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _OpenAnswer:
    """One answer read and its entries proved included; the signatures of its new
    attestations (``opened``) not checked yet. Holds the registry and the stream's
    verified attestations and statuses as they were for this answer: a later
    answer with new key events replaces them in the stream, not here."""

    items: list[DigestClaim | tuple[bytes, int, str] | tuple[bytes, int, int, int, tuple[bytes, ...], str]]
    columns: _BatchedColumns | None
    asked: Sequence[bytes] | None
    checkpoint: VerifiedCheckpoint
    registry: KeyRegistry
    entries: Mapping[int, VerifiedEntry]
    attestations: dict[int, VerifiedAttestation]
    statuses: dict[tuple[tuple[int, bool], ...], Status]
    single_statuses: dict[tuple[Claim, bool], Status]
    opened: list[OpenedAttestation]


class _EntriesAsOf(Mapping[int, VerifiedEntry]):
    """The stream's verified entries as answer ``serial`` left them: one that first arrived
    in a later answer is not there (one sent again later is: it is the same entry). An
    answer finished after the next one was opened (see provenance_many) is checked with
    the entries it had itself."""

    def __init__(self, entries: dict[int, VerifiedEntry], arrival: dict[int, int], serial: int) -> None:
        self._entries, self._arrival, self._serial = entries, arrival, serial

    def __getitem__(self, index: int) -> VerifiedEntry:
        if self._arrival.get(index, self._serial + 1) > self._serial:
            raise KeyError(index)
        return self._entries[index]

    def __iter__(self) -> Iterator[int]:
        return (i for i in list(self._entries) if self._arrival.get(i, self._serial + 1) <= self._serial)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class _SentAnswer:
    """An answer whose signature checks (``positions`` in its ``opened``) went to ``process``."""

    answer: _OpenAnswer
    expected: Sequence[bytes]
    number: int
    process: SignatureProcess
    positions: list[int]


@dataclass(frozen=True)
class _BatchedColumns:
    """``ProvenanceResponse.batched``, read and checked for shape (not yet verified)."""

    positions: list[int]
    entry_indices: list[int]
    leaf_indices: list[int]
    path_hashes: bytes
    status_hints: dict[int, str]

    @classmethod
    def read(
        cls, response: pb.ProvenanceResponse, asked: Sequence[bytes] | None, keep_claims: bool
    ) -> _BatchedColumns:
        if asked is None or keep_claims:
            raise VerificationError("the server answered in batched columns, which this query did not ask for")
        given = response.batched
        columns = cls(
            positions=list(given.positions),
            entry_indices=list(given.entry_indices),
            leaf_indices=list(given.leaf_indices),
            path_hashes=given.path_hashes,
            status_hints=dict(given.status_hints),
        )
        counts = {len(columns.positions), len(columns.entry_indices), len(columns.leaf_indices)}
        if len(counts) != 1:
            raise VerificationError(
                f"batched answer: {len(columns.positions)} positions, {len(columns.entry_indices)} entries and "
                f"{len(columns.leaf_indices)} leaves differ in number"
            )
        positions = columns.positions
        if not all(map(operator.lt, positions, islice(positions, 1, None))) or (
            positions and positions[-1] >= len(asked)
        ):
            raise VerificationError(
                f"batched answer: positions are not ascending below the {len(asked)} digests asked"
            )
        answered = len(positions) + len(response.digests)
        if answered != len(asked):
            raise VerificationError(f"asked about {len(asked)} digests, the server answered {answered}")
        return columns

    def merge(self, records: list[SampleProvenance], batched: list[SampleProvenance]) -> list[SampleProvenance]:
        """Both answers in the query's order: the batched ones at their positions, the records in between."""
        merged: list[SampleProvenance] = []
        taken = 0
        for position, result in zip(self.positions, batched, strict=True):
            gap = position - len(merged)
            merged.extend(records[taken : taken + gap])
            taken += gap
            merged.append(result)
        merged.extend(records[taken:])
        return merged


class LedgerClient:
    """A verifying client for one anchorlog log.

    ``log_key`` is the log's verifier key string (``origin+keyid+base64``),
    pinned out of band. Without it the client refuses to start unless
    ``trust_on_first_use=True``: then the key pinned in the state file is used
    if there is one, else the key the server reports is accepted (after it
    verifies the server's own checkpoint) and pinned in the state file, so only
    the very first answer is taken on faith.

    The state file keeps the last checkpoint this client trusted; every later
    checkpoint must be proved consistent with it, or the call raises
    :class:`~anchorlog.ledger.errors.InconsistentLogError`.

    ``signature_process`` lets long ``provenance_many`` streams check signatures
    in a separate process while this thread reads the next answer (see
    :mod:`anchorlog.client.signature_process`); False keeps them in threads.
    Same verdicts either way. ``close()`` ends it.
    """

    def __init__(
        self,
        address: str,
        *,
        token: str,
        log_key: str | None = None,
        state_path: Path | None = None,
        root_certificates: bytes | None = None,
        timeout: float = 60.0,
        trust_on_first_use: bool = False,
        signature_process: bool = True,
    ) -> None:
        self._timeout = timeout
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.LedgerStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)
        try:
            if log_key is None:
                if not trust_on_first_use:
                    raise ValueError(
                        "the log's verifier key is required; pass log_key (pinned out of band) "
                        "or trust_on_first_use=True"
                    )
                state_path = state_path or default_tofu_state_path(address)
                log_key = pinned_vkey(state_path) or self._fetch_vkey_tofu()
            self.verifier = NoteVerifier.from_vkey(log_key)
            # Receipts of one sequencer group share a checkpoint: verify its signature once.
            self._checkpoints = CheckpointMemo(self.verifier)
            self._key_states = KeyStateMemo(self.verifier)
            # Audit paths of one tree (the log's at a checkpoint, a batch's) share their top.
            self._paths = InclusionMemo()
            # Key-event entries verified included: (index, size, root) -> (entry, proof).
            self._key_event_entries: dict[tuple[int, int, bytes], tuple[VerifiedEntry, tuple[bytes, ...]]] = {}
            # Attestations verified by earlier single lookups: (index, leaf hash) ->
            # (the key registry they were checked against, the result). A signature
            # check is a function of the entry's bytes (the leaf hash is computed from
            # the bytes received) and of the registry; the registry object is held, so
            # `is` identifies it. Inclusion is still proved on every call.
            self._attested: dict[tuple[int, bytes], tuple[KeyRegistry, VerifiedAttestation]] = {}
            self.state_path = state_path or default_state_path(self.verifier)
            self._trusted = load_trusted(self.state_path, self.verifier)
            if self._trusted is None and trust_on_first_use:
                self.checkpoint()  # pins the key and the first checkpoint
        except BaseException:
            self._channel.close()
            raise
        # (size, root) of checkpoints already proved consistent with the trusted one.
        self._consistent: set[tuple[int, bytes]] = set()
        # A trusted checkpoint not yet written to the state file (see _advance).
        self._unsaved: VerifiedCheckpoint | None = None
        self._saved_at = time.monotonic()
        self._principal: str | None = None
        # Threads that check signatures alongside the caller's (see _signers); made on first use.
        self._verifiers: ThreadPoolExecutor | None = None
        self._verifiers_made = threading.Lock()
        self._predicates = PredicateMemo()
        # The process that checks a stream answer's signatures while this thread reads
        # the next answer (see provenance_many); started on first need, one stream at a time.
        self._use_signature_process = signature_process
        self._signature_process: SignatureProcess | None = None
        self._signature_process_busy = threading.Lock()

    def _fetch_vkey_tofu(self) -> str:
        response = self._call("GetCheckpoint", pb.GetCheckpointRequest())
        assert isinstance(response, pb.GetCheckpointResponse)
        try:
            verifier = NoteVerifier.from_vkey(response.verifier_key)
        except LedgerError as exc:
            raise CheckpointError(f"the server's verifier key is malformed: {exc}") from exc
        check_checkpoint(response.checkpoint.note, verifier)
        return verifier.vkey()

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        try:
            self.save_state()
        finally:
            self._channel.close()
            if self._verifiers is not None:
                self._verifiers.shutdown()
            if self._signature_process is not None:
                self._signature_process.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, request: object) -> object:
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc) from None

    @property
    def trusted_checkpoint(self) -> VerifiedCheckpoint | None:
        return self._trusted

    def _advance(self, note: bytes, proof: Sequence[bytes]) -> VerifiedCheckpoint:
        """Verify a new checkpoint against the trusted one (with ``proof``) and trust it."""
        checkpoint = self._checkpoints.check(note)
        known = self._trusted
        check_consistency(known, checkpoint, proof)
        if known is None or checkpoint.size > known.size:
            if known is None:
                # The first trust (and a TOFU pin) is written at once.
                self._trusted = advance_trusted(
                    self.state_path, self.verifier, checkpoint, self.consistency_proof
                )
                self._saved_at = time.monotonic()
                return checkpoint
            # Verified and trusted now; written to the state file at most every
            # STATE_SAVE_INTERVAL_S and on close. An fsync per receipt made streams
            # wait on the disk, and a crash in between only leaves an older
            # checkpoint in the file, which is still a prefix of this one.
            self._trusted = checkpoint
            self._unsaved = checkpoint
            if time.monotonic() - self._saved_at >= STATE_SAVE_INTERVAL_S:
                self.save_state()
        return checkpoint

    def save_state(self) -> None:
        """Write the newest trusted checkpoint to the state file now (also done on close).

        Another client sharing the file may have moved it: it is never rolled
        back, and a checkpoint that is not consistent with it raises
        :class:`~anchorlog.ledger.errors.InconsistentLogError`. When the service
        cannot be reached for the proof this needs, the file is left as it is.
        """
        pending, self._unsaved = self._unsaved, None
        self._saved_at = time.monotonic()
        if pending is None:
            return
        try:
            stored = advance_trusted(self.state_path, self.verifier, pending, self.consistency_proof)
        except LedgerRpcError:
            # The proof from the file's checkpoint could not be fetched (the service
            # went away). The file keeps an older checkpoint, a prefix of the one
            # trusted in memory; try again on the next save.
            self._unsaved = pending
            return
        if self._trusted is None or stored.size > self._trusted.size:
            self._trusted = stored

    def _trust(self, note: bytes) -> VerifiedCheckpoint:
        """Verify any checkpoint the server sent and prove it consistent with the trusted one.

        Newer checkpoints replace the trusted one; older ones must be a prefix of it.
        """
        checkpoint = self._checkpoints.check(note)
        trusted = self._trusted
        key = (checkpoint.size, checkpoint.root_hash)
        if trusted is None or trusted.size == 0:
            return self._advance(note, ())
        if key in self._consistent:
            return checkpoint
        if checkpoint.size == trusted.size:
            check_consistency(trusted, checkpoint, ())
            return checkpoint
        if checkpoint.size > trusted.size:
            proof = self.consistency_proof(trusted.size, checkpoint.size)
            return self._advance(note, proof)
        if checkpoint.size > 0:
            proof = self.consistency_proof(checkpoint.size, trusted.size)
            try:
                check_consistency(checkpoint, trusted, proof)
            except InconsistentLogError as exc:
                raise InconsistentLogError(
                    f"an older checkpoint (size {checkpoint.size}) the log sent is not a prefix of "
                    f"the trusted one (size {trusted.size}): {exc}"
                ) from exc
        self._consistent.add(key)
        return checkpoint

    def _refuse_rollback(self, exc: LedgerRpcError) -> NoReturn:
        """The server refused our trusted size: a log smaller than what we trust is a rollback."""
        if exc.code == "INVALID_ARGUMENT" and any(f == "trusted_size" for f, _ in exc.fields):
            response = self._call("GetCheckpoint", pb.GetCheckpointRequest())
            assert isinstance(response, pb.GetCheckpointResponse)
            self._advance(response.checkpoint.note, ())  # raises InconsistentLogError when smaller
        raise exc

    def _trusted_size(self) -> int:
        return self._trusted.size if self._trusted else 0

    # ------------------------------------------------------------ reads

    def checkpoint(self) -> VerifiedCheckpoint:
        """The latest checkpoint, proved consistent with the trusted one."""
        try:
            response = self._call(
                "GetCheckpoint", pb.GetCheckpointRequest(trusted_size=self._trusted_size())
            )
        except LedgerRpcError as exc:
            self._refuse_rollback(exc)
        assert isinstance(response, pb.GetCheckpointResponse)
        return self._advance(response.checkpoint.note, list(response.consistency.hashes))

    def whoami(self) -> tuple[str, str]:
        response = self._call("WhoAmI", pb.WhoAmIRequest())
        assert isinstance(response, pb.WhoAmIResponse)
        return response.principal, ROLE_NAMES.get(response.role, "unknown")

    def _absorb(
        self, response: pb.ProvenanceResponse, ctx: _StreamContext, asked: Sequence[bytes] | None = None
    ) -> list[SampleProvenance]:
        """The verified results of one answer, in the query's order (``asked``, the
        digests of a query that asked for batched columns; None for one that did not)."""
        answer = self._open_answer(response, ctx, asked)
        return self._finish_answer(answer, ctx, self._signers(answer.opened))

    def _open_answer(
        self, response: pb.ProvenanceResponse, ctx: _StreamContext, asked: Sequence[bytes] | None
    ) -> _OpenAnswer:
        """The first half of ``_absorb``: the answer read, its entries proved included,
        its new attestations opened for their signature checks (not yet made)."""
        serial = ctx.answers = ctx.answers + 1
        if response.HasField("checkpoint"):
            ctx.checkpoint = self._advance(response.checkpoint.note, list(response.consistency.hashes))
        if ctx.checkpoint is None:
            raise VerificationError("provenance answer without a checkpoint")
        new_key_events = False
        checkpoint = ctx.checkpoint
        received: list[VerifiedEntry] = []
        for proved in response.entries:
            index, data = proved.entry.index, proved.entry.data
            hashes = tuple(proved.inclusion.hashes)
            # Every answer repeats the key events: the same bytes with the same proof
            # for the same checkpoint is the same check, done once. (Only bytes whose
            # kind byte says key event are looked up; anything else is checked in full.)
            seen = (index, checkpoint.size, checkpoint.root_hash)
            known = self._key_event_entries.get(seen) if data[1:2] == _KEY_EVENT_KIND else None
            if (
                known is not None and known[0].data == data and known[1] == hashes
                and proved.inclusion.tree_size == checkpoint.size
            ):
                entry = known[0]
            else:
                entry = check_entry(
                    index, data, hashes, proved.inclusion.tree_size, checkpoint, self._paths
                )
                if entry.entry.kind is EntryKind.KEY_EVENT:
                    if len(self._key_event_entries) >= KEY_EVENT_MEMO:
                        self._key_event_entries.clear()
                    self._key_event_entries[seen] = (entry, hashes)
            ctx.entries[entry.index] = entry
            # The first answer an entry came in: sent again later, it is the same entry
            # (the same data at the same index of consistent checkpoints).
            ctx.arrival.setdefault(entry.index, serial)
            if ctx.keep_claims:  # a bundle carries the proofs
                ctx.proofs[entry.index] = (entry.data, hashes)
            received.append(entry)
            new_key_events |= entry.entry.kind is EntryKind.KEY_EVENT
        if new_key_events or ctx.registry is None:
            ctx.registry = self._key_states.state(ctx.entries.values())
            # New objects, not cleared ones: an earlier answer still being finished
            # (see provenance_many) keeps what was verified against its registry.
            ctx.attestations = {}
            ctx.statuses = {}
            ctx.single_statuses = {}
        if ctx.remember:
            for entry in received:
                known_attestation = self._attested.get((entry.index, entry.leaf_hash))
                if known_attestation is not None and known_attestation[0] is ctx.registry:
                    ctx.attestations[entry.index] = known_attestation[1]
        # One item per record: a DigestClaim, or, for the usual answers (one hit, no
        # revocation; not for bundles, which keep claims), its fields as a tuple:
        # (digest, entry, hint) for a sample with an entry of its own, checked by
        # check_direct_sample; with the batch path's fields for a sample attested
        # in bulk, checked by check_batched_sample. Anything those checks do not
        # accept goes through check_provenance.
        items: list[DigestClaim | tuple[bytes, int, str] | tuple[bytes, int, int, int, tuple[bytes, ...], str]] = []
        named: set[int] = set()
        plain = not ctx.keep_claims
        for record in response.digests:
            record_hits = record.hits
            if plain and len(record_hits) == 1 and not record.revocation_indices:
                hit = record_hits[0]
                index = hit.entry_index
                named.add(index)
                if hit.HasField("batch_path"):
                    given = hit.batch_path
                    items.append((
                        bytes(record.digest), index, given.leaf_index, given.batch_size, tuple(given.hashes),
                        record.status_hint,
                    ))
                else:
                    items.append((bytes(record.digest), index, record.status_hint))
                continue
            hits = []
            for hit in record_hits:
                path = None
                if hit.HasField("batch_path"):
                    given = hit.batch_path
                    path = BatchPath(
                        leaf_index=given.leaf_index, batch_size=given.batch_size, hashes=tuple(given.hashes)
                    )
                hits.append((hit.entry_index, path))
                named.add(hit.entry_index)
            claim = DigestClaim(
                digest=bytes(record.digest),
                hits=tuple(hits),
                revocation_indices=tuple(record.revocation_indices),
                status_hint=record.status_hint,
            )
            if ctx.keep_claims:
                ctx.claims[claim.digest] = claim
            items.append(claim)
        columns = _BatchedColumns.read(response, asked, ctx.keep_claims) if response.HasField("batched") else None
        if columns is not None:
            named.update(columns.entry_indices)
        elif asked is not None and len(response.digests) != len(asked):
            raise VerificationError(f"asked about {len(asked)} digests, the server answered {len(response.digests)}")
        assert ctx.registry is not None
        return _OpenAnswer(
            items=items, columns=columns, asked=asked, checkpoint=checkpoint, registry=ctx.registry,
            entries=_EntriesAsOf(ctx.entries, ctx.arrival, serial),
            attestations=ctx.attestations, statuses=ctx.statuses, single_statuses=ctx.single_statuses,
            opened=self._open_attestations(named, ctx),
        )

    def _finish_answer(
        self, answer: _OpenAnswer, ctx: _StreamContext, signers: Sequence[VendorKey | None]
    ) -> list[SampleProvenance]:
        """The second half of ``_absorb``: given ``signer_of`` each opened attestation,
        the verified results in the query's order."""
        for one, key in zip(answer.opened, signers, strict=True):
            if key is None:
                continue  # check_provenance checks it again, in order, and raises
            try:
                answer.attestations[one.entry.index] = finish_attestation(one, key, self._predicates)
            except VerificationError:
                continue
        checkpoint, registry, verified, statuses = answer.checkpoint, answer.registry, answer.attestations, answer.statuses
        results = []
        for item in answer.items:
            if type(item) is tuple and len(item) == 3:
                digest, index, hint = item
                result = check_direct_sample(digest, index, hint, checkpoint, verified, answer.single_statuses)
                if result is not None:
                    results.append(result)
                    continue
                item = DigestClaim(digest=digest, hits=((index, None),), revocation_indices=(), status_hint=hint)
            elif type(item) is tuple:
                digest, index, leaf_index, batch_size, hashes, hint = item
                result = check_batched_sample(
                    digest, index, leaf_index, batch_size, hashes, hint, checkpoint, verified,
                    ctx.batch_roots, self._paths, statuses,
                )
                if result is not None:
                    results.append(result)
                    continue
                item = DigestClaim(
                    digest=digest,
                    hits=((index, BatchPath(leaf_index=leaf_index, batch_size=batch_size, hashes=hashes)),),
                    revocation_indices=(),
                    status_hint=hint,
                )
            assert isinstance(item, DigestClaim)
            results.append(check_provenance(
                item, answer.entries, registry, checkpoint, verified, self._paths, statuses,
            ))
        if answer.columns is not None:
            assert answer.asked is not None
            results = answer.columns.merge(results, self._check_columns(answer.columns, answer.asked, ctx, answer))
        if ctx.remember:
            for index, attestation in verified.items():
                if len(self._attested) >= ATTESTATION_MEMO:
                    self._attested.clear()
                self._attested[(index, attestation.entry.leaf_hash)] = (registry, attestation)
        return results

    def _check_columns(
        self, columns: _BatchedColumns, asked: Sequence[bytes], ctx: _StreamContext, answer: _OpenAnswer
    ) -> list[SampleProvenance]:
        """Each batched sample checked like a record naming one entry through a batch path.

        The usual case goes through ``check_batched_sample``; anything it does not
        accept is checked again by ``check_provenance``, which refuses it with its
        own error (or accepts it).
        """
        registry, checkpoint = answer.registry, answer.checkpoint
        verified, statuses = answer.attestations, answer.statuses
        blob = columns.path_hashes
        offset = 0
        out = []
        for k, (position, index, leaf) in enumerate(
            zip(columns.positions, columns.entry_indices, columns.leaf_indices, strict=True)
        ):
            digest = asked[position]
            attestation = attestation_named(index, digest, answer.entries, registry, verified)
            batch = attestation.predicate.batch
            if batch is None:
                raise BatchPathError(f"entry {index}: server sent a batch path for a direct statement")
            if not leaf < batch.size:
                raise BatchPathError(
                    f"entry {index}: batch path leaf {leaf} for {digest.hex()} is outside the signed batch of "
                    f"{batch.size}"
                )
            end = offset + 32 * inclusion_proof_length(leaf, batch.size)
            if end > len(blob):
                raise VerificationError(f"batched answer: the path hashes end inside sample {k}'s path")
            packed = blob[offset:end]
            offset = end
            hint = columns.status_hints.get(index, "")
            result = check_batched_sample(
                digest, index, leaf, batch.size, packed, hint, checkpoint, verified,
                ctx.batch_roots, self._paths, statuses,
            )
            if result is None:
                hashes = tuple(packed[i : i + 32] for i in range(0, len(packed), 32))
                claim = DigestClaim(
                    digest=digest,
                    hits=((index, BatchPath(leaf_index=leaf, batch_size=batch.size, hashes=hashes)),),
                    revocation_indices=(),
                    status_hint=hint,
                )
                result = check_provenance(
                    claim, answer.entries, registry, checkpoint, verified, self._paths, statuses,
                )
            out.append(result)
        if offset != len(blob):
            raise VerificationError(
                f"batched answer: {len(blob) - offset} bytes of path hashes beyond the samples' paths"
            )
        return out

    def _open_attestations(self, named: Iterable[int], ctx: _StreamContext) -> list[OpenedAttestation]:
        """The attestations at the indices ``named`` by an answer, not verified in this
        stream yet, opened for their signature checks (see ``_finish_answer``).

        Only an accelerator: an attestation that fails any check is left out, and
        ``check_provenance`` then checks it again, in order, and raises. A few are
        left to it altogether.
        """
        registry = ctx.registry
        assert registry is not None
        pending: dict[int, VerifiedEntry] = {}
        for index in sorted(named):
            if index not in ctx.attestations:
                entry = ctx.entries.get(index)
                if entry is not None and entry.entry.kind is EntryKind.ATTESTATION:
                    pending[index] = entry
        if len(pending) < PARALLEL_SIGNATURES:
            return []  # a few: check_provenance checks them one by one
        opened: list[OpenedAttestation] = []
        ordered: dict[tuple[str, tuple[str, ...]], list[VendorKey]] = {}  # for this registry
        for entry in pending.values():
            try:
                opened.append(open_attestation_entry(entry, registry, ordered))
            except (VerificationError, InvalidInput):
                continue
        return opened

    def _signers(self, opened: Sequence[OpenedAttestation]) -> list[VendorKey | None]:
        """``signer_of`` each, shared by this thread and the verifier threads.

        Each thread takes the next slice when it finishes one; Ed25519 checks run
        without the GIL, so they run in parallel. This thread works too rather
        than wait: a thread holding the GIL in Python code would keep the others
        from starting their next check for a whole switch interval.
        """
        found: list[VendorKey | None] = [None] * len(opened)
        if not opened:
            return found
        slices = deque(range(0, len(opened), SIGNATURE_SLICE))

        def work() -> None:
            while True:
                try:
                    start = slices.popleft()
                except IndexError:
                    return
                for i in range(start, min(start + SIGNATURE_SLICE, len(opened))):
                    try:
                        found[i] = signer_of(opened[i])
                    except InvalidInput:  # a registered key that does not load: refused in order later
                        found[i] = None

        with self._verifiers_made:
            if self._verifiers is None:
                self._verifiers = ThreadPoolExecutor(VERIFIER_THREADS, thread_name_prefix="anchorlog-verify")
            verifiers = self._verifiers
        helpers = [verifiers.submit(work) for _ in range(VERIFIER_THREADS)]
        work()
        for helper in helpers:
            helper.result()
        return found

    def provenance(self, digest: bytes) -> SampleProvenance:
        """Verified provenance of one sample digest (32 raw bytes)."""
        try:
            response = self._call(
                "GetProvenance", pb.GetProvenanceRequest(digest=digest, trusted_size=self._trusted_size())
            )
        except LedgerRpcError as exc:
            self._refuse_rollback(exc)
        assert isinstance(response, pb.ProvenanceResponse)
        results = self._absorb(response, _StreamContext(remember=True))
        if len(results) != 1:
            raise VerificationError(f"asked about one digest, the server answered {len(results)}")
        result = results[0]
        if result.digest != digest:
            raise VerificationError("server answered for a different digest")
        return result

    def provenance_many(
        self,
        digests: Iterable[bytes],
        *,
        chunk: int = 2000,
        bundle: list[Bundle] | None = None,
        status_hints: bool = False,
    ) -> Iterator[SampleProvenance]:
        """Verified provenance of many digests, streamed against one checkpoint.

        Results come in input order. With ``bundle`` (a list), a Bundle of
        everything received is appended to it when the stream ends.

        Each result's ``status`` is derived here from verified entries; the
        server's own reading (``server_status_hint``) is asked for only with
        ``status_hints``, since it costs the server a parse of every envelope
        it names. Without it the hints are empty (a server older than the
        ``omit_status_hints`` query field still sends them).
        """
        ctx = _StreamContext(keep_claims=bundle is not None)
        first_size = self._trusted_size()
        asked: list[list[bytes]] = []
        # Set by the request thread once every digest was sent: the server can only
        # end the stream after that, so an end before it is a server dropping queries.
        finished: list[bool] = []
        omit = not status_hints
        # A bundle keeps every sample's claim with its own path: records then.
        columns = bundle is None

        def requests() -> Iterator[pb.ProvenanceQuery]:
            # The first messages are smaller (an eighth of ``chunk``, a quarter, a half):
            # the server answers the first sooner, so this side starts verifying while
            # the server works on the next instead of waiting for a whole chunk. The
            # last ones too (halving down to an eighth): the checks of the last answer
            # overlap nothing else, so a small one ends the stream sooner. Digests are
            # read up to a chunk ahead for that.
            smallest = max(1, chunk // 8)
            ramp = (smallest, max(1, chunk // 4), max(1, chunk // 2))
            waiting: list[bytes] = []

            def query(count: int) -> pb.ProvenanceQuery:
                batch = waiting[:count]
                del waiting[:count]
                asked.append(batch)
                return pb.ProvenanceQuery(
                    digests=batch, trusted_size=first_size, omit_status_hints=omit, batched_columns=columns
                )

            for digest in digests:
                waiting.append(digest)
                if len(asked) < len(ramp):
                    if len(waiting) >= ramp[len(asked)]:
                        yield query(ramp[len(asked)])
                elif len(waiting) >= 2 * chunk:  # a chunk more to come: not among the last
                    yield query(chunk)
            while waiting:
                if len(asked) < len(ramp):  # a short stream: as it came
                    yield query(min(len(waiting), ramp[len(asked)]))
                else:
                    yield query(len(waiting) if len(waiting) <= smallest else min(chunk, max(smallest, len(waiting) // 2)))
            finished.append(True)

        answered = 0
        # An answer whose signatures the process is checking while this thread reads the
        # next one. Its results are yielded before the next answer's, and before any
        # error the next answer raises: the same results, in the same order, as without.
        sent: _SentAnswer | None = None
        with_process = self._use_signature_process and self._signature_process_busy.acquire(blocking=False)
        try:
            responses = self._stub.StreamProvenance(requests(), metadata=self._metadata)
            for number, response in enumerate(responses):
                if number >= len(asked):
                    if sent is not None:  # the answers before it were real: given, as without the process
                        earlier, sent = sent, None
                        yield from self._sent_results(earlier, ctx)
                    raise VerificationError("stream answered more queries than were asked")
                expected = asked[number]
                try:
                    answer = self._open_answer(response, ctx, expected if columns else None)
                except Exception:
                    if sent is not None:
                        earlier, sent = sent, None
                        yield from self._sent_results(earlier, ctx)
                    raise
                earlier, sent = sent, None
                signers = self._collect(earlier) if earlier is not None else None
                process = self._process_for(len(answer.opened)) if with_process and answer.opened else None
                if process is not None:
                    sent = self._send(process, answer, expected, number)
                if earlier is not None:
                    assert signers is not None
                    yield from self._checked(self._finish_answer(earlier.answer, ctx, signers), earlier.expected)
                    answered = earlier.number + 1
                if sent is None:
                    yield from self._checked(self._finish_answer(answer, ctx, self._signers(answer.opened)), expected)
                    answered = number + 1
            if sent is not None:
                earlier, sent = sent, None
                yield from self._sent_results(earlier, ctx)
                answered = earlier.number + 1
        except grpc.RpcError as exc:
            if sent is not None:  # what was received is still answered, as without the process
                earlier, sent = sent, None
                yield from self._sent_results(earlier, ctx)
                answered = earlier.number + 1
            self._refuse_rollback(rpc_error(exc))
        finally:
            if sent is not None:  # leaving with an error: its results are never given
                self._discard(sent)
            if with_process:
                self._signature_process_busy.release()
        if not finished or answered != len(asked):
            raise VerificationError(
                f"the server ended the provenance stream after answering {answered} of "
                f"{len(asked)} queries{'' if finished else ' (before all digests were sent)'}: "
                "unanswered digests are not verified"
            )
        if bundle is not None and ctx.checkpoint is not None:
            bundle.append(self._bundle(ctx))

    @staticmethod
    def _checked(results: list[SampleProvenance], expected: Sequence[bytes]) -> list[SampleProvenance]:
        if [r.digest for r in results] != list(expected):
            raise VerificationError("stream answered different digests than asked")
        return results

    def _process_for(self, checks: int) -> SignatureProcess | None:
        """The signature process for an answer with ``checks`` signatures to check;
        None to check them in this process's threads."""
        process = self._signature_process
        if process is None:
            if checks < PROCESS_SIGNATURES:
                return None
            try:
                process = self._signature_process = SignatureProcess(PROCESS_TIMEOUT, PROCESS_WRITE_TIMEOUT)
            except Exception:  # noqa: BLE001  # no process here (a sandbox, no spawn): threads, as before
                self._use_signature_process = False
                return None
        return process if process.alive else None

    def _send(
        self, process: SignatureProcess, answer: _OpenAnswer, expected: Sequence[bytes], number: int
    ) -> _SentAnswer | None:
        """Send ``answer``'s signature checks to ``process``; None if it is gone."""
        positions: list[int] = []
        packed: list[bytes] = []
        for position, one in enumerate(answer.opened):
            check = pack_check(
                [key.public_key for key in one.verifiers], [signature.sig for signature in one.envelope.signatures],
                one.message,
            )
            if check is not None:
                positions.append(position)
                packed.append(check)
        if not process.check(packed, len(packed)):
            return None
        return _SentAnswer(answer, expected, number, process, positions)

    @staticmethod
    def _signer(opened: OpenedAttestation) -> VendorKey | None:
        try:
            return signer_of(opened)
        except InvalidInput:  # a registered key that does not load: refused in order later
            return None

    def _collect(self, sent: _SentAnswer) -> list[VendorKey | None]:
        """``signer_of`` each attestation ``sent`` opened: the process's verdicts, the
        checks this thread took from the end rather than wait for them, and this
        thread's own for anything not sent (or everything, if the process failed)."""
        opened, positions, process = sent.answer.opened, sent.positions, sent.process
        found: list[VendorKey | None] = [None] * len(opened)
        try:
            if len(positions) != len(opened):
                for position in sorted(set(range(len(opened))) - set(positions)):
                    found[position] = self._signer(opened[position])
            # This thread has the checks of positions[taken:]. Each one it takes, it first
            # forbids to the process (which may have started it: then both make it).
            taken = len(positions)
            while taken and TAKE_CHECKS and not process.ready() and process.progress.done < taken:
                taken -= 1
                process.progress.lower_limit(taken)
                found[positions[taken]] = self._signer(opened[positions[taken]])
            # With every check taken, the process's answer is only owed: a process that
            # is not answering by then (stopped, stuck) gets a second, not a minute.
            verdicts = process.verdicts(None if taken else OWED_ANSWER_TIMEOUT)
        except BaseException:  # interrupted between a message and its answer: never reuse the pipe
            process.close()
            raise
        if verdicts is None:
            verdicts = b""
        for position, verdict in zip(positions[:taken], verdicts, strict=False):
            keys = opened[position].verifiers
            found[position] = keys[verdict] if verdict < len(keys) else None
        missing = positions[len(verdicts) : taken]  # stopped short of the limit, or failed: here
        for position, key in zip(missing, self._signers([opened[p] for p in missing]), strict=True):
            found[position] = key
        return found

    @staticmethod
    def _discard(sent: _SentAnswer) -> None:
        """Take the process's answer to ``sent`` without using it: it stops before its next
        check, and a process that does not answer within a second is ended (the pipe
        carries one answer per message)."""
        sent.process.progress.lower_limit(0)
        sent.process.verdicts(OWED_ANSWER_TIMEOUT)

    def _sent_results(self, sent: _SentAnswer, ctx: _StreamContext) -> list[SampleProvenance]:
        return self._checked(self._finish_answer(sent.answer, ctx, self._collect(sent)), sent.expected)

    def _bundle(self, ctx: _StreamContext) -> Bundle:
        assert ctx.checkpoint is not None and ctx.registry is not None
        samples = []
        needed = {i for i, e in ctx.entries.items() if e.entry.kind is EntryKind.KEY_EVENT}
        for claim in ctx.claims.values():
            result = check_provenance(claim, ctx.entries, ctx.registry, ctx.checkpoint)
            samples.append((claim, str(result.status)))
            needed.update(i for i, _ in claim.hits)
            needed.update(claim.revocation_indices)
        return Bundle(
            checkpoint=ctx.checkpoint.note,
            entries={i: ctx.proofs[i] for i in sorted(needed)},
            samples=tuple(samples),
        )

    def entry(self, index: int) -> VerifiedEntry:
        """One entry, proved included in a checkpoint consistent with the trusted one."""
        response = self._call("GetInclusionProof", pb.GetInclusionProofRequest(index=index))
        assert isinstance(response, pb.GetInclusionProofResponse)
        checkpoint = self._trust(response.checkpoint.note)
        proved = response.entry
        if proved.entry.index != index:
            raise InclusionProofError(f"asked for entry {index}, the server sent entry {proved.entry.index}")
        return check_entry(
            index, proved.entry.data, list(proved.inclusion.hashes), proved.inclusion.tree_size, checkpoint
        )

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        response = self._call(
            "GetConsistencyProof",
            pb.GetConsistencyProofRequest(first_size=first_size, second_size=second_size),
        )
        assert isinstance(response, pb.ConsistencyProof)
        return list(response.hashes)

    def latest_raw_checkpoint(self) -> bytes:
        """The latest checkpoint note, signature-checked but not consistency-checked.

        For auditors who track consistency themselves.
        """
        response = self._call("GetCheckpoint", pb.GetCheckpointRequest())
        assert isinstance(response, pb.GetCheckpointResponse)
        return check_checkpoint(response.checkpoint.note, self.verifier).note

    # ------------------------------------------------------------ auditors

    def raw_entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """Entries [start, end) as sent (one bounded page); auditors verify them."""
        response = self._call("GetEntries", pb.GetEntriesRequest(start=start, end=end))
        assert isinstance(response, pb.GetEntriesResponse)
        return [(e.index, bytes(e.data)) for e in response.entries]

    def batch_digests(self, entry_index: int) -> bytes:
        response = self._call("GetBatchDigests", pb.GetBatchDigestsRequest(entry_index=entry_index))
        assert isinstance(response, pb.GetBatchDigestsResponse)
        return bytes(response.digests)

    def key_history(self, vendor_id: str = "") -> tuple[VerifiedCheckpoint, list[VerifiedEntry]]:
        response = self._call("GetKeyHistory", pb.GetKeyHistoryRequest(vendor_id=vendor_id))
        assert isinstance(response, pb.GetKeyHistoryResponse)
        checkpoint = self._trust(response.checkpoint.note)
        return checkpoint, [
            check_entry(p.entry.index, p.entry.data, list(p.inclusion.hashes), p.inclusion.tree_size, checkpoint)
            for p in response.entries
        ]

    # ------------------------------------------------------------ vendors

    def _receipt(self, receipt: pb.Receipt, submitted: Submission | None) -> Receipt:
        proved = receipt.entry
        entry, inclusion = proved.entry, proved.inclusion
        out = Receipt(
            index=entry.index,
            data=entry.data,
            tree_size=inclusion.tree_size,
            hashes=tuple(inclusion.hashes),
            checkpoint=receipt.checkpoint.note,
            duplicate=receipt.duplicate,
        )
        checkpoint = self._checkpoints.check(out.checkpoint)
        # Receipts come in groups per checkpoint: their audit paths share their top.
        verified = check_entry(out.index, out.data, out.hashes, out.tree_size, checkpoint, self._paths)
        self._trust(out.checkpoint)
        if submitted is not None:
            self._check_submitted(verified, submitted, out.duplicate)
        return out

    def _submitter(self) -> str:
        """This client's principal (a vendor submits under its own id); asked once."""
        if self._principal is None:
            self._principal = self.whoami()[0]
        return self._principal

    def _check_submitted(self, verified: VerifiedEntry, submitted: Submission, duplicate: bool) -> None:
        """The receipt's entry is the submitted envelope, logged under this vendor."""
        entry = verified.entry
        if entry.kind not in (EntryKind.ATTESTATION, EntryKind.REVOCATION):
            raise VerificationError(
                f"receipt for entry {verified.index} is a {entry.kind.name.lower()} entry, "
                "not the submitted attestation"
            )
        if duplicate:
            # An earlier submission of the same statement: its envelope bytes may be
            # spelled differently, the signed statement may not.
            try:
                same = Envelope.parse(entry.envelope).pae() == Envelope.parse(submitted.envelope).pae()
            except InvalidInput as exc:
                raise VerificationError(f"receipt for entry {verified.index}: {exc}") from exc
        else:
            same = entry.envelope == submitted.envelope
        if not same:
            raise VerificationError(
                f"receipt for entry {verified.index} is for a different envelope than submitted"
            )
        if entry.submitter != self._submitter():
            raise VerificationError(
                f"receipt for entry {verified.index} names submitter {entry.submitter!r}, "
                f"not this client ({self._submitter()!r})"
            )

    def _outcome(self, result: pb.ItemResult, submitted: Submission | None) -> SubmitOutcome:
        if result.HasField("receipt"):
            return SubmitOutcome(result.position, receipt=self._receipt(result.receipt, submitted))
        code = next((c.name for c in grpc.StatusCode if c.value[0] == result.error.code), "UNKNOWN")
        return SubmitOutcome(
            result.position, error=_status_details(code, result.error.message, result.error.details)
        )

    def submit(self, items: Sequence[Submission], *, per_request: int = 500) -> list[SubmitOutcome]:
        """Submit items in requests of ``per_request``; each gets a verified receipt or its own error.

        Positions in the outcomes are positions in ``items``.
        """
        outcomes: list[SubmitOutcome] = []
        for start in range(0, len(items), per_request):
            chunk = items[start : start + per_request]
            response = self._call("Submit", _submit_request(chunk))
            assert isinstance(response, pb.SubmitResponse)
            if sorted(r.position for r in response.results) != list(range(len(chunk))):
                raise VerificationError("server answered different items than submitted")
            for result in response.results:
                outcome = self._outcome(result, chunk[result.position])
                outcomes.append(replace(outcome, position=start + outcome.position))
        return sorted(outcomes, key=lambda o: o.position)

    def submit_stream(
        self,
        items: Iterable[Submission],
        *,
        max_items_per_message: int = STREAM_MESSAGE_ITEMS,
        max_message_bytes: int = STREAM_MESSAGE_BYTES,
    ) -> Iterator[SubmitOutcome]:
        """Submit a stream of items; outcomes come back in order as they are sequenced.

        Each stream message carries whatever items are ready (read from ``items``
        by a helper thread), up to ``max_items_per_message`` or about
        ``max_message_bytes``; the service answers each message with one result
        per item, so the per-message cost is paid per window, not per envelope.
        """
        if max_items_per_message < 1:
            raise ValueError("max_items_per_message must be at least 1")
        ready = _ReadyItems(items, capacity=2 * max_items_per_message)
        # (first position, items) of each message sent and not yet answered, in order:
        # only unanswered items are held, however long the stream.
        spans: deque[tuple[int, list[Submission]]] = deque()
        sent = 0
        finished: list[bool] = []  # see provenance_many

        def requests() -> Iterator[pb.SubmitRequest]:
            nonlocal sent
            while chunk := ready.take(max_items_per_message, max_message_bytes):
                # The first message carries the trusted size: results then bring their own
                # consistency proofs, with no GetConsistencyProof round trip per checkpoint.
                trusted_size = self._trusted_size() if not sent else 0
                spans.append((sent, chunk))
                sent += len(chunk)
                yield _submit_request(chunk, trusted_size)
            finished.append(True)

        answered = 0
        try:
            for response in self._stub.SubmitStream(requests(), metadata=self._metadata):
                if not spans:
                    raise VerificationError(
                        f"server answered a message that was never sent (item {answered} onwards)"
                    )
                start, chunk = spans.popleft()
                count = len(chunk)
                positions = [r.position for r in response.results]
                if positions != list(range(start, start + count)):
                    raise VerificationError(_misanswered(positions, start, count))
                for result in response.results:
                    if (
                        result.HasField("receipt")
                        and result.HasField("consistency")
                        and result.consistency.first_size == self._trusted_size() > 0
                    ):
                        # Verified and trusted here, so the receipt's own _trust finds it equal.
                        self._advance(result.receipt.checkpoint.note, list(result.consistency.hashes))
                    yield self._outcome(result, chunk[result.position - start])
                answered += count
        except grpc.RpcError as exc:
            raise rpc_error(exc) from None
        finally:
            ready.close()
        ready.reraise()
        if not finished:
            raise VerificationError(
                f"the server ended the submission stream after {sent} item(s), before all "
                "items were sent: the rest were never submitted"
            )
        if answered != sent:
            raise VerificationError(
                f"the server ended the submission stream without answering {sent - answered} of "
                f"{sent} items (first unanswered: {answered}): those items have no receipt"
            )

    # ------------------------------------------------------------ admin

    def _key_event(self, method: str, request: object, expected: KeyEvent) -> tuple[str, Receipt]:
        """Send a key-event request; the receipt must hold a log-signed event that is the request.

        ``expected`` holds what was asked; times are compared only when asked for
        (0 in the request lets the service choose).
        """
        response = self._call(method, request)
        assert isinstance(response, pb.KeyEventResponse)
        receipt = self._receipt(response.receipt, None)
        entry = decode_entry(receipt.data)  # bytes already proved included by _receipt
        where = f"key-event receipt for entry {receipt.index}"
        if entry.kind is not EntryKind.KEY_EVENT:
            raise VerificationError(f"{where} is a {entry.kind.name.lower()} entry, not a key event")
        try:
            event = open_key_event(entry.envelope, self.verifier.public_key)
        except (InvalidInput, VerificationError) as exc:
            raise VerificationError(f"{where}: not a key event signed by the log: {exc}") from exc
        compared = ("type", "vendor_id", "display_name", "public_key", "old_key_id", "key_id",
                    "compromised", "reason")
        for name in compared:
            if getattr(event, name) != getattr(expected, name):
                raise VerificationError(
                    f"{where} records {name} {_shown(getattr(event, name))}, the request said "
                    f"{_shown(getattr(expected, name))}"
                )
        for name in ("not_before", "not_after"):
            wanted = getattr(expected, name)
            if wanted is not None and getattr(event, name) != wanted:
                raise VerificationError(f"{where} records another {name} than requested")
        key_id = ed25519_key_id(expected.public_key) if expected.public_key else expected.key_id
        if response.key_id != key_id:
            raise VerificationError(f"{where}: the service reported key id {response.key_id!r}, "
                                    f"the key's id is {key_id!r}")
        return key_id, receipt

    def create_vendor(self, vendor_id: str, display_name: str = "") -> Receipt:
        return self._key_event(
            "CreateVendor", pb.CreateVendorRequest(vendor_id=vendor_id, display_name=display_name),
            KeyEvent(KeyEventType.VENDOR_CREATED, vendor_id, display_name=display_name),
        )[1]

    def register_key(
        self, vendor_id: str, public_key: bytes, *, not_before: int = 0, not_after: int = 0
    ) -> tuple[str, Receipt]:
        return self._key_event(
            "RegisterKey",
            pb.RegisterKeyRequest(
                vendor_id=vendor_id, public_key=public_key, not_before=not_before, not_after=not_after
            ),
            _registered(KeyEventType.KEY_REGISTERED, vendor_id, public_key, not_before, not_after),
        )

    def rotate_key(
        self, vendor_id: str, old_key_id: str, new_public_key: bytes, *, not_after: int = 0
    ) -> tuple[str, Receipt]:
        return self._key_event(
            "RotateKey",
            pb.RotateKeyRequest(
                vendor_id=vendor_id, old_key_id=old_key_id, new_public_key=new_public_key,
                not_after=not_after,
            ),
            replace(
                _registered(KeyEventType.KEY_ROTATED, vendor_id, new_public_key, 0, not_after),
                old_key_id=old_key_id,
            ),
        )

    def revoke_key(
        self, vendor_id: str, key_id: str, *, compromised: bool = False, reason: str = ""
    ) -> Receipt:
        return self._key_event(
            "RevokeKey",
            pb.RevokeKeyRequest(vendor_id=vendor_id, key_id=key_id, compromised=compromised, reason=reason),
            KeyEvent(KeyEventType.KEY_REVOKED, vendor_id, key_id=key_id, compromised=compromised,
                     reason=reason),
        )[1]

    def issue_token(self, principal: str, role: str) -> str:
        """A new token for ``principal``; see :meth:`issue_token_with_id` for its id too."""
        return self.issue_token_with_id(principal, role).token

    def issue_token_with_id(self, principal: str, role: str) -> IssuedToken:
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}")
        response = self._call("IssueToken", pb.IssueTokenRequest(principal=principal, role=ROLES[role]))
        assert isinstance(response, pb.IssueTokenResponse)
        expected_id = token_id_of(response.token)
        if response.token_id != expected_id:
            raise VerificationError(
                f"IssueToken: the service reported token id {response.token_id!r}, "
                f"the token's id is {expected_id!r}"
            )
        return IssuedToken(response.token, response.token_id)

    def revoke_token(
        self, *, token_id: str | None = None, token: str | None = None, principal: str | None = None
    ) -> list[str]:
        """Revoke one token (by id or value) or every token of ``principal``; returns the revoked ids."""
        chosen = [value for value in (token_id, token, principal) if value is not None]
        if len(chosen) != 1:
            raise ValueError("give exactly one of token_id, token, principal")
        response = self._call(
            "RevokeToken",
            pb.RevokeTokenRequest(token_id=token_id or "", token=token or "", principal=principal or ""),
        )
        assert isinstance(response, pb.RevokeTokenResponse)
        return list(response.token_ids)
