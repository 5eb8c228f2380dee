"""Streamed lookups with the client's signature process: the same verdicts, errors and
order as with threads alone; a process that dies is replaced by the threads; it ends
with the client, and with its client killed.

Real server subprocess, real client, real signature process. Bad envelopes are
written into the database behind the server's back, so the log proves them
included and only their signatures are wrong.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from anchorlog.client import ledger as client_ledger
from anchorlog.client.ledger import LedgerClient
from anchorlog.client.signature_process import SignatureProcess
from anchorlog.client.vendor import attest_batch, attest_samples, hash_text
from anchorlog.client.verify import SampleProvenance, SignatureError
from anchorlog.ledger.errors import VerificationError
from anchorlog.ledger.status import Status

from tests.e2e.test_client import VALIDATED, World, _one_more_answer, own_world, tampering_proxy
from tests.e2e.test_lookup_parallel import append_bad_signatures

__all__ = ["own_world"]  # fixture used here

# The stream's first answers are chunk/8, chunk/4, ...: each over PROCESS_SIGNATURES.
CHUNK = 1280
GOOD = 600


def _shape(results: list[SampleProvenance]) -> list[object]:
    return [
        (r.digest, r.status, [(a.entry.index, a.key_id, a.predicate) for a in r.attestations]) for r in results
    ]


def _child(reader: LedgerClient) -> int:
    process = reader._signature_process
    assert process is not None and process.alive, "the stream used the signature process"
    return process._process.pid  # type: ignore[union-attr]


def _started(reader: LedgerClient, good: list[bytes]) -> int:
    """Start ``reader``'s signature process with a first stream; its pid."""
    list(reader.provenance_many(good[:200], chunk=CHUNK))
    return _child(reader)


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is ours
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture
def attested(own_world: World) -> Iterator[tuple[World, list[bytes], bytes, bytes]]:
    assert CHUNK // 8 >= client_ledger.PROCESS_SIGNATURES
    world = own_world
    good = [hash_text(f"process check {i}") for i in range(GOOD)]
    tampered, foreign = hash_text("process: signature bit flipped"), hash_text("process: never registered key")
    # The bad entries first: an answer's checks go in entry order, and the calling
    # thread takes the last ones when it would wait, so these are the process's.
    append_bad_signatures(world, tampered, foreign)
    with world.client(world.vendor_token, "vendor") as vendor:
        assert all(o.ok for o in vendor.submit([attest_samples(world.key, [d], VALIDATED) for d in good]))
    yield world, good, tampered, foreign
    world.server.stop()


@pytest.mark.parametrize("taking", [True, False], ids=["shared", "all in the process"])
def test_the_process_gives_the_verdicts_errors_and_order_of_the_threads(
    attested: tuple[World, list[bytes], bytes, bytes], taking: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_ledger, "TAKE_CHECKS", taking)
    world, good, tampered, foreign = attested
    with world.client(world.reader_token, "threads", signature_process=False) as threads, \
            world.client(world.reader_token, "process") as process:
        expected = list(threads.provenance_many(good, chunk=CHUNK))
        got = list(process.provenance_many(good, chunk=CHUNK))
        assert _shape(got) == _shape(expected)
        assert {r.status for r in got} == {Status.HUMAN_VALIDATED}
        _child(process)
        assert threads._signature_process is None
        for bad in (tampered, foreign):
            # The bad one in the second answer: the first answer's results come out
            # before the refusal, as with threads.
            mixed = [*good[:400], bad, *good[400:]]
            outcomes = []
            for client in (threads, process):
                yielded = []
                with pytest.raises(SignatureError) as refused:
                    for result in client.provenance_many(mixed, chunk=CHUNK):
                        yielded.append(result)  # noqa: PERF402  # what came out before the refusal
                outcomes.append((_shape(yielded), str(refused.value)))
                assert "not signed by any key of vendor" in str(refused.value)
            assert outcomes[0] == outcomes[1]
            assert len(outcomes[1][0]) == CHUNK // 8  # the first answer, and nothing of the second
        again = list(process.provenance_many(good[::-1], chunk=CHUNK))
        assert _shape(again) == _shape(expected[::-1])
        _child(process)


def test_a_process_killed_mid_stream_is_replaced_by_the_threads(
    attested: tuple[World, list[bytes], bytes, bytes],
) -> None:
    world, good, tampered, _ = attested
    with world.client(world.reader_token, "process") as reader:
        pid = _started(reader, good)
        results = []
        for result in reader.provenance_many(good, chunk=CHUNK):
            if not results:
                os.kill(pid, signal.SIGKILL)
            results.append(result)
        assert [r.digest for r in results] == good
        assert {r.status for r in results} == {Status.HUMAN_VALIDATED}
        assert reader._signature_process is not None and not reader._signature_process.alive
        with pytest.raises(SignatureError, match="not signed by any key of vendor"):
            list(reader.provenance_many([*good[:300], tampered], chunk=CHUNK))
    assert _gone(pid)


