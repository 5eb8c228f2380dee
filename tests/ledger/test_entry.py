"""The log entry encoding (README "Log entries"), checked against bytes built here from the table."""

from __future__ import annotations

import hashlib

import pytest
from anchorlog.ledger.entry import (
    MAX_ENVELOPE_BYTES,
    ZERO_HASH,
    EntryKind,
    LogEntry,
    decode_entry,
)
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.merkle import leaf_hash
from hypothesis import given, settings
from hypothesis import strategies as st

fast = settings(deadline=None, max_examples=200)


def table_bytes(
    *, version: int = 1, kind: int, index: int, previous: bytes, ms: int, submitter: bytes,
    envelope: bytes,
) -> bytes:
    """The README table, row by row: big-endian integers, length-prefixed strings."""
    return b"".join([
        version.to_bytes(1, "big"),
        kind.to_bytes(1, "big"),
        index.to_bytes(8, "big"),
        previous,
        ms.to_bytes(8, "big"),
        len(submitter).to_bytes(2, "big"),
        submitter,
        len(envelope).to_bytes(4, "big"),
        envelope,
    ])


def _sample() -> LogEntry:
    return LogEntry(
        index=5, kind=EntryKind.REVOCATION, previous_hash=bytes(range(32)),
        integrated_ms=0x0102030405060708, submitter="ab", envelope=b"{}",
    )


def test_golden_bytes_written_by_hand() -> None:
    golden = bytes.fromhex(
        "01"                    # version 1
        "02"                    # kind: revocation
        "0000000000000005"      # log index 5
        + bytes(range(32)).hex()  # previous leaf hash
        + "0102030405060708"    # integration time (ms)
        "0002" "6162"           # submitter "ab"
        "00000002" "7b7d"       # envelope "{}"
    )
    assert _sample().encode() == golden
    assert decode_entry(golden) == _sample()
    assert leaf_hash(golden) == hashlib.sha256(b"\x00" + golden).digest()


def test_first_entry_chains_to_zeros() -> None:
    entry = LogEntry(0, EntryKind.ATTESTATION, ZERO_HASH, 1, "acme", b'{"payload":""}')
    assert entry.encode()[10:42] == bytes(32)
    assert entry.encode() == table_bytes(
        kind=1, index=0, previous=bytes(32), ms=1, submitter=b"acme", envelope=b'{"payload":""}'
    )


submitters = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=120
).filter(lambda s: len(s.encode("utf-8")) <= 255)

entries = st.builds(
    LogEntry,
    index=st.integers(0, (1 << 63) - 1),
    kind=st.sampled_from(EntryKind),
    previous_hash=st.binary(min_size=32, max_size=32),
    integrated_ms=st.integers(0, (1 << 63) - 1),
    submitter=submitters,
    envelope=st.binary(max_size=300),
)


@given(entries)
@fast
def test_round_trip_and_independent_encoding(entry: LogEntry) -> None:
    data = entry.encode()
    assert data == table_bytes(
        kind=int(entry.kind), index=entry.index, previous=entry.previous_hash,
        ms=entry.integrated_ms, submitter=entry.submitter.encode("utf-8"), envelope=entry.envelope,
    )
    decoded = decode_entry(data)
    assert decoded == entry
    assert decoded.encode() == data


@given(st.binary(max_size=120))
@fast
def test_decoder_only_raises_invalid_input_and_is_canonical(data: bytes) -> None:
    try:
        entry = decode_entry(data)
    except InvalidInput as exc:
        assert exc.field.startswith("entry")
        return
    assert entry.encode() == data  # one encoding per entry: nothing else decodes


def test_every_truncation_is_refused() -> None:
    data = _sample().encode()
    for cut in range(len(data)):
        with pytest.raises(InvalidInput) as err:
            decode_entry(data[:cut])
        assert err.value.field == "entry", cut
        assert err.value.message.startswith("truncated"), cut


@given(entries, st.data())
@fast
def test_truncated_random_entries_are_refused(entry: LogEntry, data: st.DataObject) -> None:
    encoded = entry.encode()
    keep = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(InvalidInput) as err:
        decode_entry(encoded[:keep])
    assert (err.value.field, err.value.message[:9]) == ("entry", "truncated")


@pytest.mark.parametrize("extra", [b"\x00", b"trailing", bytes(100)])
def test_trailing_bytes_are_refused(extra: bytes) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_entry(_sample().encode() + extra)
    assert (err.value.field, err.value.message) == (
        "entry", f"{len(extra)} trailing bytes after the envelope"
    )


def _with(**fields: object) -> bytes:
    base: dict[str, object] = {
        "kind": 2, "index": 5, "previous": bytes(32), "ms": 7, "submitter": b"ab", "envelope": b"{}",
    }
    base.update(fields)
    return table_bytes(**base)  # type: ignore[arg-type]


