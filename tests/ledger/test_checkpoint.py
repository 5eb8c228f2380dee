"""C2SP tlog checkpoints: published vectors, strict body parsing, signing."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from anchorlog.ledger.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.note import NoteSigner, NoteVerifier, open_note, parse_note
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "test-vectors"
BODIES: dict[str, Any] = json.loads((VECTORS / "checkpoint_bodies.json").read_text())
REKOR: dict[str, Any] = json.loads((VECTORS / "rekor_v2.json").read_text())
NOTES: dict[str, Any] = json.loads((VECTORS / "signed_notes.json").read_text())
EXTRA: dict[str, Any] = json.loads((VECTORS / "extra" / "signed_note.json").read_text())

ROOT = hashlib.sha256(b"\x00hello world").digest()
SIGNER = NoteSigner.from_seed("example.com/log", bytes(range(32)))

fast = settings(deadline=None, max_examples=150)


# --- body format ---------------------------------------------------------------


def test_body_matches_x_mod_golden() -> None:
    golden = BODIES["tlog_golden"]
    assert ROOT.hex() == golden["root"]
    cp = Checkpoint(origin=golden["origin"], size=golden["size"], root_hash=ROOT)
    assert cp.body() == golden["body"].encode()
    assert Checkpoint.parse(golden["body"].encode()) == cp


def test_body_with_extensions() -> None:
    cp = Checkpoint("example.com/log", 0, ROOT, ("ext one", "two"))
    root64 = base64.b64encode(ROOT).decode()
    assert cp.body() == f"example.com/log\n0\n{root64}\next one\ntwo\n".encode()


INVALID_ROWS = [r for r in BODIES["rows"] if r["want_err"]]
PLACEHOLDER_ROWS = [r for r in BODIES["rows"] if not r["want_err"]]
ROW_FIELDS = {
    "invalid - insufficient lines": "checkpoint",
    "invalid - empty header": "checkpoint.origin",
    "invalid - missing newline on roothash": "checkpoint",
    "invalid size - not a number": "checkpoint.size",
    "invalid size - negative": "checkpoint.size",
    "invalid size - too large": "checkpoint.size",
    "invalid roothash - not base64": "checkpoint.root_hash",
}


@pytest.mark.parametrize("row", INVALID_ROWS, ids=lambda r: r["desc"])
def test_published_invalid_bodies(row: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as info:
        Checkpoint.parse(row["body"].encode())
    assert info.value.field == ROW_FIELDS[row["desc"]]


@pytest.mark.parametrize("row", PLACEHOLDER_ROWS, ids=lambda r: r["desc"])
def test_published_placeholder_bodies(row: dict[str, Any]) -> None:
    """formats' 'valid' rows use short placeholder roots ('bananas').

    Our parser demands a 32-byte SHA-256 root, so it rejects them for exactly
    that reason; with a real root swapped in, each parses, except trailing blank
    lines, which the spec forbids (extension lines MUST be non-empty).
    """
    body = row["body"]
    with pytest.raises(InvalidInput, match="must decode to 32 bytes") as info:
        Checkpoint.parse(body.encode())
    assert info.value.field == "checkpoint.root_hash"

    origin, size, _placeholder, rest = body.split("\n", 3)
    fixed = "\n".join([origin, size, base64.b64encode(ROOT).decode(), rest]).encode()
    if row["desc"] == "valid with trailing newlines":
        with pytest.raises(InvalidInput, match="extension line is empty"):
            Checkpoint.parse(fixed)
        return
    cp = Checkpoint.parse(fixed)
    assert (cp.origin, cp.size, cp.root_hash) == (origin, int(size), ROOT)
    assert cp.extensions == tuple(rest.split("\n")[:-1])
    assert cp.body() == fixed


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("", "is empty"),
        ("0123", "leading zero"),
        ("00", "leading zero"),
        ("+5", "sign"),
        ("-0", "sign"),
        (" 5", "unsigned ASCII decimal"),
        ("5 ", "unsigned ASCII decimal"),
        ("\u0661\u0662", "unsigned ASCII decimal"),  # Arabic-Indic digits
        ("1e3", "unsigned ASCII decimal"),
        (str(MAX_TREE_SIZE + 1), "larger than 2\\^63-1"),
        ("9" * 5000, "larger than 2\\^63-1"),
    ],
)
def test_parse_rejects_bad_sizes(size: str, message: str) -> None:
    body = f"o\n{size}\n{base64.b64encode(ROOT).decode()}\n".encode()
    with pytest.raises(InvalidInput, match=message) as info:
        Checkpoint.parse(body)
    assert info.value.field == "checkpoint.size"


def test_parse_size_bounds() -> None:
    for size in (0, 1, MAX_TREE_SIZE):
        cp = Checkpoint("o", size, ROOT)
        assert Checkpoint.parse(cp.body()) == cp


@pytest.mark.parametrize(
    ("root", "field", "message"),
    [
        (base64.b64encode(ROOT[:31]).decode(), "checkpoint.root_hash", "got 31"),
        (base64.b64encode(ROOT + b"x").decode(), "checkpoint.root_hash", "got 33"),
        (base64.b64encode(ROOT).decode().rstrip("="), "checkpoint.root_hash", "valid base64"),
        (base64.b64encode(ROOT).decode()[:-2] + "J=", "checkpoint.root_hash", "canonical"),
        (" " + base64.b64encode(ROOT).decode(), "checkpoint.root_hash", "valid base64"),
        (base64.urlsafe_b64encode(b"\xff" * 32).decode(), "checkpoint.root_hash", "valid base64"),
        ("", "checkpoint.root_hash", "got 0"),
    ],
)
def test_parse_rejects_bad_roots(root: str, field: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        Checkpoint.parse(f"o\n1\n{root}\n".encode())
    assert info.value.field == field


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b"o\n1\n%s\n\nx\n", "checkpoint.extensions[0]", "empty"),
        (b"o\n1\n%s\nx\n\n", "checkpoint.extensions[1]", "empty"),
        (b"o\t\n1\n%s\n", "checkpoint.origin", "U\\+0009"),
        (b"o\n1\n%s\nx\ry\n", "checkpoint.extensions[0]", "U\\+000D"),
        (b"\xffo\n1\n%s\n", "checkpoint", "UTF-8"),
        (b"o\r\n1\n%s\n", "checkpoint.origin", "U\\+000D"),
    ],
)
def test_parse_rejects_bad_lines(body: bytes, field: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        Checkpoint.parse(body % base64.b64encode(ROOT))
    assert info.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"origin": ""}, "checkpoint.origin"),
        ({"origin": "a\nb"}, "checkpoint.origin"),
        ({"origin": "a\x00"}, "checkpoint.origin"),
        ({"size": -1}, "checkpoint.size"),
        ({"size": MAX_TREE_SIZE + 1}, "checkpoint.size"),
        ({"size": True}, "checkpoint.size"),
        ({"size": 1.0}, "checkpoint.size"),
        ({"root_hash": ROOT[:16]}, "checkpoint.root_hash"),
        ({"root_hash": ROOT.hex()}, "checkpoint.root_hash"),
        ({"extensions": ["x"]}, "checkpoint.extensions"),
        ({"extensions": ("",)}, "checkpoint.extensions[0]"),
        ({"extensions": ("a", "b\nc")}, "checkpoint.extensions[1]"),
    ],
)
def test_constructor_validates(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"origin": "example.com/log", "size": 1, "root_hash": ROOT}
    with pytest.raises(InvalidInput) as info:
        Checkpoint(**{**args, **kwargs})
    assert info.value.field == field


# --- signing and verifying -----------------------------------------------------


def test_sign_and_verify_round_trip() -> None:
    cp = Checkpoint("example.com/log", 42, ROOT)
    note = sign_checkpoint(cp, SIGNER)
    assert note.startswith(cp.body() + b"\n\xe2\x80\x94 example.com/log ")
    assert verify_checkpoint(note, SIGNER.verifier()) == cp
    assert verify_checkpoint(note, SIGNER.verifier(), origin="example.com/log") == cp


def test_verify_refuses_other_key_and_other_origin() -> None:
    cp = Checkpoint("example.com/log", 42, ROOT)
    note = sign_checkpoint(cp, SIGNER)
    stranger = NoteSigner.from_seed("example.com/log", b"\x09" * 32)
    with pytest.raises(VerificationError, match="no signature from a known key"):
        verify_checkpoint(note, stranger.verifier())
    with pytest.raises(VerificationError, match="not the expected 'example.com/other'"):
        verify_checkpoint(note, SIGNER.verifier(), origin="example.com/other")
    other_origin = sign_checkpoint(Checkpoint("example.com/other", 1, ROOT), SIGNER)
    with pytest.raises(VerificationError, match="origin 'example.com/other'"):
        verify_checkpoint(other_origin, SIGNER.verifier())


def test_verify_refuses_signed_text_that_is_not_a_checkpoint() -> None:
    from anchorlog.ledger.note import sign_note

    note = sign_note(b"example.com/log\n12\n", [SIGNER])
    with pytest.raises(InvalidInput, match="needs origin, tree size and root hash"):
        verify_checkpoint(note, SIGNER.verifier())


@pytest.mark.parametrize(
    "origin", ["go.sum database tree", "DSSEv1 28 application/vnd.in-toto+json", "a\u00a0b", "a+b"]
)
def test_sign_refuses_origins_with_spaces_or_plus(origin: str) -> None:
    """A DSSE PAE starts with 'DSSEv1 ': an origin without spaces can't."""
    cp = Checkpoint(origin, 1, ROOT)  # valid per spec, and verifiable when others sign it
    with pytest.raises(InvalidInput) as info:
        sign_checkpoint(cp, SIGNER)
    assert info.value.field == "checkpoint.origin"


