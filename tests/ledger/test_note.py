"""C2SP signed notes: published vectors, strict parsing, and properties."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.note import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_note,
    parse_note,
    sign_note,
)
from hypothesis import given, settings
from hypothesis import strategies as st

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "test-vectors"
NOTES: dict[str, Any] = json.loads((VECTORS / "signed_notes.json").read_text())
EXTRA: dict[str, Any] = json.loads((VECTORS / "extra" / "signed_note.json").read_text())
KEYS = NOTES["keys"]
SEEDED = [k for k in KEYS if "seed" in k]

PETER = next(k for k in KEYS if k["name"] == "PeterNeumann")
ENOCH = next(k for k in KEYS if k["name"] == "EnochRoot")
PETER_NOTE = NOTES["notes"][0]["signed"].encode()
QUOTE = NOTES["notes"][0]["text"].encode()

fast = settings(deadline=None, max_examples=150)


def signer_for(key: dict[str, Any]) -> NoteSigner:
    return NoteSigner.from_seed(key["name"], bytes.fromhex(key["seed"]))


def verifiers(vkeys: list[str]) -> list[NoteVerifier]:
    return [NoteVerifier.from_vkey(v) for v in vkeys]


# --- keys ----------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k["name"])
def test_vkey_round_trip_and_key_id(key: dict[str, Any]) -> None:
    v = NoteVerifier.from_vkey(key["vkey"])
    assert v.name == key["name"]
    assert v.vkey() == key["vkey"]
    assert key_id(v.name, v.public_key) == v.key_id
    assert NoteVerifier.from_public_key(v.name, v.public_key) == v


@pytest.mark.parametrize("key", SEEDED, ids=lambda k: k["name"])
def test_seed_gives_published_verifier(key: dict[str, Any]) -> None:
    signer = signer_for(key)
    assert signer.verifier().vkey() == key["vkey"]
    assert signer.name == key["name"]
    assert signer.public_key == NoteVerifier.from_vkey(key["vkey"]).public_key
    if "skey" in key:
        assert signer.skey() == key["skey"]
        parsed = NoteSigner.from_skey(key["skey"])
        assert parsed.verifier() == signer.verifier()


@pytest.mark.parametrize("pair", EXTRA["signing_keys"]["pairs"], ids=lambda p: p["vkey"][:10])
def test_extra_skey_vkey_pairs(pair: dict[str, str]) -> None:
    assert NoteSigner.from_skey(pair["skey"]).verifier().vkey() == pair["vkey"]


def test_key_id_is_sha256_of_name_newline_alg_key() -> None:
    v = NoteVerifier.from_vkey(PETER["vkey"])
    digest = hashlib.sha256(b"PeterNeumann\n\x01" + v.public_key).digest()
    assert key_id("PeterNeumann", v.public_key) == digest[:4] == bytes.fromhex("c74f20a3")


def test_signer_does_not_leak_seed() -> None:
    signer = NoteSigner.from_skey(PETER["skey"])
    seed = bytes.fromhex(PETER["seed"])
    for shown in (repr(signer), str(signer)):
        assert PETER["seed"] not in shown
        assert base64.b64encode(b"\x01" + seed).decode() not in shown
        assert "PeterNeumann" in shown and "c74f20a3" in shown
    with pytest.raises(TypeError):
        pickle.dumps(signer)
    with pytest.raises(AttributeError):
        signer._name = "x"  # type: ignore[misc]
    assert not hasattr(signer, "__dict__")


def test_skey_errors_never_echo_the_secret() -> None:
    secret_b64 = PETER["skey"].rsplit("+", 1)[1]
    bad = PETER["skey"].replace("+c74f20a3+", "+c74f20a4+")
    with pytest.raises(InvalidInput, match="does not match the key") as info:
        NoteSigner.from_skey(bad)
    assert secret_b64 not in str(info.value)
    with pytest.raises(InvalidInput, match="not valid base64") as info:
        NoteSigner.from_skey(PETER["skey"] + "!")
    assert secret_b64 not in str(info.value)


@pytest.mark.parametrize(
    ("skey", "message"),
    [
        ("PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "PRIVATE\\+KEY"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3", "form"),
        ("PRIVATE+KEY+Peter Neumann+c74f20a3+AA==", "space"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a+AA==", "8 hex digits"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+Ag==", "unknown signature algorithm 0x02"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AQID", "seed must be 32 bytes, got 2"),
    ],
)
def test_from_skey_rejects(skey: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        NoteSigner.from_skey(skey)


def test_generate_and_sign_verify() -> None:
    signer = NoteSigner.generate("example.com/log")
    sig = signer.sign(b"hello\n")
    assert len(sig) == 64
    v = signer.verifier()
    assert v.verify(b"hello\n", sig)
    assert not v.verify(b"hello!\n", sig)
    assert not v.verify(b"hello\n", sig[:-1])
    assert NoteSigner.from_skey(signer.skey()).sign(b"hello\n") == sig


@pytest.mark.parametrize("bad", NOTES["bad_vkeys"], ids=lambda b: b["why"])
def test_published_bad_vkeys(bad: dict[str, str]) -> None:
    message = "unknown signature algorithm" if "algorithm" in bad["why"] else "must be 32 bytes, got 36"
    with pytest.raises(InvalidInput, match=message):
        NoteVerifier.from_vkey(bad["vkey"])


def test_every_proper_substring_and_mangling_of_a_vkey_is_rejected() -> None:
    good = PETER["vkey"]
    candidates = {good[i:j] for i in range(len(good)) for j in range(i, len(good) + 1)}
    candidates.discard(good)
    candidates |= {good[:i] + chr(ord(c) + 1) + good[i + 1 :] for i, c in enumerate(good)}
    for candidate in candidates:
        with pytest.raises(InvalidInput):
            NoteVerifier.from_vkey(candidate)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "space"),
        ("Peter\u00a0Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "U\\+00A0"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "empty"),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex digits"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "lower-case"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "expected c74f20a3"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "base64"),
        ("PeterNeumann+c74f20a3", "form"),
        ("PeterNeumann+c74f20a3+", "empty"),
    ],
)
def test_from_vkey_precise_errors(vkey: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        NoteVerifier.from_vkey(vkey)


def test_verifier_constructor_checks_key_id() -> None:
    v = NoteVerifier.from_vkey(PETER["vkey"])
    with pytest.raises(InvalidInput, match="does not match"):
        NoteVerifier(name=v.name, key_id=b"\0\0\0\0", public_key=v.public_key)
    with pytest.raises(InvalidInput, match="32 bytes"):
        NoteVerifier(name=v.name, key_id=v.key_id, public_key=v.public_key[:31])


# --- published notes -----------------------------------------------------------


def test_signing_published_texts_with_published_seeds_gives_published_notes() -> None:
    both = NOTES["notes"][2]
    assert sign_note(QUOTE, [signer_for(PETER)]) == PETER_NOTE
    assert sign_note(QUOTE, [signer_for(PETER), signer_for(ENOCH)]) == both["signed"].encode()
    vector = EXTRA["verify_vectors"][0]
    signer = NoteSigner.from_skey(vector["skey"])
    assert sign_note(vector["text"].encode(), [signer]) == vector["note"].encode()


@pytest.mark.parametrize("case", NOTES["notes"], ids=lambda c: c["desc"])
def test_published_notes(case: dict[str, Any]) -> None:
    signed = case["signed"].encode()
    if case["want"] == "parse":
        note = parse_note(signed)
        assert note.text == case["text"].encode()
        assert [s.name for s in note.signatures] == ["quasimodo.example/salvatore"]
        return
    known = verifiers(case["verify_with"])
    if case["want"] == "fail":
        with pytest.raises(VerificationError, match="no signature from a known key"):
            open_note(signed, known)
        return
    opened = open_note(signed, known)
    assert opened.text == case["text"].encode()
    assert {s.name for s in opened.verified} == {v.name for v in known}
    all_names = {s.name for s in parse_note(signed).signatures}
    assert {s.name for s in opened.unverified} == all_names - {v.name for v in known}


@pytest.mark.parametrize("case", EXTRA["verify_vectors"], ids=lambda c: c["source"])
def test_extra_verify_vectors(case: dict[str, str]) -> None:
    opened = open_note(case["note"].encode(), verifiers([case["vkey"]]))
    assert opened.text == case["text"].encode()
    assert [s.name for s in opened.verified] == [case["vkey"].split("+")[0]]


@pytest.mark.parametrize("case", NOTES["reject"], ids=lambda c: c["desc"])
def test_published_rejects(case: dict[str, Any]) -> None:
    error = VerificationError if case["desc"].startswith("invalid signature") else InvalidInput
    with pytest.raises(error):
        open_note(bytes.fromhex(case["msg_hex"]), verifiers(case["verify_with"]))


# --- open_note semantics -------------------------------------------------------


def test_bad_signature_from_known_key_rejects_the_note_and_names_the_key() -> None:
    impostor = NoteSigner.from_seed("PeterNeumann", b"\x07" * 32)
    forged = NoteSignature("PeterNeumann", bytes.fromhex("c74f20a3"), impostor.sign(QUOTE))
    note = PETER_NOTE + forged.line()
    with pytest.raises(VerificationError, match="PeterNeumann\\+c74f20a3 does not verify"):
        open_note(note, verifiers([PETER["vkey"]]))


def test_same_name_or_same_id_alone_is_an_unknown_key() -> None:
    peter = verifiers([PETER["vkey"]])
    sig = parse_note(PETER_NOTE).signatures[0]
    other_id = NoteSignature(sig.name, b"\0\0\0\0", b"x" * 70)  # e.g. an ECDSA key
    other_name = NoteSignature("Impostor", sig.key_id, b"y" * 64)
    opened = open_note(PETER_NOTE + other_id.line() + other_name.line(), peter)
    assert opened.verified == (sig,)
    assert opened.unverified == (other_id, other_name)


def test_duplicate_lines_from_known_key_are_reported_once() -> None:
    line = PETER_NOTE.split(b"\n\n")[1]
    opened = open_note(PETER_NOTE + line, verifiers([PETER["vkey"]]))
    assert len(opened.verified) == 1


def test_conflicting_verifiers_are_refused() -> None:
    good = NoteVerifier.from_vkey(PETER["vkey"])
    assert open_note(PETER_NOTE, [good, good]).verified  # a repeat is harmless
    # A 4-byte key ID collision is cheap to an attacker; forge one by hand.
    twin = NoteVerifier.from_vkey(ENOCH["vkey"])
    object.__setattr__(twin, "name", good.name)
    object.__setattr__(twin, "key_id", good.key_id)
    with pytest.raises(InvalidInput, match="share name and key ID"):
        open_note(PETER_NOTE, [good, twin])


# --- strict parsing ------------------------------------------------------------


def _line(name: str, raw: bytes) -> bytes:
    return f"\u2014 {name} ".encode() + base64.b64encode(raw) + b"\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello\n\n", "no signature lines"),
        (b"hello\n", "no blank line"),
        (b"hello\n\n- Peter AAAAAAA=\n", "em dash"),
        (b"hello\n\n\xe2\x80\x94 Peter\n", "no space"),
        (b"hello\n\n\xe2\x80\x94  AAAAAAA=\n", "key name is empty"),
        (b"hello\n\n\xe2\x80\x94 Peter \n", "empty signature"),
        (b"hello\n\n\xe2\x80\x94 Peter AAAAAA==\n", "4-byte key ID"),
        (b"hello\n\n\xe2\x80\x94 Peter AAAAAAB=\n", "canonical base64"),
        (b"hello\n\n\xe2\x80\x94 Peter AAAA AAA=\n", "canonical base64"),
        (b"hel\rlo\n\n\xe2\x80\x94 Peter AAAAAAA=\n", "U\\+000D"),
        (b"hel\xc0\xaflo\n\n\xe2\x80\x94 Peter AAAAAAA=\n", "UTF-8"),
        (b"hello\n\n\xe2\x80\x94 Peter AAAAAAA=\n\n", "no signature lines"),
    ],
)
def test_parse_note_precise_errors(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_note(data)


def test_parse_note_limits() -> None:
    line = _line("k", b"\1\2\3\4" + b"s" * 64)
    assert len(parse_note(b"t\n\n" + line * MAX_SIGNATURES).signatures) == MAX_SIGNATURES
    with pytest.raises(InvalidInput, match="signature lines, over 100"):
        parse_note(b"t\n\n" + line * (MAX_SIGNATURES + 1))
    with pytest.raises(InvalidInput, match="over the 1000000 limit"):
        parse_note(b"t" * MAX_NOTE_SIZE + b"\n\n" + line)


def test_parse_accepts_non_ed25519_signature_lengths() -> None:
    # Cosignatures (type 0x04) and ECDSA lines have other lengths; they parse.
    note = parse_note(b"t\n\n" + _line("w", b"\1\2\3\4" + b"z" * 72))
    assert note == Note(b"t\n", (NoteSignature("w", b"\1\2\3\4", b"z" * 72),))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "empty"),
        (b"no newline", "newline"),
        (b"tab\there\n", "U\\+0009"),
        (b"\xff\n", "UTF-8"),
    ],
)
def test_sign_note_rejects_bad_text(text: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        sign_note(text, [signer_for(PETER)])


def test_sign_note_rejects_bad_signer_lists() -> None:
    with pytest.raises(InvalidInput, match="at least one signer"):
        sign_note(b"x\n", [])
    with pytest.raises(InvalidInput, match="repeated"):
        sign_note(b"x\n", [signer_for(PETER), signer_for(PETER)])


# --- properties ----------------------------------------------------------------

names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="+"),
    min_size=1,
    max_size=20,
).filter(lambda s: not any(c.isspace() for c in s))
texts = st.text(
    st.characters(blacklist_categories=("Cs",), min_codepoint=0x20) | st.just("\n"), max_size=200
).map(lambda s: (s + "\n").encode())
seeds = st.binary(min_size=32, max_size=32)


@fast
@given(text=texts, keys=st.lists(st.tuples(names, seeds), min_size=1, max_size=4,
                                unique_by=lambda k: k[0]))
def test_sign_parse_open_round_trip(text: bytes, keys: list[tuple[str, bytes]]) -> None:
    signers = [NoteSigner.from_seed(name, seed) for name, seed in keys]
    signed = sign_note(text, signers)
    note = parse_note(signed)
    assert note.text == text
    assert [(s.name, s.key_id) for s in note.signatures] == [(s.name, s.key_id) for s in signers]
    assert b"".join(s.line() for s in note.signatures) == signed[len(text) + 1 :]
    opened = open_note(signed, [signers[-1].verifier()])
    assert opened.text == text
    assert [s.name for s in opened.verified] == [signers[-1].name]
    assert len(opened.unverified) == len(signers) - 1
    v = NoteVerifier.from_vkey(signers[0].verifier().vkey())
    assert v == signers[0].verifier()


def _mutated_is_refused(signed: bytes, verifier: NoteVerifier, index: int, byte: int) -> None:
    mutated = signed[:index] + bytes([byte]) + signed[index + 1 :]
    with pytest.raises((InvalidInput, VerificationError)):
        open_note(mutated, [verifier])


@fast
@given(text=texts, seed=seeds, data=st.data())
def test_any_single_byte_mutation_is_refused(text: bytes, seed: bytes, data: st.DataObject) -> None:
    signer = NoteSigner.from_seed("example.com/log", seed)
    signed = sign_note(text, [signer])
    index = data.draw(st.integers(0, len(signed) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != signed[index]))
    _mutated_is_refused(signed, signer.verifier(), index, byte)


def test_every_position_of_published_note_is_tamper_evident() -> None:
    verifier = NoteVerifier.from_vkey(PETER["vkey"])
    for index in range(len(PETER_NOTE)):
        for mask in (0x01, 0x20, 0x80):
            _mutated_is_refused(PETER_NOTE, verifier, index, PETER_NOTE[index] ^ mask)


@fast
@given(data=st.binary(max_size=300))
def test_parse_note_never_crashes_and_is_canonical(data: bytes) -> None:
    try:
        note = parse_note(data)
    except InvalidInput:
        return
    assert note.text + b"\n" + b"".join(s.line() for s in note.signatures) == data
