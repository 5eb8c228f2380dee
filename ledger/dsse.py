"""DSSE envelopes (https://github.com/secure-systems-lab/dsse) with Ed25519.

An envelope is JSON ``{"payload": b64, "payloadType": str, "signatures": [{"keyid":
str, "sig": b64}, ...]}``; each signature is over the pre-authentication encoding

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with LEN the ASCII decimal byte length. The spec allows standard or URL-safe
base64; we accept both, padded, and refuse anything else.

The ``keyid`` is only a hint: which key verifies an envelope is decided by the
caller (the key registry), never by the envelope. The envelope bytes are kept
verbatim by the log; ``Envelope`` is only a parsed view of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from anchorlog.ledger.ed25519 import PUBLIC_KEY_BYTES, verify_signature
from anchorlog.ledger.errors import InvalidInput, VerificationError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PAYLOAD_TYPE_INTOTO = "application/vnd.in-toto+json"
MAX_ENVELOPE_SIGNATURES = 16
MAX_KEYID_LENGTH = 256
_ENVELOPE_FIELDS = frozenset({"payload", "payloadType", "signatures"})
_SIGNATURE_FIELDS = frozenset({"keyid", "sig"})
_STD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")
# The compact one-signature form ``encode_envelope`` writes (what clients send),
# with string values free of quotes, backslashes, control and non-ASCII
# characters: for such bytes json.loads gives exactly the captured strings, so
# the strict parser can be skipped. Anything else takes the strict parser.
# The payload is taken only in the standard base64 alphabet (what clients
# write): the match is then the check b64decode_either makes before decoding.
_TEXT = rb"[\x20\x21\x23-\x5b\x5d-\x7e]*"
_STD_B64_BYTES = rb"[A-Za-z0-9+/]*={0,2}"
_COMPACT_ENVELOPE = re.compile(
    rb'\{"payload":"(%s)","payloadType":"(%s)","signatures":\[\{"keyid":"(%s)","sig":"(%s)"\}\]\}'
    % (_STD_B64_BYTES, _TEXT, _TEXT, _TEXT)
)


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding: exactly the bytes that are signed."""
    if not isinstance(payload_type, str):
        raise InvalidInput("payloadType", f"must be a str, got {type(payload_type).__name__}")
    if not isinstance(payload, bytes):
        raise InvalidInput("payload", f"must be bytes, got {type(payload).__name__}")
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def ed25519_key_id(public_key: bytes) -> str:
    """anchorlog's ID of a vendor key: lower-case hex SHA-256 of the raw 32-byte key."""
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise InvalidInput("public_key", "must be a raw 32-byte Ed25519 public key")
    return hashlib.sha256(public_key).hexdigest()


def b64decode_either(value: object, field: str) -> bytes:
    """Standard or URL-safe base64, correctly padded, nothing else."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a base64 string, got {type(value).__name__}")
    if len(value) % 4:
        raise InvalidInput(field, "is not valid base64 (length is not a multiple of 4)")
    try:
        if _STD_B64.fullmatch(value):
            return base64.b64decode(value, validate=True)
        if _URL_B64.fullmatch(value):
            return base64.urlsafe_b64decode(value)
    except (binascii.Error, ValueError):
        pass
    raise InvalidInput(field, "is not valid base64")


def _b64decode_standard(value: bytes, field: str) -> bytes:
    """``b64decode_either`` for bytes already known to be in the standard alphabet.

    The same decoder, with no copy to ``str`` and no second scan of the alphabet.
    """
    if len(value) % 4:
        raise InvalidInput(field, "is not valid base64 (length is not a multiple of 4)")
    try:
        return binascii.a2b_base64(value, strict_mode=True)  # what b64decode(validate=True) runs
    except (binascii.Error, ValueError):
        raise InvalidInput(field, "is not valid base64") from None


@dataclass(frozen=True)
class Signature:
    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    """A parsed DSSE envelope. Nothing about it is verified."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    @classmethod
    def parse(cls, data: bytes, *, max_bytes: int | None = None) -> Envelope:
        """Parse envelope JSON strictly; every failure names the field."""
        if not isinstance(data, bytes):
            raise InvalidInput("envelope", f"must be bytes, got {type(data).__name__}")
        if max_bytes is not None and len(data) > max_bytes:
            raise InvalidInput("envelope", f"{len(data)} bytes exceeds the limit of {max_bytes}")
        compact = _COMPACT_ENVELOPE.fullmatch(data)
        if compact is not None:
            return cls._from_compact(*compact.groups())
        doc = strict_json(data, "envelope")
        if not isinstance(doc, dict):
            raise InvalidInput("envelope", "must be a JSON object")
        unknown = set(doc) - _ENVELOPE_FIELDS
        if unknown:
            raise InvalidInput("envelope", f"unknown fields {sorted(unknown)}")
        payload_type = doc.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise InvalidInput("envelope.payloadType", "must be a non-empty string")
        if "payload" not in doc:
            raise InvalidInput("envelope.payload", "is missing")
        payload = b64decode_either(doc["payload"], "envelope.payload")
        raw_sigs = doc.get("signatures")
        if not isinstance(raw_sigs, list) or not raw_sigs:
            raise InvalidInput("envelope.signatures", "must be a non-empty list")
        if len(raw_sigs) > MAX_ENVELOPE_SIGNATURES:
            raise InvalidInput(
                "envelope.signatures", f"at most {MAX_ENVELOPE_SIGNATURES}, got {len(raw_sigs)}"
            )
        signatures = []
        for i, raw in enumerate(raw_sigs):
            where = f"envelope.signatures[{i}]"
            if not isinstance(raw, dict):
                raise InvalidInput(where, "must be a JSON object")
            extra = set(raw) - _SIGNATURE_FIELDS
            if extra:
                raise InvalidInput(where, f"unknown fields {sorted(extra)}")
            keyid = raw.get("keyid", "")
            if not isinstance(keyid, str) or len(keyid) > MAX_KEYID_LENGTH:
                raise InvalidInput(f"{where}.keyid", f"must be a string of <= {MAX_KEYID_LENGTH}")
            sig = b64decode_either(raw.get("sig"), f"{where}.sig")
            if not sig:
                raise InvalidInput(f"{where}.sig", "is empty")
            signatures.append(Signature(sig=sig, keyid=keyid))
        return cls(payload_type=payload_type, payload=payload, signatures=tuple(signatures))

    @classmethod
    def _from_compact(cls, payload_b64: bytes, type_text: bytes, keyid_text: bytes, sig_b64: bytes) -> Envelope:
        """The values of a compact one-signature envelope, checked as ``parse`` checks them."""
        payload_type = type_text.decode("ascii")
        if not payload_type:
            raise InvalidInput("envelope.payloadType", "must be a non-empty string")
        payload = _b64decode_standard(payload_b64, "envelope.payload")
        where = "envelope.signatures[0]"
        keyid = keyid_text.decode("ascii")
        if len(keyid) > MAX_KEYID_LENGTH:
            raise InvalidInput(f"{where}.keyid", f"must be a string of <= {MAX_KEYID_LENGTH}")
        sig = b64decode_either(sig_b64.decode("ascii"), f"{where}.sig")
        if not sig:
            raise InvalidInput(f"{where}.sig", "is empty")
        return cls(payload_type=payload_type, payload=payload, signatures=(Signature(sig=sig, keyid=keyid),))