def test_the_process_ends_with_its_client(attested: tuple[World, list[bytes], bytes, bytes]) -> None:
    world, good, _, _ = attested
    with world.client(world.reader_token, "process") as reader:
        list(reader.provenance_many(good, chunk=CHUNK))
        pid = _child(reader)
    assert _gone(pid), "close() ends the signature process"
    # A client killed outright: its process sees its pipe close and exits.
    script = textwrap.dedent(f"""
        from pathlib import Path
        from anchorlog.client.ledger import LedgerClient
        reader = LedgerClient({world.server.address!r}, token={world.reader_token!r},
                              log_key={world.server.log_key!r}, state_path=Path({str(world.tmp / "killed.json")!r}))
        digests = [bytes.fromhex(h) for h in {[d.hex() for d in good]!r}]
        list(reader.provenance_many(digests, chunk={CHUNK}))
        print(reader._signature_process._process.pid, flush=True)
        import time
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        child = int(line)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert _gone(child), "the signature process outlived its client"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_streams_from_two_threads_share_one_process_in_turn(
    attested: tuple[World, list[bytes], bytes, bytes],
) -> None:
    import threading

    world, good, _, _ = attested
    with world.client(world.reader_token, "process") as reader:
        outcomes: list[list[SampleProvenance]] = [[], []]
        errors: list[BaseException] = []

        def stream(slot: int) -> None:
            try:
                outcomes[slot] = list(reader.provenance_many(good[slot::2] * 2, chunk=CHUNK))
            except BaseException as exc:  # noqa: BLE001  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=stream, args=(slot,)) for slot in (0, 1)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert not errors
        for slot in (0, 1):
            assert [r.digest for r in outcomes[slot]] == good[slot::2] * 2
            assert {r.status for r in outcomes[slot]} == {Status.HUMAN_VALIDATED}


def test_a_stopped_process_leaves_its_checks_to_the_calling_thread(
    attested: tuple[World, list[bytes], bytes, bytes],
) -> None:
    import threading

    world, good, tampered, _ = attested
    with world.client(world.reader_token, "process") as reader:
        pid = _started(reader, good)
        # One answer of 40 checks (about 21 KB: the pipe takes it without the process
        # reading), the bad one first, so the last the calling thread would take.
        os.kill(pid, signal.SIGSTOP)
        resume = threading.Timer(20.0, os.kill, (pid, signal.SIGCONT))
        resume.start()
        limits: list[int] = []
        lower = reader._signature_process.progress.lower_limit  # type: ignore[union-attr]

        def noted(limit: int) -> None:
            limits.append(limit)
            lower(limit)

        reader._signature_process.progress.lower_limit = noted  # type: ignore[union-attr,method-assign]
        try:
            started = time.monotonic()
            with pytest.raises(SignatureError, match="not signed by any key of vendor"):
                list(reader.provenance_many([tampered, *good[:40]], chunk=320))
            # Every check taken, it waited only a second for the answer owed, then ended it.
            assert time.monotonic() - started < 10
        finally:
            resume.cancel()
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        assert limits[-1] == 0, "the calling thread took every check"
        assert reader._signature_process is not None and not reader._signature_process.alive
        assert _gone(pid)
        again = list(reader.provenance_many(good, chunk=CHUNK))
        assert [r.digest for r in again] == good and {r.status for r in again} == {Status.HUMAN_VALIDATED}


def test_a_process_that_stops_reading_is_ended_without_blocking_the_client(
    attested: tuple[World, list[bytes], bytes, bytes],
) -> None:
    # The default write timeout (a few seconds: an idle process reads at once), not a minute.
    assert client_ledger.PROCESS_WRITE_TIMEOUT <= 10
    world, good, tampered, _ = attested
    with world.client(world.reader_token, "process") as reader:
        pid = _started(reader, good)
        os.kill(pid, signal.SIGSTOP)  # an answer of 160 checks (about 85 KB) fills the pipe
        try:
            started = time.monotonic()
            results = list(reader.provenance_many(good, chunk=CHUNK))
            assert time.monotonic() - started < 20
            assert [r.digest for r in results] == good and {r.status for r in results} == {Status.HUMAN_VALIDATED}
            assert reader._signature_process is not None and not reader._signature_process.alive
            with pytest.raises(SignatureError, match="not signed by any key of vendor"):
                list(reader.provenance_many([tampered, *good[:300]], chunk=CHUNK))
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert _gone(pid)


def test_checks_the_process_stopped_short_of_are_made_by_the_client(
    attested: tuple[World, list[bytes], bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the process read a limit of 0 for every answer (a torn read of the shared
    # bytes could make it stop early): it answers none or a few; the client makes the rest.
    monkeypatch.setattr(client_ledger, "TAKE_CHECKS", False)
    send = LedgerClient._send

    def send_then_stop_it(self: LedgerClient, *args: object) -> object:
        sent = send(self, *args)  # type: ignore[arg-type]
        if sent is not None:
            sent.process.progress.lower_limit(0)
        return sent

    monkeypatch.setattr(LedgerClient, "_send", send_then_stop_it)
    world, good, tampered, foreign = attested
    with world.client(world.reader_token, "threads", signature_process=False) as threads, \
            world.client(world.reader_token, "process") as process:
        assert _shape(list(process.provenance_many(good, chunk=CHUNK))) == _shape(
            list(threads.provenance_many(good, chunk=CHUNK))
        )
        _child(process)
        for bad in (tampered, foreign):
            with pytest.raises(SignatureError, match="not signed by any key of vendor"):
                list(process.provenance_many([*good[:400], bad, *good[400:]], chunk=CHUNK))
        _child(process)  # still the same, alive: stopping short is not a failure


def test_an_extra_answer_is_refused_after_the_real_ones_are_given(
    attested: tuple[World, list[bytes], bytes, bytes],
) -> None:
    # The last real answer is still with the process when the extra one arrives: its
    # results come out before the refusal, as they do with threads alone.
    world, good, _, _ = attested
    with tampering_proxy(world.server.address, {"StreamProvenance": _one_more_answer}) as (address, _):
        outcomes = []
        for name, own_process in (("threads", False), ("process", True)):
            with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                              state_path=world.tmp / f"extra-{name}.json", signature_process=own_process) as client:
                yielded = []
                with pytest.raises(VerificationError, match="more queries than were asked"):
                    for result in client.provenance_many(good, chunk=CHUNK):
                        yielded.append(result)  # noqa: PERF402  # what came out before the refusal
                if own_process:
                    _child(client)
                outcomes.append(_shape(yielded))
        assert outcomes[0] == outcomes[1]
        assert [r[0] for r in outcomes[1]] == good


def _resending(answers: Iterator[Any]) -> Iterator[Any]:
    """A server that sends each answer's entries again with the next answer (the same
    entries with the same proofs: nothing a client may refuse)."""
    previous: list[Any] = []
    for answer in answers:
        current = list(answer.entries)
        answer.entries.extend(previous)
        previous = current
        yield answer


def test_entries_sent_again_are_seen_by_the_answer_they_first_came_in(
    attested: tuple[World, list[bytes], bytes, bytes],
) -> None:
    # Batched samples name their batch's entry: answer N, finished while the process
    # checks it and answer N+1 (which sends N's entries again) is read, still has them.
    # The batches' entries first come in an answer with enough direct samples for the
    # process (the first answers are direct samples only).
    world, good, _, _ = attested
    batches = [[hash_text(f"resent batch {b} sample {i}") for i in range(400)] for b in range(2)]
    with world.client(world.vendor_token, "vendor") as vendor:
        assert all(o.ok for o in vendor.submit([attest_batch(world.key, batch, VALIDATED) for batch in batches]))
    batched = [digest for row in zip(*batches, strict=True) for digest in row]
    mixed = [digest for pair in zip(good[250:], batched, strict=False) for digest in pair]
    asked = [*good[:250], *mixed, *batched[len(good) - 250 :]]
    assert sorted(asked) == sorted(good + batched)
    with world.client(world.reader_token, "direct", signature_process=False) as direct:
        expected = _shape(list(direct.provenance_many(asked, chunk=CHUNK)))
    assert {status for _, status, _ in expected} == {Status.HUMAN_VALIDATED}  # type: ignore[misc]
    with tampering_proxy(world.server.address, {"StreamProvenance": _resending}) as (address, _):
        for name, own_process in (("threads", False), ("process", True)):
            with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                              state_path=world.tmp / f"resent-{name}.json", signature_process=own_process) as client:
                if own_process:
                    _started(client, good)
                assert _shape(list(client.provenance_many(asked, chunk=CHUNK // 4))) == expected, name
                if own_process:
                    _child(client)


def test_an_interruption_while_an_answer_is_owed_ends_the_process(
    attested: tuple[World, list[bytes], bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C while the client waits for the process's verdicts: the pipe is out of step
    # (an answer is owed), so the process is ended and never read again; the client's
    # next streams are checked by its threads, with the same results.
    world, good, _, _ = attested
    verdicts = SignatureProcess.verdicts
    interrupted: list[int] = []

    def interrupted_once(self: SignatureProcess, timeout: float | None = None) -> bytes | None:
        if not interrupted:
            interrupted.append(1)
            raise KeyboardInterrupt
        return verdicts(self, timeout)

    with world.client(world.reader_token, "threads", signature_process=False) as threads, \
            world.client(world.reader_token, "process") as process:
        expected = _shape(list(threads.provenance_many(good, chunk=CHUNK)))
        pid = _started(process, good)
        monkeypatch.setattr(SignatureProcess, "verdicts", interrupted_once)
        with pytest.raises(KeyboardInterrupt):
            list(process.provenance_many(good, chunk=CHUNK))
        assert interrupted and _gone(pid)
        assert process._signature_process is not None and not process._signature_process.alive
        assert _shape(list(process.provenance_many(good, chunk=CHUNK))) == expected
        assert _shape(list(process.provenance_many(good[::-1], chunk=CHUNK))) == expected[::-1]