def independent_verify(note: bytes, name: str, public_key: bytes) -> tuple[str, int, bytes]:
    """A from-scratch checkpoint check that shares no code with anchorlog."""
    text, _, sigs = note.rpartition(b"\n\n")
    text += b"\n"
    want_id = hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]
    for line in sigs.decode().splitlines():
        dash, line_name, b64 = line.split(" ")
        raw = base64.b64decode(b64, validate=True)
        if dash == "\u2014" and line_name == name and raw[:4] == want_id:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], text)
            origin, size, root = text.decode().split("\n")[:3]
            return origin, int(size), base64.b64decode(root)
    raise AssertionError("no signature line from the key")


def test_signed_checkpoint_passes_an_independent_verifier() -> None:
    cp = Checkpoint("example.com/log", 123456789012, ROOT)
    note = sign_checkpoint(cp, SIGNER)
    assert independent_verify(note, SIGNER.name, SIGNER.public_key) == (cp.origin, cp.size, ROOT)
    # ... and that independent verifier accepts a published checkpoint too.
    log = REKOR["logs"][0]
    case = REKOR["checkpoints"][0]
    got = independent_verify(case["note"].encode(), log["origin"], bytes.fromhex(log["public_key"]))
    assert got[:2] == (log["origin"], 736)


# --- published signed checkpoints ----------------------------------------------