class _StrictJsonError(Exception):
    """Raised inside the decoder; strict_json names the field."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # in C; a key seen twice makes the dict shorter than the pairs
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _StrictJsonError(f"duplicate JSON key {key[:60]!r}")
            seen.add(key)
    return out


def _no_constants(name: str) -> Any:
    raise _StrictJsonError(f"{name} is not valid JSON")


# Immutable configuration, made once: json.loads with hooks builds a decoder per call.
_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def strict_json(data: bytes, field: str) -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys and NaN/Infinity.

    Duplicate keys are how two parsers can disagree about what was signed, so
    they are an error, not a last-one-wins.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(field, f"is not valid UTF-8 (byte offset {exc.start})") from None
    try:
        return _STRICT_DECODER.decode(text)
    except _StrictJsonError as exc:
        raise InvalidInput(field, str(exc)) from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(field, f"is not valid JSON: {exc.msg} at offset {exc.pos}") from None
    except ValueError as exc:
        # e.g. an integer beyond Python's int-from-string digit limit: bad input, not a crash.
        raise InvalidInput(field, f"is not valid JSON: {str(exc).split(';')[0][:120]}") from None
    except RecursionError:
        raise InvalidInput(field, "is nested too deeply") from None


def verify_envelope(envelope: Envelope, public_key: bytes, *, message: bytes | None = None) -> None:
    """Raise VerificationError unless a signature verifies with ``public_key`` (raw 32 bytes) over PAE.

    Signatures are checked by :func:`~anchorlog.ledger.ed25519.verify_signature`
    (strict: see that module). ``message`` is the envelope's PAE if the caller
    already computed it (callers that check one envelope with several keys).
    """
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
        raise InvalidInput("public_key", "must be a raw 32-byte Ed25519 public key")
    if message is None:
        message = envelope.pae()
    for signature in envelope.signatures:
        if verify_signature(public_key, signature.sig, message):
            return
    raise VerificationError(f"no envelope signature verifies with key {ed25519_key_id(public_key)[:16]}…")


def sign_envelope(
    payload_type: str,
    payload: bytes,
    private_key: Ed25519PrivateKey,
    *,
    keyid: str | None = None,
) -> bytes:
    """Sign ``payload`` and return compact envelope JSON bytes.

    ``keyid`` defaults to :func:`ed25519_key_id` of the key's public half.
    """
    public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = private_key.sign(pae(payload_type, payload))
    return encode_envelope(
        payload_type, payload, [Signature(sig=signature, keyid=keyid or ed25519_key_id(public))]
    )


def encode_envelope(payload_type: str, payload: bytes, signatures: Sequence[Signature]) -> bytes:
    """Compact envelope JSON with standard base64."""
    return json.dumps(
        {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in signatures
            ],
        },
        separators=(",", ":"),
    ).encode("utf-8")
