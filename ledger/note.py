"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A signed note is a UTF-8 text ending in a newline, a blank line, then one or more
signature lines ``— <key name> base64(key ID || signature)``. Only the Ed25519
signature type (0x01) is implemented; signatures of other types or from keys the
caller does not know are parsed and reported, never trusted.

Key strings follow the golang.org/x/mod/sumdb/note encoding:

* verifier key: ``<name>+<8 hex key ID>+base64(0x01 || 32-byte public key)``
* signer key: ``PRIVATE+KEY+<name>+<8 hex key ID>+base64(0x01 || 32-byte seed)``

with key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4].

Parsing is stricter than the Go reference in two ways, both so that each value has
exactly one encoding: signature base64 must be canonical (unused trailing bits
zero), and the hex key ID in key strings must be lower case.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from anchorlog.ledger.ed25519 import verify_signature
from anchorlog.ledger.errors import InvalidInput, VerificationError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "VerifiedNote",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
]

ALG_ED25519 = 0x01
# The spec asks verifiers to cap signatures (at least 16 must be accepted) and
# notes; post-quantum signatures can approach 5 kB, so 100 lines fit in 1 MB.
MAX_SIGNATURES = 100
MAX_NOTE_SIZE = 1_000_000

_KEY_ID_SIZE = 4
_PUBLIC_KEY_SIZE = 32
_SEED_SIZE = 32
_SIGNATURE_SIZE = 64
_SKEY_PREFIX = "PRIVATE+KEY+"
_SIG_PREFIX = "\u2014 "  # em dash, space
_SIG_PREFIX_BYTES = _SIG_PREFIX.encode("utf-8")


# --- small shared checks -------------------------------------------------------


def _check_name(name: object, field: str) -> str:
    """Key names: non-empty, no Unicode space, no '+', no control character."""
    if not isinstance(name, str):
        raise InvalidInput(field, f"must be a str, got {type(name).__name__}")
    if not name:
        raise InvalidInput(field, "key name is empty")
    for i, ch in enumerate(name):
        if ch == "+":
            raise InvalidInput(field, f"key name {name!r} contains '+' at index {i}")
        if ch.isspace():
            raise InvalidInput(field, f"key name {name!r} contains a space (U+{ord(ch):04X}) at index {i}")
        if ord(ch) < 0x20:
            raise InvalidInput(field, f"key name {name!r} contains control character U+{ord(ch):04X}")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise InvalidInput(field, f"key name {name!r} contains a lone surrogate at index {i}")
    return name


