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


class EntryKind(enum.IntEnum):
    ATTESTATION = 1
    REVOCATION = 2
    KEY_EVENT = 3


@dataclass(frozen=True)
class LogEntry:
    index: int
    kind: EntryKind
    previous_hash: bytes
    integrated_ms: int
    submitter: str
    envelope: bytes

    def encode(self) -> bytes:
        submitter = self.submitter.encode("utf-8")
        if not 1 <= len(submitter) <= MAX_SUBMITTER_BYTES:
            raise InvalidInput("entry.submitter", f"must be 1..{MAX_SUBMITTER_BYTES} UTF-8 bytes")
        if len(self.previous_hash) != 32:
            raise InvalidInput("entry.previous_hash", "must be 32 bytes")
        if not 0 <= self.index < 1 << 63 or not 0 <= self.integrated_ms < 1 << 63:
            raise InvalidInput("entry", "index and time must be non-negative 63-bit integers")
        if len(self.envelope) > MAX_ENVELOPE_BYTES:
            raise InvalidInput("entry.envelope", f"larger than {MAX_ENVELOPE_BYTES} bytes")
        head = _HEAD.pack(
            ENTRY_VERSION, int(self.kind), self.index, self.previous_hash,
            self.integrated_ms, len(submitter),
        )
        return b"".join((head, submitter, struct.pack(">I", len(self.envelope)), self.envelope))


def decode_entry(data: bytes) -> LogEntry:
    """Parse leaf bytes strictly; any deviation from the encoding is an error."""
    if len(data) < _HEAD.size:
        raise InvalidInput("entry", f"truncated: {len(data)} bytes, header needs {_HEAD.size}")
    version, kind, index, previous, integrated_ms, sub_len = _HEAD.unpack_from(data)
    if version != ENTRY_VERSION:
        raise InvalidInput("entry.version", f"unsupported entry version {version}")
    try:
        entry_kind = EntryKind(kind)
    except ValueError:
        raise InvalidInput("entry.kind", f"unknown entry kind {kind}") from None
    offset = _HEAD.size
    if not 1 <= sub_len <= MAX_SUBMITTER_BYTES or offset + sub_len + 4 > len(data):
        raise InvalidInput("entry.submitter", "bad submitter length")
    try:
        submitter = data[offset : offset + sub_len].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("entry.submitter", "not valid UTF-8") from None
    offset += sub_len
    (env_len,) = struct.unpack_from(">I", data, offset)
    offset += 4
    if offset + env_len != len(data):
        raise InvalidInput("entry.envelope", "envelope length does not match the entry size")
    if index >= 1 << 63 or integrated_ms >= 1 << 63:
        raise InvalidInput("entry", "index or time out of range")
    return LogEntry(
        index=index, kind=entry_kind, previous_hash=previous, integrated_ms=integrated_ms,
        submitter=submitter, envelope=data[offset:],
    )
