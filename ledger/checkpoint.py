"""C2SP tlog checkpoints (https://c2sp.org/tlog-checkpoint) as signed notes.

A checkpoint body is::

    <origin>\\n<tree size in decimal>\\n<base64 of the 32-byte RFC 6962 root>\\n
    [<extension line>\\n ...]

Two levels of rules:

* ``Checkpoint`` enforces the spec, so that real third-party checkpoints parse
  (sum.golang.org's origin is ``go.sum database tree``, with spaces).
* ``sign_checkpoint`` also refuses origins with whitespace or ``+``. The log key
  signs DSSE envelopes too, and a DSSE PAE starts with ``DSSEv1 `` (a space), so
  no checkpoint we sign can be read as a PAE and vice versa. Verification checks
  the origin against the expected one, which closes the other direction.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.note import NoteSigner, NoteVerifier, open_note, sign_note

__all__ = ["MAX_TREE_SIZE", "Checkpoint", "sign_checkpoint", "verify_checkpoint"]

# Tree sizes are stored as SQLite integers and Go's x/mod tlog parses int64.
MAX_TREE_SIZE = 2**63 - 1
_ROOT_SIZE = 32
_DIGITS_RE = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() accepts other scripts


def _check_line(value: object, field: str) -> str:
    """A non-empty line of UTF-8-encodable text without control characters."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidInput(field, "is empty")
    for i, ch in enumerate(value):
        if ch == "\n":
            raise InvalidInput(field, f"contains a newline at index {i}")
        if ord(ch) < 0x20:
            raise InvalidInput(field, f"contains control character U+{ord(ch):04X} at index {i}")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise InvalidInput(field, f"contains a lone surrogate at index {i}")
    return value


def _parse_size(text: str) -> int:
    field = "checkpoint.size"
    if not text:
        raise InvalidInput(field, "is empty")
    if text[0] in "+-":
        raise InvalidInput(field, f"{text[:40]!r} has a sign; tree sizes are unsigned")
    if not _DIGITS_RE.fullmatch(text):
        raise InvalidInput(field, f"{text[:40]!r} is not an unsigned ASCII decimal number")
    if len(text) > 1 and text[0] == "0":
        raise InvalidInput(field, f"{text[:40]!r} has a leading zero")
    # Bound the length before int() so a huge line costs nothing.
    if len(text) > len(str(MAX_TREE_SIZE)) or int(text) > MAX_TREE_SIZE:
        raise InvalidInput(field, f"{text[:40]} is larger than 2^63-1")
    return int(text)


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, size and RFC 6962 root hash (SHA-256)."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint.origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise InvalidInput("checkpoint.size", f"must be an int, got {type(self.size).__name__}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise InvalidInput("checkpoint.size", f"{self.size} is outside 0..2^63-1")
        if not isinstance(self.root_hash, bytes):
            raise InvalidInput(
                "checkpoint.root_hash", f"must be bytes, got {type(self.root_hash).__name__}"
            )
        if len(self.root_hash) != _ROOT_SIZE:
            raise InvalidInput(
                "checkpoint.root_hash", f"must be {_ROOT_SIZE} bytes, got {len(self.root_hash)}"
            )
        if not isinstance(self.extensions, tuple):
            raise InvalidInput(
                "checkpoint.extensions",
                f"must be a tuple, got {type(self.extensions).__name__}",
            )
        for i, ext in enumerate(self.extensions):
            _check_line(ext, f"checkpoint.extensions[{i}]")

    def body(self) -> bytes:
        """The note text: the exact bytes a log signs."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def parse(cls, body: bytes) -> Checkpoint:
        """Parse a checkpoint body strictly; the inverse of ``body()``."""
        if not isinstance(body, bytes):
            raise InvalidInput("checkpoint", f"must be bytes, got {type(body).__name__}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("checkpoint", f"is not valid UTF-8 (byte offset {exc.start})") from None
        if not text.endswith("\n"):
            raise InvalidInput("checkpoint", "does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise InvalidInput(
                "checkpoint",
                f"has {len(lines)} line(s); needs origin, tree size and root hash",
            )
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise InvalidInput("checkpoint.origin", "is empty")
        size = _parse_size(size_text)
        try:
            root = base64.b64decode(root_text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise InvalidInput(
                "checkpoint.root_hash", f"{root_text[:60]!r} is not valid base64"
            ) from None
        if base64.b64encode(root).decode("ascii") != root_text:
            raise InvalidInput("checkpoint.root_hash", f"{root_text!r} is not canonical base64")
        if len(root) != _ROOT_SIZE:
            raise InvalidInput(
                "checkpoint.root_hash", f"must decode to {_ROOT_SIZE} bytes, got {len(root)}"
            )
        for i, ext in enumerate(extensions):
            if not ext:
                raise InvalidInput(f"checkpoint.extensions[{i}]", "extension line is empty")
        # The constructor checks what is left (control characters in lines).
        return cls(origin=origin, size=size, root_hash=root, extensions=tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> bytes:
    """Sign ``checkpoint`` as a note. Refuses origins with whitespace or '+'."""
    if not isinstance(checkpoint, Checkpoint):
        raise InvalidInput("checkpoint", f"must be a Checkpoint, got {type(checkpoint).__name__}")
    if not isinstance(signer, NoteSigner):
        raise InvalidInput("signer", f"must be a NoteSigner, got {type(signer).__name__}")
    for i, ch in enumerate(checkpoint.origin):
        if ch.isspace():
            raise InvalidInput(
                "checkpoint.origin",
                f"contains whitespace (U+{ord(ch):04X}) at index {i}; anchorlog signs only "
                "origins without spaces so a checkpoint can never look like a DSSE PAE",
            )
        if ch == "+":
            raise InvalidInput("checkpoint.origin", f"contains '+' at index {i}")
    return sign_note(checkpoint.body(), [signer])


def verify_checkpoint(
    note: bytes, verifier: NoteVerifier, *, origin: str | None = None
) -> Checkpoint:
    """Open a checkpoint note signed by ``verifier`` and return its checkpoint.

    The signature is checked before the body is read (the spec says unverified
    text must be ignored). ``origin`` defaults to the verifier's key name, as the
    spec recommends logs name their key after their origin. Other signatures
    (witness cosignatures, other keys) are ignored.
    """
    if not isinstance(verifier, NoteVerifier):
        raise InvalidInput("verifier", f"must be a NoteVerifier, got {type(verifier).__name__}")
    expected = verifier.name if origin is None else origin
    if not isinstance(expected, str) or not expected:
        raise InvalidInput("origin", "must be a non-empty str")
    opened = open_note(note, [verifier])
    checkpoint = Checkpoint.parse(opened.text)
    if checkpoint.origin != expected:
        raise VerificationError(
            f"checkpoint origin {checkpoint.origin!r} is not the expected {expected!r}"
        )
    return checkpoint