def _refusal(data: bytes) -> tuple[str, str]:
    with pytest.raises(InvalidInput) as err:
        decode_entry(data)
    return err.value.field, err.value.message


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_is_refused(version: int) -> None:
    assert _refusal(_with(version=version)) == (
        "entry.version", f"unsupported entry version {version}"
    )


@pytest.mark.parametrize("kind", [0, 4, 255])
def test_unknown_kind_is_refused(kind: int) -> None:
    assert _refusal(_with(kind=kind)) == ("entry.kind", f"unknown entry kind {kind}")


def test_zero_length_submitter_is_refused() -> None:
    assert _refusal(_with(submitter=b"")) == ("entry.submitter", "length 0 is not in 1..255")


def test_overlong_submitter_is_refused() -> None:
    assert _refusal(_with(submitter=b"a" * 256)) == ("entry.submitter", "length 256 is not in 1..255")


@pytest.mark.parametrize(
    "submitter", [b"\xff", b"ab\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"ok\x80ok"],
    ids=["ff", "cut-sequence", "surrogate", "overlong", "stray-continuation"],
)
def test_submitter_that_is_not_utf8_is_refused(submitter: bytes) -> None:
    assert _refusal(_with(submitter=submitter)) == ("entry.submitter", "not valid UTF-8")


def test_submitter_length_beyond_the_data_is_truncation() -> None:
    data = _with(submitter=b"abc")
    lying = data[:50] + (200).to_bytes(2, "big") + data[52:]
    field, message = _refusal(lying)
    assert field == "entry" and message.startswith("truncated")


def test_envelope_length_beyond_the_limit_is_refused() -> None:
    data = _with(envelope=b"")
    at = len(data) - 4
    lying = data[:at] + (MAX_ENVELOPE_BYTES + 1).to_bytes(4, "big")
    assert _refusal(lying) == (
        "entry.envelope", f"length {MAX_ENVELOPE_BYTES + 1} exceeds {MAX_ENVELOPE_BYTES} bytes"
    )


@pytest.mark.parametrize("field", ["index", "ms"])
def test_integers_above_63_bits_are_refused(field: str) -> None:
    name = {"index": "entry.index", "ms": "entry.integrated_ms"}[field]
    for value in (1 << 63, (1 << 64) - 1):
        got_field, message = _refusal(_with(**{field: value}))
        assert got_field == name
        assert "out of range" in message
    assert decode_entry(_with(**{field: (1 << 63) - 1}))


def test_decoder_refuses_non_bytes_and_accepts_buffer_views() -> None:
    data = _sample().encode()
    assert decode_entry(bytearray(data)) == _sample()
    assert decode_entry(memoryview(data)) == _sample()
    assert isinstance(decode_entry(memoryview(data)).envelope, bytes)
    assert _refusal(data.hex()) == ("entry", "must be bytes, got str")  # type: ignore[arg-type]


# --- the encoder refuses what the decoder would refuse ------------------------------


def _encode_refusal(**changes: object) -> tuple[str, str]:
    fields = dict(_sample().__dict__)
    fields.update(changes)
    with pytest.raises(InvalidInput) as err:
        LogEntry(**fields).encode()  # type: ignore[arg-type]
    return err.value.field, err.value.message


def test_encoder_refusals_name_the_field() -> None:
    assert _encode_refusal(submitter="")[0] == "entry.submitter"
    assert _encode_refusal(submitter="é" * 128)[0] == "entry.submitter"  # 256 UTF-8 bytes
    assert _encode_refusal(submitter="bad \ud800")[0] == "entry.submitter"
    assert _encode_refusal(submitter=b"ab")[0] == "entry.submitter"
    assert _encode_refusal(previous_hash=bytes(31))[0] == "entry.previous_hash"
    assert _encode_refusal(previous_hash="00" * 16)[0] == "entry.previous_hash"
    assert _encode_refusal(index=-1)[0] == "entry.index"
    assert _encode_refusal(index=1 << 63)[0] == "entry.index"
    assert _encode_refusal(index=True)[0] == "entry.index"
    assert _encode_refusal(integrated_ms=-5)[0] == "entry.integrated_ms"
    assert _encode_refusal(kind=9) == ("entry.kind", "unknown entry kind 9")
    assert _encode_refusal(envelope="{}")[0] == "entry.envelope"
    assert _encode_refusal(envelope=bytes(MAX_ENVELOPE_BYTES + 1))[0] == "entry.envelope"


def test_encoder_limits_are_inclusive() -> None:
    longest = LogEntry(0, EntryKind.KEY_EVENT, ZERO_HASH, 0, "é" * 127 + "a", b"")
    assert decode_entry(longest.encode()) == longest
    assert len(longest.submitter.encode()) == 255