def _check_bytes(value: object, field: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidInput(field, f"must be bytes, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise InvalidInput(field, f"must be {size} bytes, got {len(value)}")
    return value


def _b64decode(text: str, field: str, *, secret: bool = False, canonical: bool = True) -> bytes:
    """Standard padded base64; canonical by default so each value has one encoding."""
    shown = "key" if secret else repr(text)  # never echo a secret into an error
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise InvalidInput(field, f"{shown} is not valid base64") from None
    if canonical and base64.b64encode(raw).decode("ascii") != text:
        raise InvalidInput(field, f"{shown} is not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _parse_hex_id(hexid: str, field: str) -> bytes:
    if len(hexid) != 2 * _KEY_ID_SIZE:
        raise InvalidInput(field, f"key ID {hexid!r} must be 8 hex digits, got {len(hexid)} characters")
    if any(c not in "0123456789abcdef" for c in hexid):
        raise InvalidInput(field, f"key ID {hexid!r} must be 8 lower-case hex digits")
    return bytes.fromhex(hexid)


def _check_text(data: bytes, field: str) -> str:
    """Valid UTF-8 with no ASCII control character other than newline."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(field, f"is not valid UTF-8 (byte offset {exc.start})") from exc
    for i, ch in enumerate(decoded):
        if ord(ch) < 0x20 and ch != "\n":
            raise InvalidInput(
                field, f"contains control character U+{ord(ch):04X} at character {i}"
            )
    return decoded


def key_id(name: str, public_key: bytes) -> bytes:
    """Ed25519 note key ID: SHA-256(name || 0x0A || 0x01 || public_key)[:4]."""
    _check_name(name, "name")
    _check_bytes(public_key, "public_key", _PUBLIC_KEY_SIZE)
    material = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    return hashlib.sha256(material).digest()[:_KEY_ID_SIZE]


# --- keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 note verifier key. ``key_id`` must match ``name`` and the key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name, "verifier.name")
        _check_bytes(self.key_id, "verifier.key_id", _KEY_ID_SIZE)
        _check_bytes(self.public_key, "verifier.public_key", _PUBLIC_KEY_SIZE)
        expected = key_id(self.name, self.public_key)
        if not hmac.compare_digest(expected, self.key_id):
            raise InvalidInput(
                "verifier.key_id",
                f"{self.key_id.hex()} does not match name and key (expected {expected.hex()})",
            )

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> NoteVerifier:
        """The verifier for a raw 32-byte Ed25519 key, with its key ID computed."""
        return cls(name=name, key_id=key_id(name, public_key), public_key=public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``name+hexid+base64(0x01||key)``."""
        if not isinstance(vkey, str):
            raise InvalidInput("vkey", f"must be a str, got {type(vkey).__name__}")
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise InvalidInput("vkey", "must have the form name+hexid+base64key")
        name, hexid, key64 = parts
        _check_name(name, "vkey")
        kid = _parse_hex_id(hexid, "vkey")
        # Lenient on unused base64 bits here, like x/mod: a well-formed 33-byte
        # key has none, so a bad key still fails below with the precise reason.
        key = _b64decode(key64, "vkey", canonical=False)
        if not key:
            raise InvalidInput("vkey", "key is empty")
        # The key ID covers the algorithm byte and the key, so check it first: a
        # mismatch is the most precise diagnosis of a mangled key string.
        expected = hashlib.sha256(name.encode("utf-8") + b"\n" + key).digest()[:_KEY_ID_SIZE]
        if not hmac.compare_digest(expected, kid):
            raise InvalidInput(
                "vkey", f"key ID {hexid} does not match name and key (expected {expected.hex()})"
            )
        if key[0] != ALG_ED25519:
            raise InvalidInput("vkey", f"unknown signature algorithm 0x{key[0]:02x} (want 0x01)")
        if len(key) != 1 + _PUBLIC_KEY_SIZE:
            raise InvalidInput(
                "vkey", f"Ed25519 public key must be 32 bytes, got {len(key) - 1}"
            )
        return cls(name=name, key_id=kid, public_key=key[1:])

    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + self.public_key)}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """True iff ``signature`` (64 bytes, no key ID) is this key's over ``text``."""
        if not isinstance(text, bytes) or not isinstance(signature, bytes):
            return False
        if len(signature) != _SIGNATURE_SIZE:
            return False
        return verify_signature(self.public_key, signature, text)  # strict: see ledger/ed25519.py


class NoteSigner:
    """An Ed25519 note signer. The seed is only reachable through ``skey()``."""

    __slots__ = ("_key", "_key_id", "_name", "_public_key")

    _key: Ed25519PrivateKey
    _key_id: bytes
    _name: str
    _public_key: bytes

    def __init__(self, name: str, seed: bytes) -> None:
        _check_name(name, "signer.name")
        _check_bytes(seed, "signer.seed", _SEED_SIZE)
        key = Ed25519PrivateKey.from_private_bytes(seed)
        public_key = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_public_key", public_key)
        object.__setattr__(self, "_key_id", key_id(name, public_key))

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError("NoteSigner is immutable")

    def __repr__(self) -> str:
        return f"NoteSigner(name={self._name!r}, key_id={self._key_id.hex()!r})"

    def __reduce__(self) -> object:
        # Pickling would copy the secret somewhere nobody meant it to go.
        raise TypeError("NoteSigner cannot be pickled; export it explicitly with skey()")

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        seed = Ed25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        return cls(name, seed)

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> NoteSigner:
        return cls(name, seed)

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+name+hexid+base64(0x01||seed)``."""
        # Messages never quote the skey: it is a secret.
        if not isinstance(skey, str):
            raise InvalidInput("skey", f"must be a str, got {type(skey).__name__}")
        if not skey.startswith(_SKEY_PREFIX):
            raise InvalidInput("skey", "must start with PRIVATE+KEY+")
        parts = skey[len(_SKEY_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise InvalidInput("skey", "must have the form PRIVATE+KEY+name+hexid+base64key")
        name, hexid, key64 = parts
        _check_name(name, "skey")
        kid = _parse_hex_id(hexid, "skey")
        key = _b64decode(key64, "skey", secret=True, canonical=False)
        if not key:
            raise InvalidInput("skey", "key is empty")
        if key[0] != ALG_ED25519:
            raise InvalidInput("skey", f"unknown signature algorithm 0x{key[0]:02x} (want 0x01)")
        if len(key) != 1 + _SEED_SIZE:
            raise InvalidInput("skey", f"Ed25519 seed must be 32 bytes, got {len(key) - 1}")
        signer = cls(name, key[1:])
        if not hmac.compare_digest(signer.key_id, kid):
            raise InvalidInput(
                "skey",
                f"key ID {hexid} does not match the key (expected {signer.key_id.hex()})",
            )
        return signer

    def skey(self) -> str:
        """The secret key string. Handle it like the secret it is."""
        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return f"{_SKEY_PREFIX}{self._name}+{self._key_id.hex()}+{_b64(bytes([ALG_ED25519]) + seed)}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(name=self._name, key_id=self._key_id, public_key=self._public_key)

    def sign(self, text: bytes) -> bytes:
        """The 64-byte Ed25519 signature over exactly ``text``."""
        _check_bytes(text, "text")
        return self._key.sign(text)


# --- notes ---------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line. ``signature`` excludes the 4-byte key ID prefix; it is
    64 bytes for Ed25519 and may be any non-empty length for other types."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_name(self.name, "signature.name")
        _check_bytes(self.key_id, "signature.key_id", _KEY_ID_SIZE)
        _check_bytes(self.signature, "signature.signature")
        if not self.signature:
            raise InvalidInput("signature.signature", "is empty")

    def line(self) -> bytes:
        """The signature line, newline included."""
        return f"{_SIG_PREFIX}{self.name} {_b64(self.key_id + self.signature)}\n".encode()


@dataclass(frozen=True)
class Note:
    """A syntactically valid signed note; nothing about it is verified."""

    text: bytes
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True)
class VerifiedNote:
    """A note with at least one good signature from a known key.

    ``verified`` holds one signature per known key (in note order); ``unverified``
    holds the lines from keys the caller did not supply, which must not be trusted.
    """

    text: bytes
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def _check_note_text(text: object) -> bytes:
    text = _check_bytes(text, "text")
    if not text:
        raise InvalidInput("text", "is empty; a note text ends in a newline")
    _check_text(text, "text")
    if not text.endswith(b"\n"):
        raise InvalidInput("text", "does not end in a newline")
    return text


def sign_note(text: bytes, signers: Sequence[NoteSigner]) -> bytes:
    """``text`` + blank line + one Ed25519 signature line per signer.

    Any text ending in a newline round-trips: the parser splits at the *last*
    blank line, and signature lines are never blank.
    """
    _check_note_text(text)
    if not signers:
        raise InvalidInput("signers", "at least one signer is required")
    if len(signers) > MAX_SIGNATURES:
        raise InvalidInput("signers", f"at most {MAX_SIGNATURES} signers, got {len(signers)}")
    seen: set[tuple[str, bytes]] = set()
    lines = []
    for i, signer in enumerate(signers):
        if not isinstance(signer, NoteSigner):
            raise InvalidInput(f"signers[{i}]", f"must be a NoteSigner, got {type(signer).__name__}")
        ident = (signer.name, signer.key_id)
        if ident in seen:
            raise InvalidInput(f"signers[{i}]", f"key {signer.name}+{signer.key_id.hex()} repeated")
        seen.add(ident)
        lines.append(NoteSignature(signer.name, signer.key_id, signer.sign(text)).line())
    note = text + b"\n" + b"".join(lines)
    if len(note) > MAX_NOTE_SIZE:
        raise InvalidInput("text", f"signed note would be {len(note)} bytes, over {MAX_NOTE_SIZE}")
    return note


def _parse_signature_line(line: bytes, number: int) -> NoteSignature:
    where = f"signature line {number}"
    if not line.startswith(_SIG_PREFIX_BYTES):
        raise InvalidInput("note", f"{where} does not start with an em dash (U+2014) and a space")
    name, sep, b64 = line[len(_SIG_PREFIX_BYTES) :].decode("utf-8").partition(" ")
    if not sep:
        raise InvalidInput("note", f"{where} has no space between key name and signature")
    try:
        _check_name(name, "note")
    except InvalidInput as exc:
        raise InvalidInput("note", f"{where}: {exc.message}") from None
    if not b64:
        raise InvalidInput("note", f"{where} has an empty signature")
    try:
        raw = _b64decode(b64, "note")
    except InvalidInput:
        raise InvalidInput("note", f"{where}: signature is not valid canonical base64") from None
    if len(raw) <= _KEY_ID_SIZE:
        raise InvalidInput(
            "note", f"{where}: signature is {len(raw)} bytes, need a 4-byte key ID and more"
        )
    return NoteSignature(name=name, key_id=raw[:_KEY_ID_SIZE], signature=raw[_KEY_ID_SIZE:])


def parse_note(data: bytes) -> Note:
    """Parse a signed note's syntax. Verifies nothing; see ``open_note``."""
    _check_bytes(data, "note")
    if len(data) > MAX_NOTE_SIZE:
        raise InvalidInput("note", f"is {len(data)} bytes, over the {MAX_NOTE_SIZE} limit")
    _check_text(data, "note")
    split = data.rfind(b"\n\n")
    if split < 0:
        raise InvalidInput("note", "has no blank line separating text from signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block:
        raise InvalidInput("note", "has no signature lines after the blank line")
    if not block.endswith(b"\n"):
        raise InvalidInput("note", "last signature line does not end in a newline")
    lines = block[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise InvalidInput("note", f"has {len(lines)} signature lines, over {MAX_SIGNATURES}")
    sigs = tuple(_parse_signature_line(line, n) for n, line in enumerate(lines, 1))
    return Note(text=text, signatures=sigs)


def open_note(data: bytes, verifiers: Sequence[NoteVerifier]) -> VerifiedNote:
    """Parse a note and verify it against the known ``verifiers``.

    Per the spec: a line whose (name, key ID) matches a known key must verify or
    the whole note is rejected; other lines are ignored (returned as unverified);
    at least one known key must have signed.
    """
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for i, v in enumerate(verifiers):
        if not isinstance(v, NoteVerifier):
            raise InvalidInput(f"verifiers[{i}]", f"must be a NoteVerifier, got {type(v).__name__}")
        ident = (v.name, v.key_id)
        if ident in known and known[ident] != v:
            raise InvalidInput(
                f"verifiers[{i}]", f"two different keys share name and key ID {v.vkey()}"
            )
        known[ident] = v
    note = parse_note(data)
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    done: set[tuple[str, bytes]] = set()
    for sig in note.signatures:
        ident = (sig.name, sig.key_id)
        verifier = known.get(ident)
        if verifier is None:
            unverified.append(sig)
            continue
        if not verifier.verify(note.text, sig.signature):
            raise VerificationError(
                f"signature from known key {sig.name}+{sig.key_id.hex()} does not verify"
            )
        if ident not in done:
            done.add(ident)
            verified.append(sig)
    if not verified:
        seen = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in note.signatures)
        wanted = ", ".join(f"{n}+{k.hex()}" for n, k in known) or "none given"
        raise VerificationError(
            f"no signature from a known key (note signed by {seen}; known keys: {wanted})"
        )
    return VerifiedNote(text=note.text, verified=tuple(verified), unverified=tuple(unverified))
