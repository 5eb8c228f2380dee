"""The log entry: the exact bytes that are the RFC 6962 leaf data.

Encoding, version 1 (all integers big-endian, no padding, nothing after the end)::

    u8   version          = 1
    u8   kind             1 attestation, 2 revocation, 3 key event
    u64  index            position of this entry in the log
    32B  previous         RFC 6962 leaf hash of entry index-1 (zeros for index 0)
    u64  integrated_ms    integration time, milliseconds since the Unix epoch (UTC)
    u16  submitter length, then the submitter ID in UTF-8 (1..255 bytes)
    u32  envelope length, then the DSSE envelope JSON exactly as submitted

The leaf hash is SHA-256(0x00 || these bytes). ``previous`` chains every entry to
the one before it, so reordering or dropping an entry breaks the chain as well as
the tree. Clients hash the bytes they receive; nothing is ever re-serialized.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from anchorlog.ledger.errors import InvalidInput

ENTRY_VERSION = 1
ZERO_HASH = bytes(32)
MAX_SUBMITTER_BYTES = 255
MAX_ENVELOPE_BYTES = 16 << 20

_HEAD = struct.Struct(">BBQ32sQH")
_U32 = struct.Struct(">I")
_LIMIT = 1 << 63


class EntryKind(enum.IntEnum):
    ATTESTATION = 1
    REVOCATION = 2
    KEY_EVENT = 3


# By wire value: a dict lookup, not EntryKind(value)'s enum machinery (once per entry read).
_KINDS: dict[int, EntryKind] = {kind.value: kind for kind in EntryKind}


@dataclass(frozen=True)
class LogEntry:
    index: int
    kind: EntryKind
    previous_hash: bytes
    integrated_ms: int
    submitter: str
    envelope: bytes

    def encode(self) -> bytes:
        # Every check is made per entry (the sequencer encodes each appended entry):
        # the common types are tested first, the error messages built only on failure.
        kind = self.kind
        if type(kind) is not EntryKind:
            try:
                kind = EntryKind(kind)
            except ValueError:
                raise InvalidInput("entry.kind", f"unknown entry kind {self.kind!r}") from None
        if not isinstance(self.submitter, str):
            raise InvalidInput("entry.submitter", f"must be a str, got {type(self.submitter).__name__}")
        try:
            submitter = self.submitter.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("entry.submitter", "has no UTF-8 encoding (lone surrogate)") from None
        if not 1 <= len(submitter) <= MAX_SUBMITTER_BYTES:
            raise InvalidInput("entry.submitter", f"must be 1..{MAX_SUBMITTER_BYTES} UTF-8 bytes")
        if not isinstance(self.previous_hash, bytes) or len(self.previous_hash) != 32:
            raise InvalidInput("entry.previous_hash", "must be 32 bytes")
        index, integrated_ms = self.index, self.integrated_ms
        if not (type(index) is int and 0 <= index < _LIMIT):
            _check_u63("index", index)
        if not (type(integrated_ms) is int and 0 <= integrated_ms < _LIMIT):
            _check_u63("integrated_ms", integrated_ms)
        envelope = self.envelope
        if not isinstance(envelope, bytes):
            raise InvalidInput("entry.envelope", f"must be bytes, got {type(envelope).__name__}")
        if len(envelope) > MAX_ENVELOPE_BYTES:
            raise InvalidInput("entry.envelope", f"larger than {MAX_ENVELOPE_BYTES} bytes")
        head = _HEAD.pack(ENTRY_VERSION, kind, index, self.previous_hash, integrated_ms, len(submitter))
        return b"".join((head, submitter, _U32.pack(len(envelope)), envelope))


def _check_u63(name: str, value: object) -> None:
    """The full check of an index or time (an int subclass is accepted, a bool is not)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _LIMIT:
        raise InvalidInput(f"entry.{name}", "must be a non-negative 63-bit integer")


def decode_entry(data: bytes) -> LogEntry:
    """Parse leaf bytes strictly; any deviation from the encoding is an error."""
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise InvalidInput("entry", f"must be bytes, got {type(data).__name__}")
    if len(data) < _HEAD.size:
        raise InvalidInput("entry", f"truncated: {len(data)} bytes, the header needs {_HEAD.size}")
    version, kind, index, previous, integrated_ms, sub_len = _HEAD.unpack_from(data)
    if version != ENTRY_VERSION:
        raise InvalidInput("entry.version", f"unsupported entry version {version}")
    entry_kind = _KINDS.get(kind)
    if entry_kind is None:
        raise InvalidInput("entry.kind", f"unknown entry kind {kind}")
    # u64 on the wire, but only 63 bits are used so that SQLite's signed integers hold them.
    if index >= _LIMIT:
        raise InvalidInput("entry.index", f"{index} is out of range (must be < 2**63)")
    if integrated_ms >= _LIMIT:
        raise InvalidInput("entry.integrated_ms", f"{integrated_ms} is out of range (must be < 2**63)")
    if not 1 <= sub_len <= MAX_SUBMITTER_BYTES:
        raise InvalidInput("entry.submitter", f"length {sub_len} is not in 1..{MAX_SUBMITTER_BYTES}")
    offset = _HEAD.size + sub_len
    if offset + _U32.size > len(data):
        raise InvalidInput(
            "entry", f"truncated: {len(data)} bytes, submitter and envelope length need {offset + 4}"
        )
    try:
        submitter = data[_HEAD.size : offset].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("entry.submitter", "not valid UTF-8") from None
    (env_len,) = _U32.unpack_from(data, offset)
    offset += _U32.size
    if env_len > MAX_ENVELOPE_BYTES:
        raise InvalidInput("entry.envelope", f"length {env_len} exceeds {MAX_ENVELOPE_BYTES} bytes")
    end = offset + env_len
    if end > len(data):
        raise InvalidInput("entry", f"truncated: {len(data)} bytes, the envelope needs {end}")
    if end < len(data):
        raise InvalidInput("entry", f"{len(data) - end} trailing bytes after the envelope")
    return LogEntry(
        index=index, kind=entry_kind, previous_hash=previous, integrated_ms=integrated_ms,
        submitter=submitter, envelope=data[offset:],
    )