ALPHA1 = next(log for log in REKOR["logs"] if log["origin"] == "log2025-alpha1.rekor.sigstage.dev")


def rekor_verifier(log: dict[str, Any]) -> NoteVerifier:
    return NoteVerifier.from_public_key(log["origin"], bytes.fromhex(log["public_key"]))


@pytest.mark.parametrize("log", REKOR["logs"], ids=lambda log: log["origin"])
def test_rekor_log_id_prefix_is_note_key_id(log: dict[str, Any]) -> None:
    assert rekor_verifier(log).key_id == bytes.fromhex(log["log_id"])[:4]


@pytest.mark.parametrize("case", REKOR["checkpoints"], ids=lambda c: c["case"])
def test_rekor_v2_checkpoints(case: dict[str, Any]) -> None:
    note = case["note"].encode()
    verifier = rekor_verifier(ALPHA1)
    if case["want"] == "fail":
        with pytest.raises((InvalidInput, VerificationError)):
            verify_checkpoint(note, verifier)
        return
    cp = verify_checkpoint(note, verifier)
    assert cp.origin == ALPHA1["origin"]
    assert cp.size == 736
    assert cp.root_hash == base64.b64decode("rs1YPY0ydAV0lxgfrq5pE4oRpUJwo3syeps5+eGUTDI=")
    opened = open_note(note, [verifier])
    assert [s.name for s in opened.verified] == [ALPHA1["origin"]]


