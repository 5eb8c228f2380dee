"""Sample hashing beyond the published vectors in test_attestation_formats.py.

Covers what those tests do not: the rule dispatch, RFC 8785 properties and
refusals, NFC (not NFKC) edge cases, and that files are streamed in bounded
chunks across chunk boundaries.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from anchorlog.ledger.digests import (
    Canonicalization,
    canonical_json,
    canonical_text,
    check_digest,
    digest_as,
    digest_bytes,
    digest_file,
    digest_json,
    digest_set,
    digest_stream,
    digest_text,
    parse_hex_digest,
)
from anchorlog.ledger.errors import InvalidInput
from hypothesis import given, settings
from hypothesis import strategies as st

fast = settings(deadline=None, max_examples=100)
MIB = 1 << 20


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- the rules and their dispatch ------------------------------------------------------


def test_rule_names_are_the_documented_ones() -> None:
    assert {c.value for c in Canonicalization} == {"raw-bytes", "utf8-nfc-v1", "rfc8785-jcs-v1"}


def test_digest_as_dispatches_each_rule() -> None:
    assert digest_as(Canonicalization.RAW_BYTES, b"\xffraw") == sha(b"\xffraw")
    assert digest_as(Canonicalization.UTF8_NFC_V1, "Cafe\u0301") == sha("Caf\u00e9".encode())
    assert digest_as(Canonicalization.RFC8785_JCS_V1, {"b": 1, "a": [True, None]}) == sha(
        b'{"a":[true,null],"b":1}'
    )


def test_a_value_of_the_wrong_kind_for_its_rule_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        digest_as(Canonicalization.RAW_BYTES, "text")
    assert err.value.field == "data"
    with pytest.raises(InvalidInput) as err:
        digest_as(Canonicalization.UTF8_NFC_V1, b"bytes")
    assert err.value.field == "text"


def test_raw_bytes_accepts_buffers() -> None:
    assert digest_bytes(bytearray(b"abc")) == digest_bytes(memoryview(b"abc")) == sha(b"abc")


# --- utf8-nfc-v1 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nfc"),
    [
        ("\u1100\u1161", "\uac00"),  # Hangul jamo compose to one syllable
        ("\u212b", "\u00c5"),  # ANGSTROM SIGN is a singleton decomposition
        ("a\u0307\u0323", "\u1ea1\u0307"),  # combining marks reordered, then composed
        ("a\u0323\u0307", "\u1ea1\u0307"),
        ("\ufb01", "\ufb01"),  # NFC keeps compatibility ligatures (that would be NFKC)
        ("\uff21", "\uff21"),  # and full-width letters
        ("", ""),
    ],
)
def test_nfc_cases(text: str, nfc: str) -> None:
    assert canonical_text(text) == nfc.encode("utf-8")
    assert digest_text(text) == sha(nfc.encode("utf-8"))


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
@fast
def test_all_normal_forms_of_a_text_hash_alike(text: str) -> None:
    expected = digest_text(text)
    assert digest_text(unicodedata.normalize("NFD", text)) == expected
    assert digest_text(unicodedata.normalize("NFC", text)) == expected


def test_text_must_be_a_str() -> None:
    with pytest.raises(InvalidInput) as err:
        canonical_text(b"bytes")  # type: ignore[arg-type]
    assert (err.value.field, err.value.message) == ("text", "must be a str, got bytes")


# --- rfc8785-jcs-v1 --------------------------------------------------------------------------

keys = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=5)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


@given(json_values)
@fast
def test_canonical_form_is_a_fixed_point_and_parses_back(value: Any) -> None:
    canonical = canonical_json(value)
    reparsed = json.loads(canonical)
    assert canonical_json(reparsed) == canonical
    assert digest_json(reparsed) == digest_json(value) == sha(canonical)


@given(st.dictionaries(keys, st.integers(0, 9), min_size=2, max_size=8), st.randoms(use_true_random=False))
@fast
def test_key_order_does_not_change_the_digest(doc: dict[str, int], rng: Any) -> None:
    items = list(doc.items())
    rng.shuffle(items)
    assert digest_json(dict(items)) == digest_json(doc)


def test_numbers_in_es6_form() -> None:
    assert canonical_json([1.0, -0.0, 1e21, 1e-7, 0.1, 100]) == b"[1,0,1e+21,1e-7,0.1,100]"
    assert digest_json(1.0) == digest_json(1)


@pytest.mark.parametrize(
    "value", [2**53, -(2**53), 10**20, 2**60, 1152921504606847000, -(2**1023), 24749898663102410]
)
def test_large_integers_that_stand_for_a_double_hash_as_that_double(value: int) -> None:
    # The canonical form of 2.0**60 is "1152921504606847000", which parses back as an int:
    # hashing must accept it, or the canonical text of a sample could not be re-hashed.
    assert canonical_json(value) == canonical_json(float(value))
    doc = {"n": [value]}
    assert canonical_json(json.loads(canonical_json(doc))) == canonical_json(doc)


@pytest.mark.parametrize("value", [2**53 + 1, 10**18 + 1, -(10**18) - 1])
def test_large_integers_that_would_change_value_are_refused(value: int) -> None:
    with pytest.raises(InvalidInput) as err:
        canonical_json({"id": value})
    assert err.value.field == "json"
    assert "neither an IEEE 754 double nor the canonical spelling of one" in err.value.message


def test_deep_nesting_is_refused_precisely() -> None:
    nested: list[Any] = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(InvalidInput) as err:
        digest_json(nested)
    assert err.value.field == "json"


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), 2**53 + 1, -(2**53) - 1, 10**400, 2**1024,
     {1: "non-str key"}, b"bytes", {1, 2}, "lone \ud800 surrogate", {"k": object()}],
    ids=["nan", "inf", "-inf", "2^53+1", "-2^53-1", "10^400", "2^1024", "int-key", "bytes", "set",
         "surrogate", "object"],
)
def test_values_without_a_canonical_form_are_refused(value: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        digest_json(value)
    assert err.value.field == "json"
    assert "RFC 8785" in err.value.message


# --- streaming ---------------------------------------------------------------------------


class RecordingReader(io.RawIOBase):
    """A real binary stream over ``data`` that records each read size asked for."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self.requests: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.requests.append(size)
        if size is None or size < 0:
            size = len(self._data) - self._pos
        chunk = bytes(self._data[self._pos : self._pos + size])
        self._pos += len(chunk)
        return chunk


