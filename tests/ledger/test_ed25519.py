"""The one Ed25519 rule: RFC 8032 vectors, agreement with OpenSSL on honest and
tampered signatures, and refusal of what OpenSSL accepts under weak keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from anchorlog.ledger.ed25519 import check_public_key, verify_signature
from anchorlog.ledger.errors import InvalidInput
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "test-vectors"
# Group order L of edwards25519.
ORDER = 2**252 + 27742317777372353535851937790883648493
# Encodings of the eight points of small order (cofactor 8): the identity, the
# point of order 2, and those of orders 4 and 8 (RFC 8032 and libsodium's blocklist).
SMALL_ORDER = [
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    )
]


def _openssl_accepts(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_rfc8032_vector() -> None:
    case = json.loads((VECTORS / "ed25519_rfc8032.json").read_text())
    public, signature = bytes.fromhex(case["public_key"]), bytes.fromhex(case["signature"])
    message = bytes.fromhex(case["message"])
    assert verify_signature(public, signature, message)
    assert not verify_signature(public, signature, message + b"\x00")
    assert check_public_key(public) == public


@settings(max_examples=60, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=3000), flip=st.integers(0, 8 * 128 - 1))
def test_agrees_with_openssl_on_honest_and_tampered_signatures(seed: bytes, message: bytes, flip: int) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public, signature = _raw(key), key.sign(message)
    assert verify_signature(public, signature, message)
    assert _openssl_accepts(public, signature, message)
    # One bit flipped in the key, the signature or the message: refused by both.
    material = bytearray(public + signature + message)
    material[flip % len(material)] ^= 1 << (flip % 8)
    changed = bytes(material)
    tampered = (changed[:32], changed[32:96], changed[96:])
    assert not verify_signature(*tampered)
    assert not _openssl_accepts(*tampered)


def test_a_signature_with_s_not_reduced_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    signature = key.sign(b"m")
    s = int.from_bytes(signature[32:], "little") + ORDER  # same value mod L, non-canonical
    assert s < 2**256
    assert not verify_signature(_raw(key), signature[:32] + s.to_bytes(32, "little"), b"m")


@pytest.mark.parametrize("weak", SMALL_ORDER, ids=range(len(SMALL_ORDER)))
def test_small_order_keys_verify_nothing_and_cannot_be_registered(weak: bytes) -> None:
    # With the identity as R and S = 0 the check reduces to [8][h]A = identity
    # (cofactored) or [h]A = identity (cofactorless), true for some or all h
    # under a small-order A: a signature forged without any secret.
    forged = SMALL_ORDER[0] + bytes(32)
    for message in (b"", b"any statement at all", b"x" * 5000):
        assert not verify_signature(weak, forged, message)
    with pytest.raises(InvalidInput) as refused:
        check_public_key(weak, "new_public_key")
    assert refused.value.field == "new_public_key"


def test_openssl_accepts_the_forgery_under_the_identity_key() -> None:
    # Why the rule is libsodium's: this is what the previous check (OpenSSL) let through.
    assert _openssl_accepts(SMALL_ORDER[0], SMALL_ORDER[0] + bytes(32), b"any statement at all")
    assert not verify_signature(SMALL_ORDER[0], SMALL_ORDER[0] + bytes(32), b"any statement at all")


@pytest.mark.parametrize(
    ("public_key", "signature", "message"),
    [
        (b"", bytes(64), b"m"),
        (bytes(31), bytes(64), b"m"),
        (bytes(33), bytes(64), b"m"),
        (bytes(32), bytes(63), b"m"),
        (bytes(32), bytes(65), b"m"),
        ("k" * 32, bytes(64), b"m"),
        (bytes(32), bytes(64), "m"),
        (bytearray(32), bytes(64), b"m"),
    ],
)
def test_malformed_input_is_not_a_signature(public_key: object, signature: object, message: object) -> None:
    assert verify_signature(public_key, signature, message) is False  # type: ignore[arg-type]


def test_check_public_key_refuses_wrong_lengths_and_off_curve_points() -> None:
    for raw in (b"", bytes(31), bytes(33)):
        with pytest.raises(InvalidInput, match="32-byte"):
            check_public_key(raw)
    # y = p - 1 + 2 = p + 1 is not canonical (y >= p); 2 is not the y of a curve point.
    p = 2**255 - 19
    for y in (p + 1, 2):
        with pytest.raises(InvalidInput, match="not a usable Ed25519 public key"):
            check_public_key(y.to_bytes(32, "little"))
    honest = _raw(Ed25519PrivateKey.generate())
    assert check_public_key(honest) == honest
