"""The vendor key registry, kept as log entries and replayed from them.

Key management is itself logged: creating a vendor, registering, rotating and
revoking a vendor key are key-event entries. Each is an in-toto Statement (predicate
type ``KEY_EVENT_V1``) in a DSSE envelope signed with the log's own Ed25519 key, so
anyone holding the log's verifier key can replay the registry from the log alone.

Validity rule (used by the service when accepting an envelope and by every
verifier afterwards): a vendor key may sign the entry at index ``i`` integrated at
time ``t`` iff the key was registered by an entry before ``i``, was not revoked by
an entry before ``i``, and ``not_before <= t < not_after``. A key revoked as
*compromised* taints every attestation it ever signed, before or after.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from anchorlog.ledger.dsse import (
    PAYLOAD_TYPE_INTOTO,
    Envelope,
    ed25519_key_id,
    pae,
    verify_envelope,
)
from anchorlog.ledger.entry import EntryKind, LogEntry, decode_entry
from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.statement import Statement, Subject, build_statement, parse_statement

KEY_EVENT_V1 = "https://anchorlog.dev/key-event/v1"
VENDOR_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_REASON = 1000
MAX_DISPLAY_NAME = 200
NO_EXPIRY = datetime.max.replace(tzinfo=UTC)
# strptime alone accepts "2026-1-5T1:2:3Z"; one spelling per instant keeps events canonical.
_TIME_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


class KeyEventType(enum.StrEnum):
    VENDOR_CREATED = "vendor-created"
    KEY_REGISTERED = "key-registered"
    KEY_ROTATED = "key-rotated"
    KEY_REVOKED = "key-revoked"


def check_vendor_id(value: str, field_name: str = "vendor_id") -> str:
    if not isinstance(value, str) or not VENDOR_ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            field_name, "must be 1-63 characters of a-z, 0-9, '.', '_', '-', starting alphanumeric"
        )
    return value


def _time_to_json(value: datetime | None) -> str | None:
    if value is None or value == NO_EXPIRY:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_from_json(value: Any, field_name: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidInput(field_name, "must be an RFC 3339 UTC time string")
    if not _TIME_PATTERN.fullmatch(value):
        raise InvalidInput(field_name, f"not an RFC 3339 UTC time like 2026-01-31T12:00:00Z: {value[:40]!r}")
    try:
        parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise InvalidInput(field_name, f"not an RFC 3339 UTC time like 2026-01-31T12:00:00Z: {value!r}") from None
    return parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class KeyEvent:
    """One change to the registry, as the key-event predicate states it."""

    type: KeyEventType
    vendor_id: str
    display_name: str = ""
    public_key: bytes = b""
    old_key_id: str = ""
    key_id: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None
    compromised: bool = False
    reason: str = ""

    def __post_init__(self) -> None:
        # The log records whole UTC seconds; anything finer would make the state
        # applied in memory differ from the state replayed from the log.
        for name in ("not_before", "not_after"):
            value = getattr(self, name)
            if value is None or value == NO_EXPIRY:
                continue
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise InvalidInput(name, "must be a timezone-aware datetime")
            if value.microsecond:
                raise InvalidInput(name, "must be a whole second (the log records no fractions)")
        registers = self.type in (KeyEventType.KEY_REGISTERED, KeyEventType.KEY_ROTATED)
        if registers and self.not_after is None:
            object.__setattr__(self, "not_after", NO_EXPIRY)

    def to_predicate(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": str(self.type), "vendorId": self.vendor_id}
        if self.type is KeyEventType.VENDOR_CREATED:
            out["displayName"] = self.display_name
        if self.type in (KeyEventType.KEY_REGISTERED, KeyEventType.KEY_ROTATED):
            out["publicKey"] = base64.b64encode(self.public_key).decode()
            out["keyId"] = ed25519_key_id(self.public_key)
            out["notBefore"] = _time_to_json(self.not_before)
            out["notAfter"] = _time_to_json(self.not_after)
        if self.type is KeyEventType.KEY_ROTATED:
            out["oldKeyId"] = self.old_key_id
        if self.type is KeyEventType.KEY_REVOKED:
            out["keyId"] = self.key_id
            out["compromised"] = self.compromised
            out["reason"] = self.reason
        return out

    def subject(self) -> Subject:
        if self.type is KeyEventType.VENDOR_CREATED:
            digest = hashlib.sha256(self.vendor_id.encode()).digest()
            return Subject(name=f"anchorlog:vendor/{self.vendor_id}", digest=digest)
        if self.type is KeyEventType.KEY_REVOKED:
            digest = hashlib.sha256(self.key_id.encode()).digest()
            return Subject(name=f"anchorlog:key/{self.key_id}", digest=digest)
        key_id = ed25519_key_id(self.public_key)
        return Subject(name=f"anchorlog:key/{key_id}", digest=hashlib.sha256(self.public_key).digest())

    def statement_bytes(self) -> bytes:
        return build_statement([self.subject()], KEY_EVENT_V1, self.to_predicate())


_FIELDS: Mapping[KeyEventType, frozenset[str]] = {
    KeyEventType.VENDOR_CREATED: frozenset({"event", "vendorId", "displayName"}),
    KeyEventType.KEY_REGISTERED: frozenset(
        {"event", "vendorId", "publicKey", "keyId", "notBefore", "notAfter"}
    ),
    KeyEventType.KEY_ROTATED: frozenset(
        {"event", "vendorId", "publicKey", "keyId", "notBefore", "notAfter", "oldKeyId"}
    ),
    KeyEventType.KEY_REVOKED: frozenset({"event", "vendorId", "keyId", "compromised", "reason"}),
}


def parse_key_event(statement: Statement) -> KeyEvent:
    """Strictly read a key-event statement (its envelope already verified)."""
    if statement.predicate_type != KEY_EVENT_V1:
        raise InvalidInput("statement.predicateType", f"expected {KEY_EVENT_V1}")
    pred = statement.predicate
    try:
        event_type = KeyEventType(pred.get("event"))
    except ValueError:
        raise InvalidInput("predicate.event", f"unknown key event {pred.get('event')!r}") from None
    unknown = set(pred) - _FIELDS[event_type]
    if unknown:
        raise InvalidInput("predicate", f"unknown fields {sorted(unknown)}")
    vendor_id = check_vendor_id(pred.get("vendorId"), "predicate.vendorId")
    event = KeyEvent(type=event_type, vendor_id=vendor_id)
    if event_type is KeyEventType.VENDOR_CREATED:
        name = pred.get("displayName", "")
        if not isinstance(name, str) or len(name) > MAX_DISPLAY_NAME:
            raise InvalidInput("predicate.displayName", f"must be a string of <= {MAX_DISPLAY_NAME}")
        event = replace(event, display_name=name)
    elif event_type in (KeyEventType.KEY_REGISTERED, KeyEventType.KEY_ROTATED):
        try:
            public_key = base64.b64decode(pred.get("publicKey", ""), validate=True)
        except (ValueError, TypeError):
            raise InvalidInput("predicate.publicKey", "not valid base64") from None
        if len(public_key) != 32:
            raise InvalidInput("predicate.publicKey", "must be a raw 32-byte Ed25519 key")
        if pred.get("keyId") != ed25519_key_id(public_key):
            raise InvalidInput("predicate.keyId", "does not match the public key")
        not_before = _time_from_json(pred.get("notBefore"), "predicate.notBefore")
        raw_after = pred.get("notAfter")
        not_after = NO_EXPIRY if raw_after is None else _time_from_json(raw_after, "predicate.notAfter")
        if not_after <= not_before:
            raise InvalidInput("predicate.notAfter", "must be after notBefore")
        event = replace(event, public_key=public_key, not_before=not_before, not_after=not_after)
        if event_type is KeyEventType.KEY_ROTATED:
            old = pred.get("oldKeyId")
            if not isinstance(old, str) or not old:
                raise InvalidInput("predicate.oldKeyId", "required for a rotation")
            event = replace(event, old_key_id=old)
    else:
        key_id = pred.get("keyId")
        compromised = pred.get("compromised")
        reason = pred.get("reason", "")
        if not isinstance(key_id, str) or not key_id:
            raise InvalidInput("predicate.keyId", "required")
        if not isinstance(compromised, bool):
            raise InvalidInput("predicate.compromised", "must be true or false")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise InvalidInput("predicate.reason", f"must be a string of <= {MAX_REASON}")
        event = replace(event, key_id=key_id, compromised=compromised, reason=reason)
    if statement.subjects != (event.subject(),):
        raise InvalidInput("statement.subject", "does not match the key event")
    return event


@dataclass(frozen=True)
class VendorKey:
    vendor_id: str
    key_id: str
    public_key: bytes
    not_before: datetime
    not_after: datetime
    registered_index: int
    revoked_index: int | None = None
    compromised: bool = False

    def valid_for(self, index: int, integrated_at: datetime) -> bool:
        """Could this key validly sign the entry at ``index`` integrated at ``integrated_at``?

        A compromised key's earlier signatures still verify; status derivation
        treats what it signed as revoked.
        """
        if index <= self.registered_index:
            return False
        if self.revoked_index is not None and index > self.revoked_index:
            return False
        return self.not_before <= integrated_at < self.not_after


@dataclass(frozen=True)
class Vendor:
    vendor_id: str
    display_name: str
    created_index: int


@dataclass
class KeyRegistry:
    """Registry state after replaying key events in log order.

    Mutable on purpose: the service applies each new event as it commits it and
    auditors replay millions of entries; every change goes through ``apply``.
    The service's handler threads read it while the sequencer applies events:
    anything that iterates or reads several fields holds ``_lock`` (single
    ``dict.get``/``in`` lookups are atomic on their own).
    """

    vendors: dict[str, Vendor] = field(default_factory=dict)
    keys: dict[str, VendorKey] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def check(self, event: KeyEvent) -> None:
        """Raise InvalidInput if ``event`` cannot apply to the current state."""
        with self._lock:
            self._check(event)

    def _check(self, event: KeyEvent) -> None:
        if event.type is KeyEventType.VENDOR_CREATED:
            if event.vendor_id in self.vendors:
                raise InvalidInput("vendor_id", f"vendor {event.vendor_id!r} already exists")
            return
        if event.vendor_id not in self.vendors:
            raise InvalidInput("vendor_id", f"unknown vendor {event.vendor_id!r}")
        if event.type in (KeyEventType.KEY_REGISTERED, KeyEventType.KEY_ROTATED):
            key_id = ed25519_key_id(event.public_key)
            if key_id in self.keys:
                raise InvalidInput("public_key", f"key {key_id} is already registered")
        target = event.old_key_id if event.type is KeyEventType.KEY_ROTATED else event.key_id
        if event.type in (KeyEventType.KEY_ROTATED, KeyEventType.KEY_REVOKED):
            key = self.keys.get(target)
            if key is None or key.vendor_id != event.vendor_id:
                raise InvalidInput("key_id", f"vendor {event.vendor_id!r} has no key {target!r}")
            if key.revoked_index is not None and not (
                event.type is KeyEventType.KEY_REVOKED and event.compromised and not key.compromised
            ):
                raise InvalidInput("key_id", f"key {target} is already revoked")

    def apply(self, event: KeyEvent, index: int) -> None:
        with self._lock:
            self._apply(event, index)

    def _apply(self, event: KeyEvent, index: int) -> None:
        self._check(event)
        if event.type is KeyEventType.VENDOR_CREATED:
            self.vendors[event.vendor_id] = Vendor(event.vendor_id, event.display_name, index)
            return
        if event.type in (KeyEventType.KEY_REGISTERED, KeyEventType.KEY_ROTATED):
            assert event.not_before is not None and event.not_after is not None
            key_id = ed25519_key_id(event.public_key)
            self.keys[key_id] = VendorKey(
                vendor_id=event.vendor_id, key_id=key_id, public_key=event.public_key,
                not_before=event.not_before, not_after=event.not_after, registered_index=index,
            )
        if event.type is KeyEventType.KEY_ROTATED:
            old = self.keys[event.old_key_id]
            self.keys[old.key_id] = replace(old, revoked_index=index)
        if event.type is KeyEventType.KEY_REVOKED:
            old = self.keys[event.key_id]
            revoked_at = old.revoked_index if old.revoked_index is not None else index
            self.keys[old.key_id] = replace(
                old, revoked_index=revoked_at, compromised=old.compromised or event.compromised
            )

    def vendor_keys(self, vendor_id: str) -> list[VendorKey]:
        with self._lock:
            return [k for k in self.keys.values() if k.vendor_id == vendor_id]

    def candidate_keys(self, vendor_id: str, keyid_hints: Iterable[str]) -> list[VendorKey]:
        """The vendor's keys, those named by a DSSE keyid hint first.

        The hint only orders the attempts; the registry decides which keys count.
        """
        return in_trial_order(self.vendor_keys(vendor_id), keyid_hints)


class RegisteredKey(Protocol):
    @property
    def key_id(self) -> str: ...
    @property
    def registered_index(self) -> int: ...


K = TypeVar("K", bound=RegisteredKey)


def in_trial_order(keys: Iterable[K], keyid_hints: Iterable[str]) -> list[K]:
    """``keys`` in the order a signature is tried against them: those a DSSE
    keyid hint names first, then by registration."""
    hints = set(keyid_hints)
    return sorted(keys, key=lambda k: (k.key_id not in hints, k.registered_index))


def integrated_at(entry: LogEntry) -> datetime:
    """The integration time; beyond the calendar (a forged entry) it is the end of time,
    when no key is valid."""
    return _utc_from_ms(entry.integrated_ms)


# A pure function of its argument, and the entries of one group commit share their
# time: a lookup checking thousands of entries converts each time once, not twice
# per entry (``fromtimestamp`` is a tenth of the Python work per verified sample).
@functools.lru_cache(maxsize=1024)
def _utc_from_ms(ms: int) -> datetime:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return NO_EXPIRY


def signing_key(
    envelope: Envelope, index: int, entry: LogEntry, registry: KeyRegistry
) -> VendorKey | None:
    """The submitting vendor's key, valid at ``index``, that signed ``envelope``; else None.

    The DSSE keyid only orders the attempts; the replayed registry decides.
    """
    for key in valid_signing_keys(envelope, index, entry, registry):
        try:
            verify_envelope(envelope, key.public_key)
        except VerificationError:
            continue
        return key
    return None


def valid_signing_keys(
    envelope: Envelope,
    index: int,
    entry: LogEntry,
    registry: KeyRegistry,
    ordered: dict[tuple[str, tuple[str, ...]], list[VendorKey]] | None = None,
) -> list[VendorKey]:
    """The keys :func:`signing_key` tries, in its order: the submitting vendor's keys
    valid at ``index``, those the DSSE keyid hints name first.

    ``ordered`` remembers the registry's candidates per vendor and hints; only for
    one registry that is no longer changed (a replayed one).
    """
    at = integrated_at(entry)
    hints = tuple(s.keyid for s in envelope.signatures if s.keyid)
    candidates = ordered.get((entry.submitter, hints)) if ordered is not None else None
    if candidates is None:
        candidates = registry.candidate_keys(entry.submitter, hints)
        if ordered is not None:
            ordered[(entry.submitter, hints)] = candidates
    return [key for key in candidates if key.valid_for(index, at)]


def key_event_envelope(event: KeyEvent, sign_pae: Callable[[bytes], bytes], keyid: str) -> bytes:
    """DSSE envelope JSON of ``event``, signed by the log key through ``sign_pae``."""
    payload = event.statement_bytes()
    signature = sign_pae(pae(PAYLOAD_TYPE_INTOTO, payload))
    return json.dumps(
        {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE_INTOTO,
            "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode()}],
        },
        separators=(",", ":"),
    ).encode()


def open_key_event(envelope_bytes: bytes, log_public_key: bytes) -> KeyEvent:
    """Verify a key-event envelope against the log's key and read the event."""
    envelope = Envelope.parse(envelope_bytes)
    if envelope.payload_type != PAYLOAD_TYPE_INTOTO:
        raise InvalidInput("envelope.payloadType", f"expected {PAYLOAD_TYPE_INTOTO}")
    verify_envelope(envelope, log_public_key)
    return parse_key_event(parse_statement(envelope.payload))


def replay_registry(
    key_entries: Iterable[tuple[int, bytes]], log_public_key: bytes
) -> KeyRegistry:
    """Rebuild the registry from key-event entries ``(index, leaf bytes)`` in log order.

    Raises VerificationError/InvalidInput naming the entry that does not replay.
    """
    registry = KeyRegistry()
    for index, data in key_entries:
        try:
            entry = decode_entry(data)
        except InvalidInput as exc:
            raise InvalidInput(f"entry[{index}]", f"undecodable: {exc}") from None
        if entry.index != index:
            raise InvalidInput(f"entry[{index}]", f"its bytes say index {entry.index}")
        if entry.kind is not EntryKind.KEY_EVENT:
            raise InvalidInput(f"entry[{index}]", "is not a key event")
        try:
            event = open_key_event(entry.envelope, log_public_key)
            registry.apply(event, index)
        except (InvalidInput, VerificationError) as exc:
            raise VerificationError(f"key event at entry {index} does not replay: {exc}") from exc
    return registry
