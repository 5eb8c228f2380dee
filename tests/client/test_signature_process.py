"""The client's signature process: its wire format, its verdicts (against an independent
Ed25519 implementation), and the process itself, started for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from anchorlog.client.signature_process import (
    NO_KEY,
    SignatureProcess,
    first_verifying_key,
    pack_check,
    run_checks,
    unpack_checks,
)
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

_PRIVATE = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(4)]
_PUBLIC = [k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) for k in _PRIVATE]


def _independent(keys: list[bytes], signatures: list[bytes], message: bytes) -> int:
    """The verdict, by OpenSSL through cryptography (not libsodium, which the process uses)."""
    for position, key in enumerate(keys):
        for sig in signatures:
            try:
                Ed25519PublicKey.from_public_bytes(key).verify(sig, message)
            except (InvalidSignature, ValueError):
                continue
            return position
    return NO_KEY


_checks = st.lists(
    st.tuples(
        st.lists(st.integers(0, 3), max_size=4),  # which keys, in trial order
        st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=3),  # signer, whether to spoil it
        st.binary(max_size=300),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(checks=_checks)
def test_verdicts_are_the_first_key_a_signature_verifies_with(
    checks: list[tuple[list[int], list[tuple[int, bool]], bytes]],
) -> None:
    built = []
    for key_ids, signers, message in checks:
        keys = [_PUBLIC[k] for k in key_ids]
        signatures = []
        for signer, spoil in signers:
            sig = bytearray(_PRIVATE[signer].sign(message))
            if spoil:
                sig[7] ^= 4
            signatures.append(bytes(sig))
        built.append((keys, signatures, message))
    packed = [pack_check(*check) for check in built]
    assert all(p is not None for p in packed)
    assert unpack_checks(b"".join(p for p in packed if p)) == built
    verdicts = run_checks(b"".join(p for p in packed if p))
    assert list(verdicts) == [_independent(*check) for check in built]
    assert list(verdicts) == [first_verifying_key(*check) for check in built]


def test_checks_that_do_not_fit_the_wire_are_left_to_the_client() -> None:
    sig = _PRIVATE[0].sign(b"m")
    assert pack_check([_PUBLIC[0][:31]], [sig], b"m") is None  # not a raw key
    assert pack_check([_PUBLIC[0]] * 255, [sig], b"m") is None
    assert pack_check([_PUBLIC[0]], [sig] * 256, b"m") is None
    assert pack_check([_PUBLIC[0]], [bytes(1 << 16)], b"m") is None
    assert pack_check([_PUBLIC[0]], [sig], bytearray(b"m")) is None  # type: ignore[arg-type]
    assert pack_check([], [], b"") == b"\x00\x00\x00\x00\x00\x00"


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(1, 200))
def test_a_truncated_message_is_refused(cut: int) -> None:
    data = pack_check([_PUBLIC[0], _PUBLIC[1]], [_PRIVATE[1].sign(b"x" * 50)], b"x" * 50)
    assert data is not None
    cut = min(cut, len(data) - 1)
    with pytest.raises(ValueError):
        unpack_checks(data[: len(data) - cut])


def _check_of(signer: int, message: bytes, keys: tuple[int, ...]) -> bytes:
    packed = pack_check([_PUBLIC[k] for k in keys], [_PRIVATE[signer].sign(message)], message)
    assert packed is not None
    return packed


def _forged(message: bytes, keys: tuple[int, ...]) -> bytes:
    """A check whose signature verifies with none of ``keys``."""
    packed = pack_check([_PUBLIC[k] for k in keys], [bytes(64)], message)
    assert packed is not None and first_verifying_key([_PUBLIC[k] for k in keys], [bytes(64)], message) == NO_KEY
    return packed


def test_the_process_answers_and_ends_when_closed() -> None:
    process = SignatureProcess()
    try:
        for _ in range(2):  # one message at a time, several in turn
            checks = [_check_of(1, b"a", (0, 1)), _check_of(2, b"b", (0, 1)), _check_of(0, b"c", (0,))]
            assert process.check(checks, len(checks))
            assert process.verdicts() == bytes([1, NO_KEY, 0])
            assert process.verdicts() is None  # nothing owed: nothing read
        assert process.alive
    finally:
        process.close()
    assert not process.alive
    assert not process.check([], 0)


def test_a_message_sent_while_an_answer_is_owed_ends_the_process() -> None:
    # As after an interruption between sending and reading: the pipe holds an answer
    # nobody asked for, so the next message would be answered with it. Never sent.
    process = SignatureProcess()
    try:
        assert process.check([_check_of(1, b"genuine", (0, 1))], 1)
        assert not process.check([_forged(b"evil", (0, 1))], 1)
        assert not process.alive
        assert process.verdicts() is None
    finally:
        process.close()


def test_an_answer_to_another_message_is_never_taken() -> None:
    # Even if the owed answer were forgotten (the bookkeeping this guards is skipped
    # here by hand), the serial number ties each answer to its message.
    process = SignatureProcess()
    try:
        assert process.check([_check_of(1, b"genuine", (0, 1))], 1)  # answered: key 1
        process._owed = None
        assert process.check([_forged(b"evil", (1, 0))], 1)
        assert process.verdicts() is None, "the genuine check's verdict was read as the forged one's"
        assert not process.alive
    finally:
        process.close()


def _fake_child(process: SignatureProcess, script: str) -> None:
    """Put a stand-in that runs ``script`` (reading the message first) behind ``process``'s pipes."""
    real = process._process
    assert real is not None
    real.kill()
    real.wait()
    fake = subprocess.Popen(
        [sys.executable, "-c", "import os, sys, time\nos.read(0, 1 << 20)\n" + textwrap.dedent(script)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert fake.stdin is not None and fake.stdout is not None
    os.set_blocking(fake.stdin.fileno(), False)
    os.set_blocking(fake.stdout.fileno(), False)
    process._process = fake


@pytest.mark.parametrize(("script", "what"), [
    ("os.write(1, b'\\xff\\xff\\xff\\xff'); time.sleep(30)", "a length beyond any answer owed"),
    ("os.write(1, b'\\0\\0\\0\\5\\0\\0'); time.sleep(30)", "half an answer, then silence"),
    ("os.write(1, b'\\0\\0\\0\\6\\0\\0\\0\\1\\0\\0'); time.sleep(30)", "more verdicts than checks"),
    ("os.write(1, b'\\0\\0\\0\\5\\0\\0\\0\\7\\0'); time.sleep(30)", "another message's serial"),
], ids=["huge-length", "half-answer", "too-many-verdicts", "wrong-serial"])
def test_a_misbehaving_child_ends_it_within_the_timeout(script: str, what: str) -> None:
    process = SignatureProcess(timeout=1.0)
    try:
        _fake_child(process, script)
        assert process.check([_check_of(1, b"a", (0, 1))], 1)
        started = time.monotonic()
        assert process.verdicts() is None, what
        assert time.monotonic() - started < 5, f"{what}: the client waited past its timeout"
        assert not process.alive
    finally:
        process.close()


def test_a_well_behaved_fake_child_is_heard() -> None:
    # The stand-in above is heard when it answers right: the refusals are the answers' fault.
    process = SignatureProcess(timeout=1.0)
    try:
        _fake_child(process, "os.write(1, b'\\0\\0\\0\\5\\0\\0\\0\\1\\1'); time.sleep(30)")
        assert process.check([_check_of(1, b"a", (0, 1))], 1)
        assert process.verdicts() == b"\x01"
    finally:
        process.close()


def test_a_killed_process_gives_no_verdicts_and_is_not_used_again() -> None:
    process = SignatureProcess()
    try:
        pid = process._process.pid  # type: ignore[union-attr]
        checks = [_check_of(1, b"a" * 10_000, (0, 1))] * 2_000  # about a tenth of a second of work
        assert process.check(checks, len(checks))
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        assert process.verdicts() is None
        assert time.monotonic() - started < 5, "a dead process is noticed at once, not after the timeout"
        assert not process.alive
        assert not process.check(checks[:1], 1)
    finally:
        process.close()


def test_a_process_that_does_not_answer_in_time_is_ended() -> None:
    process = SignatureProcess(timeout=0.5)
    try:
        pid = process._process.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGSTOP)
        checks = [_check_of(1, b"a", (0, 1))]
        assert process.check(checks, 1)
        assert process.verdicts() is None
        assert not process.alive
    finally:
        process.close()


def test_a_folder_named_anchorlog_in_the_working_directory_does_not_replace_the_checks(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    fake = folder / "anchorlog" / "client"
    fake.mkdir(parents=True)
    marker = folder / "ran"
    (folder / "anchorlog" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (fake / "__init__.py").write_text("")
    (fake / "signature_process.py").write_text(
        "import sys\ndef serve(fd):\n    sys.stdout.buffer.write(b'\\0\\0\\0\\1\\0'); sys.stdout.flush()\n"
    )
    monkeypatch.chdir(folder)
    process = SignatureProcess()
    try:
        checks = [_check_of(2, b"forged", (0,))]  # signed by key 2, offered key 0 only
        assert process.check(checks, 1)
        assert process.verdicts() == bytes([NO_KEY])
    finally:
        process.close()
    assert not marker.exists()


def test_an_answer_sees_only_entries_that_arrived_by_then() -> None:
    from anchorlog.client.ledger import _EntriesAsOf

    # (An entry sent again keeps the answer it first came in: see
    # test_entries_sent_again_are_seen_by_the_answer_they_first_came_in.)
    entries = {1: "first", 2: "second", 3: "third"}  # values stand in for VerifiedEntry
    arrival = {1: 1, 2: 2, 3: 1}
    as_of_first = _EntriesAsOf(entries, arrival, 1)  # type: ignore[arg-type]
    assert as_of_first.get(1) == "first" and as_of_first.get(2) is None and 2 not in as_of_first
    assert sorted(as_of_first) == [1, 3] and len(as_of_first) == 2
    entries[4], arrival[4] = "fourth", 3  # a later answer's: not the first's
    assert as_of_first.get(4) is None and sorted(as_of_first) == [1, 3]
    assert sorted(_EntriesAsOf(entries, arrival, 3)) == [1, 2, 3, 4]  # type: ignore[arg-type]