@pytest.mark.parametrize("size", [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB + 5])
def test_stream_is_read_in_bounded_chunks(size: int) -> None:
    data = os.urandom(size)
    reader = RecordingReader(data)
    assert digest_stream(reader) == sha(data)  # type: ignore[arg-type]
    assert reader.requests and all(0 < r <= MIB for r in reader.requests)
    assert len(reader.requests) == size // MIB + 1 + (1 if size % MIB else 0)


@pytest.mark.parametrize("size", [0, MIB, 2 * MIB + 1])
def test_file_digest_at_chunk_boundaries(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "sample.bin"
    path.write_bytes(data)
    assert digest_file(path) == digest_file(str(path)) == sha(data)


def test_stream_from_a_pipe(tmp_path: Path) -> None:
    """A non-seekable stream that delivers short reads still hashes all of it."""
    data = os.urandom(MIB + 12345)
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as out:
            for i in range(0, len(data), 7000):
                out.write(data[i : i + 7000])
                out.flush()

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        assert digest_stream(pipe) == sha(data)
    writer.join()


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        digest_file(tmp_path / "absent.bin")


# --- DigestSet -------------------------------------------------------------------------------


@given(st.binary(min_size=32, max_size=32))
@fast
def test_digest_set_round_trip(digest: bytes) -> None:
    assert digest_set(digest) == {"sha256": digest.hex()}
    assert parse_hex_digest(digest_set(digest)["sha256"]) == digest


@pytest.mark.parametrize("value", [b"", bytes(31), bytes(33), "00" * 32, bytearray(32)])
def test_check_digest_needs_32_raw_bytes(value: object) -> None:
    with pytest.raises(InvalidInput) as err:
        check_digest(value, "subject.digest")
    assert err.value.field == "subject.digest"
    with pytest.raises(InvalidInput):
        digest_set(value)  # type: ignore[arg-type]
