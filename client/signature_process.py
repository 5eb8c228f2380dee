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

Wire format, framed by a ``u32`` length (big-endian, as every integer here):

* checks: per check ``u8`` key count, the keys (32 bytes each), ``u8``
  signature count, per signature ``u16`` length and bytes, ``u32`` length and
  the message;
* verdicts: one byte per check, the index of the first key a signature
  verifies with, or ``NO_KEY``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence

from anchorlog.ledger.ed25519 import verify_signature

NO_KEY = 255
KEY_BYTES = 32
MAX_KEYS = 254
MAX_SIGNATURES = 255
MAX_SIGNATURE_BYTES = 0xFFFF
_U16 = 2
_U32 = 4


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


def run_checks(data: bytes) -> bytes:
    """The process's answer to one message of checks."""
    return bytes(first_verifying_key(*check) for check in unpack_checks(data))


def _read_exactly(fd: int, count: int) -> bytes | None:
    """``count`` bytes from ``fd``, or None at end of file."""
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


def serve() -> None:
    """The process: answer each framed message on stdin, on stdout, until stdin ends."""
    # Ctrl-C reaches the whole process group; the client decides when this ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    while True:
        head = _read_exactly(fd_in, _U32)
        if head is None:
            return
        data = _read_exactly(fd_in, int.from_bytes(head, "big"))
        if data is None:
            return
        try:
            answer = run_checks(data)
        except ValueError:
            return  # not our client: stop
        _write_all(fd_out, len(answer).to_bytes(_U32, "big") + answer)


class SignatureProcess:
    """The process, checking one message of checks at a time.

    :meth:`check` sends, :meth:`verdicts` waits for the answer. Any failure (the
    process could not start, died, answered out of shape, or took longer than
    ``timeout``) ends it: :attr:`alive` is then false and the caller checks in
    its own threads.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        # The same interpreter and environment: it imports anchorlog as an installed
        # program does. If it cannot, it ends at once and the caller uses its threads.
        code = "from anchorlog.client.signature_process import serve; serve()"
        self._timeout = timeout
        self._count = 0  # checks sent and not yet answered
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
        )

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def check(self, packed: Iterable[bytes], count: int) -> bool:
        """Send ``count`` checks (each from :func:`pack_check`); False if the process is gone."""
        if self._count:
            raise RuntimeError("one message of checks at a time")
        if self._process is None or self._process.stdin is None:
            return False
        data = b"".join(packed)
        try:
            _write_all(self._process.stdin.fileno(), len(data).to_bytes(_U32, "big") + data)
        except OSError:
            self.close()
            return False
        self._count = count
        return True

    def ready(self) -> bool:
        """Whether the answer to the last ``check`` can be read without waiting."""
        if self._process is None or self._process.stdout is None:
            return True
        return bool(select.select([self._process.stdout.fileno()], [], [], 0)[0])

    def verdicts(self) -> bytes | None:
        """The answer to the last ``check``, one verdict per check; None if the process failed."""
        expected, self._count = self._count, 0
        if self._process is None or self._process.stdout is None:
            return None
        fd = self._process.stdout.fileno()
        try:
            if not select.select([fd], [], [], self._timeout)[0]:
                self.close()
                return None
            head = _read_exactly(fd, _U32)
            answer = _read_exactly(fd, int.from_bytes(head, "big")) if head is not None else None
        except OSError:
            answer = None
        if answer is None or len(answer) != expected:
            self.close()
            return None
        return answer

    def close(self, grace: float = 1.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
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