@pytest.mark.parametrize("entry", REKOR["entries"], ids=lambda e: e["case"])
def test_rekor_v2_entry_checkpoints(entry: dict[str, Any]) -> None:
    log = next(log for log in REKOR["logs"] if log["log_id"] == entry["log_id"])
    cp = verify_checkpoint(entry["checkpoint"].encode(), rekor_verifier(log))
    assert (cp.size, cp.root_hash.hex()) == (entry["size"], entry["root"])


@pytest.mark.parametrize("case", NOTES["checkpoints"], ids=lambda c: c["desc"])
def test_sumdb_checkpoints(case: dict[str, Any]) -> None:
    """sum.golang.org's origin has spaces and differs from its key name."""
    note = case["note"].encode()
    verifiers = [NoteVerifier.from_vkey(v) for v in case["verify_with"]]
    cp = verify_checkpoint(note, verifiers[0], origin=case["origin"])
    assert (cp.origin, cp.size) == (case["origin"], case["size"])
    with pytest.raises(VerificationError, match="not the expected 'sum.golang.org'"):
        verify_checkpoint(note, verifiers[0])
    opened = open_note(note, verifiers)
    assert len(opened.verified) == len(verifiers)


def test_c2sp_example_checkpoint_parses() -> None:
    case = EXTRA["checkpoint_parse_only"]
    cp = Checkpoint.parse(parse_note(case["note"].encode()).text)
    assert (cp.origin, cp.size) == (case["origin"], case["size"])
    assert cp.root_hash == base64.b64decode(case["root_b64"])


# --- properties ----------------------------------------------------------------

lines = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)
checkpoints = st.builds(
    Checkpoint,
    origin=lines,
    size=st.integers(0, MAX_TREE_SIZE),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(lines, max_size=3).map(tuple),
)


@fast
@given(cp=checkpoints)
def test_body_parse_round_trip(cp: Checkpoint) -> None:
    assert Checkpoint.parse(cp.body()) == cp


@fast
@given(
    data=st.one_of(
        st.binary(max_size=120),
        checkpoints.map(lambda c: c.body()).flatmap(
            lambda b: st.tuples(st.just(b), st.integers(0, len(b) - 1), st.integers(0, 255)).map(
                lambda t: t[0][: t[1]] + bytes([t[2]]) + t[0][t[1] + 1 :]
            )
        ),
    )
)
def test_parse_is_canonical(data: bytes) -> None:
    """Whatever parses re-serializes to the same bytes: one body, one checkpoint."""
    try:
        cp = Checkpoint.parse(data)
    except InvalidInput:
        return
    assert cp.body() == data


@fast
@given(cp=checkpoints.filter(lambda c: not any(ch.isspace() or ch == "+" for ch in c.origin)))
def test_sign_verify_property(cp: Checkpoint) -> None:
    signer = NoteSigner.from_seed(cp.origin, b"\x05" * 32)
    assert verify_checkpoint(sign_checkpoint(cp, signer), signer.verifier()) == cp
