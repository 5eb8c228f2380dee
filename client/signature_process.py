"""Envelope signature checks in a process beside the client's interpreter.

A verified lookup checks one Ed25519 signature per attestation it has not seen
yet. Threads of one interpreter run those checks in parallel only while the
calling thread waits for them (a thread running Python gives the GIL back only
every switch interval), so the calling thread cannot read the next answer while
this one's checks run. A separate process can: ``LedgerClient`` sends it one
answer's checks and reads the next answer meanwhile.

The process is ``python -c`` importing this module (not ``multiprocessing``,
whose spawned children import the caller's main module again). It gets public
keys, signatures and signed messages (DSSE PAE), nothing secret, and answers
per check the position of the first key a signature verifies with, in the
order :func:`~anchorlog.client.verify.signer_of` tries them. It is a second
core, not a privilege boundary: the client trusts its verdicts as it trusts
its own threads'. Anything it does not vouch for is checked again in the
client, in order, and refused with the precise error. It ends when the client
closes its end of the pipe, or dies.

Wire format, framed by a ``u32`` length (big-endian, as every integer here),
each frame starting with the ``u32`` serial number of the message:

* checks: the serial, then per check ``u8`` key count, the keys (32 bytes
  each), ``u8`` signature count, per signature ``u16`` length and bytes, ``u32``
  length and the message;
* verdicts: the serial of the message answered, then one byte per check it
  made, in order, the index of the first key a signature verifies with, or
  ``NO_KEY``.

The client reads an answer only for the message it is owed for, within a
deadline, of at most that message's length: an answer with another serial
(the pipe out of step after an interruption), too long or too late ends the
process, and its checks are made by the client.

The two also share 8 bytes of memory (a file both map): the process writes how
many checks of the current message it has finished, and reads, before each
check, a limit the client may lower. A client that would otherwise wait takes
checks from the end (lowering the limit before each), so the process answers
the checks below the limit and the client has made the rest: each is made at
least once (one may be made by both, to the same verdict).
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence

from anchorlog.ledger.ed25519 import verify_signature

NO_KEY = 255
KEY_BYTES = 32
MAX_KEYS = 254
MAX_SIGNATURES = 255
MAX_SIGNATURE_BYTES = 0xFFFF
_U16 = 2
_U32 = 4
_SHARED_BYTES = 8


def pack_check(keys: Sequence[bytes], signatures: Sequence[bytes], message: bytes) -> bytes | None:
    """One check in the wire form, or None if it does not fit (the client checks it itself)."""
    if (
        len(keys) > MAX_KEYS or len(signatures) > MAX_SIGNATURES or len(message) >= 1 << 32
        or any(type(k) is not bytes or len(k) != KEY_BYTES for k in keys)
        or any(type(s) is not bytes or len(s) > MAX_SIGNATURE_BYTES for s in signatures)
        or type(message) is not bytes
    ):
        return None
    parts = [bytes((len(keys),)), *keys, bytes((len(signatures),))]
    for sig in signatures:
        parts.append(len(sig).to_bytes(_U16, "big"))
        parts.append(sig)
    parts.append(len(message).to_bytes(_U32, "big"))
    parts.append(message)
    return b"".join(parts)


def unpack_checks(data: bytes) -> list[tuple[list[bytes], list[bytes], bytes]]:
    """The checks of one message: (keys, signatures, message) each; ``ValueError`` if malformed."""
    checks = []
    at, end = 0, len(data)
    try:
        while at < end:
            nkeys = data[at]
            at += 1
            keys = [data[at + KEY_BYTES * k : at + KEY_BYTES * (k + 1)] for k in range(nkeys)]
            at += KEY_BYTES * nkeys
            nsigs = data[at]
            at += 1
            signatures = []
            for _ in range(nsigs):
                length = int.from_bytes(data[at : at + _U16], "big")
                at += _U16
                signatures.append(data[at : at + length])
                at += length
            length = int.from_bytes(data[at : at + _U32], "big")
            at += _U32
            message = data[at : at + length]
            at += length
            if at > end:
                raise ValueError("a check ends beyond the message")
            checks.append((keys, signatures, message))
    except IndexError:
        raise ValueError("a check ends beyond the message") from None
    return checks


def first_verifying_key(keys: Sequence[bytes], signatures: Sequence[bytes], message: bytes) -> int:
    """The index of the first key one of the signatures verifies with, else ``NO_KEY``."""
    for position, key in enumerate(keys):
        for sig in signatures:
            if verify_signature(key, sig, message):
                return position
    return NO_KEY


class SharedProgress:
    """The 8 shared bytes: checks finished by the process, and the limit it stops at.

    Each value is written as one 4-byte copy (``struct.pack_into`` would zero the
    bytes first, and the other side could read that zero). Nothing depends on a
    read being whole: a wrong limit makes the process stop early (the client then
    makes the rest) or go on (a check made twice); a wrong count of finished
    checks makes the client take more or fewer.
    """

    def __init__(self, memory: mmap.mmap) -> None:
        self._memory = memory

    @property
    def done(self) -> int:
        try:
            return int.from_bytes(self._memory[0:4], sys.byteorder)
        except ValueError:  # closed: the process is gone, so it finished nothing more
            return 0

    @property
    def limit(self) -> int:
        return int.from_bytes(self._memory[4:8], sys.byteorder)

    def start(self, count: int) -> None:
        self._memory[0:8] = (0).to_bytes(4, sys.byteorder) + count.to_bytes(4, sys.byteorder)

    def finished(self, count: int) -> None:
        self._memory[0:4] = count.to_bytes(4, sys.byteorder)

    def lower_limit(self, limit: int) -> None:
        try:
            self._memory[4:8] = limit.to_bytes(4, sys.byteorder)
        except ValueError:  # closed (the client closed from another thread): nothing to stop
            pass

    def close(self) -> None:
        self._memory.close()


def run_checks(data: bytes, progress: SharedProgress | None = None) -> bytes:
    """The process's answer to one message: verdicts for the checks below the limit."""
    verdicts = bytearray()
    for position, check in enumerate(unpack_checks(data)):
        if progress is not None and position >= progress.limit:
            break
        verdicts.append(first_verifying_key(*check))
        if progress is not None:
            progress.finished(position + 1)
    return bytes(verdicts)


