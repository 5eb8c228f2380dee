"""Sample hashing: how vendors and dataset builders name a sample.

A sample is named by the SHA-256 of its bytes under a versioned canonicalization
rule, so that a vendor and a builder who hold "the same" sample compute the same
digest. The rule is part of every provenance predicate; a submission that does
not state it is rejected.

* ``raw-bytes``: the bytes as they are (files are streamed, never loaded whole).
* ``utf8-nfc-v1``: text normalized to Unicode NFC, then encoded as UTF-8. Text
  with lone surrogates has no UTF-8 encoding and is refused.
* ``rfc8785-jcs-v1``: a JSON value in its RFC 8785 (JCS) canonical form.

Digests are 32 raw bytes in memory and 64 lower-case hex characters in JSON (the
in-toto ``DigestSet`` style, ``{"sha256": "<hex>"}``).
"""

from __future__ import annotations

import enum
import hashlib
import re
import unicodedata
from pathlib import Path
from typing import Any, BinaryIO

import rfc8785
from anchorlog.ledger.errors import InvalidInput

DIGEST_SIZE = 32
DIGEST_ALGORITHM = "sha256"
_HEX_RE = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class Canonicalization(enum.StrEnum):
    RAW_BYTES = "raw-bytes"
    UTF8_NFC_V1 = "utf8-nfc-v1"
    RFC8785_JCS_V1 = "rfc8785-jcs-v1"


def digest_bytes(data: bytes) -> bytes:
    """``raw-bytes``: SHA-256 of ``data``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput("data", f"must be bytes, got {type(data).__name__}")
    return hashlib.sha256(data).digest()


def canonical_text(text: str) -> bytes:
    """The bytes ``utf8-nfc-v1`` hashes: NFC, then UTF-8."""
    if not isinstance(text, str):
        raise InvalidInput("text", f"must be a str, got {type(text).__name__}")
    try:
        return unicodedata.normalize("NFC", text).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("text", f"has no UTF-8 encoding (lone surrogate at {exc.start})") from None


def digest_text(text: str) -> bytes:
    """``utf8-nfc-v1``: SHA-256 of the NFC-normalized UTF-8 text."""
    return hashlib.sha256(canonical_text(text)).digest()


def _as_exact_doubles(value: Any) -> Any:
    """``value`` with integers beyond 2**53 replaced by the double they stand for.

    RFC 8785 numbers are IEEE 754 doubles, and its canonical form writes e.g.
    1e20 as ``100000000000000000000`` and 2**60 as ``1152921504606847000``, which
    JSON parsers return as ints; the rfc8785 library refuses ints outside
    +-(2**53 - 1), so canonical text could not be hashed again. An int counts
    as the double it equals exactly or whose canonical spelling it is; any
    other large int would silently change value, so it is refused.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) < 1 << 53:
            return value
        try:
            as_double = float(value)
        except OverflowError:
            as_double = None
        # int == float compares exactly in Python.
        if as_double is not None and (
            as_double == value or rfc8785.dumps(as_double) == str(value).encode()
        ):
            return as_double
        raise InvalidInput(
            "json",
            f"cannot be canonicalized under RFC 8785: an integer of {value.bit_length()} bits "
            "that is neither an IEEE 754 double nor the canonical spelling of one",
        )
    if isinstance(value, dict):
        return {k: _as_exact_doubles(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_exact_doubles(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """The bytes ``rfc8785-jcs-v1`` hashes: RFC 8785 canonical JSON."""
    try:
        try:
            return rfc8785.dumps(value)
        except rfc8785.IntegerDomainError:
            # Rare: only then pay for a second walk over the value.
            return rfc8785.dumps(_as_exact_doubles(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput("json", f"cannot be canonicalized under RFC 8785: {exc}") from None
    except RecursionError:
        raise InvalidInput("json", "cannot be canonicalized under RFC 8785: nested too deeply") from None


def digest_json(value: Any) -> bytes:
    """``rfc8785-jcs-v1``: SHA-256 of the RFC 8785 canonical form of ``value``."""
    return hashlib.sha256(canonical_json(value)).digest()


def digest_stream(stream: BinaryIO) -> bytes:
    """``raw-bytes`` over a binary stream, read in 1 MiB chunks."""
    hasher = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        hasher.update(chunk)
    return hasher.digest()


def digest_file(path: str | Path) -> bytes:
    """``raw-bytes`` of a file, streamed so any size works in constant memory."""
    with open(path, "rb") as handle:
        return digest_stream(handle)


def digest_as(rule: Canonicalization, value: Any) -> bytes:
    """Hash ``value`` under ``rule`` (bytes for raw-bytes, str for text, any JSON value)."""
    if rule is Canonicalization.RAW_BYTES:
        return digest_bytes(value)
    if rule is Canonicalization.UTF8_NFC_V1:
        return digest_text(value)
    return digest_json(value)


def parse_hex_digest(value: object, field: str = "digest") -> bytes:
    """Strictly parse 64 lower-case hex characters into 32 bytes."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a hex string, got {type(value).__name__}")
    if len(value) != 2 * DIGEST_SIZE:
        raise InvalidInput(field, f"must be 64 hex characters (SHA-256), got {len(value)}")
    if not _HEX_RE.fullmatch(value):
        if _HEX_RE.fullmatch(value.lower()):
            raise InvalidInput(field, "must be lower-case hex")
        raise InvalidInput(field, "is not hex")
    return bytes.fromhex(value)


def check_digest(value: object, field: str = "digest") -> bytes:
    """A raw 32-byte SHA-256 digest."""
    if not isinstance(value, bytes):
        raise InvalidInput(field, f"must be bytes, got {type(value).__name__}")
    if len(value) != DIGEST_SIZE:
        raise InvalidInput(field, f"must be a 32-byte SHA-256 digest, got {len(value)} bytes")
    return value


def digest_set(digest: bytes) -> dict[str, str]:
    """The in-toto DigestSet for a SHA-256 digest."""
    return {DIGEST_ALGORITHM: check_digest(digest).hex()}