def _read_exactly(fd: int, count: int) -> bytes | None:
    """``count`` bytes from the blocking ``fd``, or None at end of file."""
    chunks = []
    while count:
        chunk = os.read(fd, min(count, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _can(fd: int, event: int, timeout: float) -> bool:
    """Whether ``fd`` is ready for ``event`` (select.POLLIN/POLLOUT) within ``timeout`` seconds
    (poll, not select: any descriptor number)."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def _read_within(fd: int, count: int, deadline: float) -> bytes | None:
    """``count`` bytes from the non-blocking ``fd``; None at end of file or past ``deadline``
    (``time.monotonic``)."""
    chunks = []
    while count:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not _can(fd, select.POLLIN, remaining):
            return None
        try:
            chunk = os.read(fd, min(count, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _write_within(fd: int, data: bytes, timeout: float) -> bool:
    """Write all of ``data`` to the non-blocking ``fd``; False if that takes over ``timeout``."""
    deadline = time.monotonic() + timeout
    view = memoryview(data)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not _can(fd, select.POLLOUT, remaining):
            return False
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
    return True


def serve(shared_fd: int) -> None:
    """The process: answer each framed message on stdin, on stdout, until stdin ends."""
    # Ctrl-C reaches the whole process group; the client decides when this ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    progress = SharedProgress(mmap.mmap(shared_fd, _SHARED_BYTES))
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    while True:
        head = _read_exactly(fd_in, _U32)
        if head is None:
            return
        data = _read_exactly(fd_in, int.from_bytes(head, "big"))
        if data is None or len(data) < _U32:
            return
        try:
            answer = run_checks(data[_U32:], progress)
        except ValueError:
            return  # not our client: stop
        _write_all(fd_out, (_U32 + len(answer)).to_bytes(_U32, "big") + data[:_U32] + answer)


class SignatureProcess:
    """The process, checking one message of checks at a time.

    :meth:`check` sends, :meth:`verdicts` waits for the answer. Any failure (the
    process could not start, died, answered out of shape, took longer than
    ``timeout`` to answer or than ``write_timeout`` (default ``timeout``) to read
    a message) ends it: :attr:`alive` is then false and the caller checks in
    its own threads.
    """

    def __init__(self, timeout: float = 60.0, write_timeout: float | None = None) -> None:
        # The shared bytes: an unlinked temporary file, mapped here and, through its
        # inherited descriptor, in the process.
        with tempfile.TemporaryFile() as shared:  # closed once mapped: the mappings stay
            # Written, not a sparse ftruncate: a full disk fails here, not as SIGBUS later.
            shared.write(bytes(_SHARED_BYTES))
            shared.flush()
            self.progress = SharedProgress(mmap.mmap(shared.fileno(), _SHARED_BYTES))
            # The same interpreter and environment: it imports anchorlog as an installed
            # program does. If it cannot, it ends at once and the caller uses its threads.
            code = f"from anchorlog.client.signature_process import serve; serve({shared.fileno()})"
            # -P: not the current directory first on its path (a folder there named
            # anchorlog or nacl would replace the code that checks the signatures).
            self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-P", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, pass_fds=(shared.fileno(),),
            )
        self._timeout = timeout
        self._write_timeout = timeout if write_timeout is None else write_timeout
        self._serial = 0  # of the last message sent
        # The serial and check count of the message whose answer is owed, if one is.
        self._owed: tuple[int, int] | None = None
        self._owner = os.getpid()  # a forked copy of the client must not share the pipes
        assert self._process.stdin is not None and self._process.stdout is not None
        os.set_blocking(self._process.stdin.fileno(), False)  # see _write_within
        os.set_blocking(self._process.stdout.fileno(), False)  # see _read_within

    @property
    def alive(self) -> bool:
        return self._process is not None and os.getpid() == self._owner and self._process.poll() is None

    def check(self, packed: Iterable[bytes], count: int) -> bool:
        """Send ``count`` checks (each from :func:`pack_check`); False if the process is gone.

        One message at a time: sending while an answer is still owed (its caller was
        interrupted before reading it) ends the process instead.
        """
        if self._process is None or self._process.stdin is None or os.getpid() != self._owner:
            return False
        if self._owed is not None:
            self.close()
            return False
        data = b"".join(packed)
        serial = self._serial = (self._serial + 1) & 0xFFFFFFFF
        # Owed from before the first byte goes: an interruption anywhere after this
        # leaves the answer owed, never to be read as another message's.
        self._owed = (serial, count)
        self.progress.start(count)  # before it can read them
        frame = (_U32 + len(data)).to_bytes(_U32, "big") + serial.to_bytes(_U32, "big") + data
        try:
            sent = _write_within(self._process.stdin.fileno(), frame, self._write_timeout)
        except Exception:  # noqa: BLE001  # any failure: the threads check instead
            sent = False
        except BaseException:  # interrupted mid-message: the pipe is out of step for good
            self.close()
            raise
        if not sent:  # gone, or not reading (stopped, stuck): never block the client on it
            self.close()
            return False
        return True

    def ready(self) -> bool:
        """Whether the answer to the last ``check`` can be read without waiting."""
        if self._process is None or self._process.stdout is None:
            return True
        try:
            return _can(self._process.stdout.fileno(), select.POLLIN, 0)
        except Exception:  # noqa: BLE001  # verdicts() then finds out what is wrong
            return True

    def verdicts(self, timeout: float | None = None) -> bytes | None:
        """The answer to the last ``check``: the verdicts of its first checks (normally at
        least as many as the limit it was last given; the caller makes any others).
        None if nothing is owed, or the process failed, or did not answer within
        ``timeout`` (the process's own unless given), or answered another message
        or more checks than were sent; all but the first end it."""
        owed, self._owed = self._owed, None
        if owed is None or self._process is None or self._process.stdout is None or os.getpid() != self._owner:
            return None
        serial, count = owed
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        try:
            head = _read_within(fd, _U32, deadline)
            length = int.from_bytes(head, "big") if head is not None else 0
            # Bounded before reading: never more than the message could be owed.
            body = _read_within(fd, length, deadline) if _U32 <= length <= _U32 + count else None
        except Exception:  # noqa: BLE001
            body = None
        except BaseException:  # interrupted mid-answer: never read the rest as the next one's
            self.close()
            raise
        if body is None or int.from_bytes(body[:_U32], "big") != serial:
            self.close()
            return None
        return body[_U32:]

    def close(self, grace: float = 1.0) -> None:
        process, self._process = self._process, None
        if process is None or os.getpid() != self._owner:
            return
        self.progress.close()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)
