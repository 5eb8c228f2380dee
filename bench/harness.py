"""Shared plumbing for the bench scripts: a real server subprocess, vendor setup,
same-run baselines, medians and the JSON + human report.

Not a benchmark itself. Every script imports this module from its own folder,
so ``python bench/<name>.py`` works from the repository root.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from anchorlog.client.ledger import LedgerClient
from anchorlog.client.vendor import ClaimDetails, VendorKeyPair
from anchorlog.ledger.digests import Canonicalization
from anchorlog.ledger.ed25519 import verify_signature
from anchorlog.ledger.predicates import Claim
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VENDOR = "bench-vendor"
DETAILS = ClaimDetails(
    claim=Claim.HUMAN_VALIDATED,
    canonicalization=Canonicalization.RAW_BYTES,
    actor_id="reviewer-1",
    method="bench",
)


@dataclass
class BenchServer:
    """A running ``anchorlog serve`` subprocess and what it printed at start-up."""

    data_dir: Path
    process: subprocess.Popen[str]
    address: str
    log_key: str
    admin_token: str
    start_seconds: float
    stderr_path: Path

    def stop(self, timeout: float = 60.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(data_dir: Path, *extra: str, timeout: float = 600.0) -> BenchServer:
    """Start the server on a free loopback port; ``start_seconds`` is spawn-to-serving."""
    data_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = data_dir.parent / f"{data_dir.name}.server.log"
    command = [
        sys.executable, "-m", "anchorlog.client.cli", "serve", "--data", str(data_dir),
        "--listen", "127.0.0.1:0", "--auth-failures-per-minute", "100000", "--log-level", "WARNING",
        *extra,
    ]
    started = time.perf_counter()
    with open(stderr_path, "w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
    address = log_key = ""
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if m := re.match(r"anchorlog serving on (\S+)", line):
            address = m.group(1)
        if m := re.match(r"verifier key: (\S+)", line):
            log_key = m.group(1)
        if line.startswith("log size:"):
            break
    elapsed = time.perf_counter() - started
    if not address or not log_key:
        process.kill()
        process.wait()
        raise RuntimeError(f"server did not start: {stderr_path.read_text()[-2000:]}")
    token = (data_dir / "admin.token").read_text().strip()
    return BenchServer(data_dir, process, address, log_key, token, elapsed, stderr_path)


@dataclass(frozen=True)
class Tokens:
    vendor: str
    reader: str


def setup_vendor(server: BenchServer, state_dir: Path, key: VendorKeyPair) -> Tokens:
    """Create the bench vendor, register ``key`` and issue vendor and reader tokens."""
    with client(server, server.admin_token, state_dir / "admin.json") as admin:
        admin.create_vendor(VENDOR, "Bench Vendor")
        admin.register_key(VENDOR, key.public_key)
        return Tokens(admin.issue_token(VENDOR, "vendor"), admin.issue_token("bench-reader", "reader"))


def client(server: BenchServer, token: str, state: Path) -> LedgerClient:
    return LedgerClient(server.address, token=token, log_key=server.log_key, state_path=state)


# ------------------------------------------------------------ baselines


def ed25519_verify_rate(threads: int, seconds: float = 1.0, *, openssl: bool = False) -> float:
    """Raw Ed25519 verifications/s with ``threads`` threads: the check anchorlog runs
    (libsodium, ``ledger.ed25519.verify_signature``), or OpenSSL's through cryptography
    with ``openssl=True``. Both drop the GIL."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    message = b"x" * 400  # about a one-sample PAE
    signature = key.sign(message)
    if openssl:
        check = functools.partial(key.public_key().verify, signature, message)
    else:
        check = functools.partial(verify_signature, raw, signature, message)
    stop = threading.Event()
    counts = [0] * threads

    def work(slot: int) -> None:
        n = 0
        while not stop.is_set():
            for _ in range(100):
                check()
            n += 100
        counts[slot] = n

    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        futures = [pool.submit(work, i) for i in range(threads)]
        time.sleep(seconds)
        stop.set()
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - started
    return sum(counts) / elapsed


# ------------------------------------------------------------ statistics and output


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def stat(values: Sequence[float], digits: int = 1) -> dict[str, Any]:
    return {"median": round(median(values), digits), "runs": [round(v, digits) for v in values]}


def timed_runs(runs: int, work: Callable[[], float]) -> list[float]:
    """Call ``work`` ``runs`` times; it returns its own figure (a rate)."""
    return [work() for _ in range(runs)]


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def process_cpu_seconds(pid: int, exclude: Collection[int] = ()) -> float:
    """User + system CPU seconds of a running process, all its threads, and of its live
    descendants (the server's envelope-checking workers, the client's signature
    process), leaving out the processes ``exclude`` and theirs (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass  # gone meanwhile
    ticks, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = _stat_fields(current)
        except OSError:
            if current == pid:
                raise
            continue
        ticks += int(fields[11]) + int(fields[12])
        todo.extend(child for child in parents.get(current, ()) if child not in exclude)
    return ticks / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def environment() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_1_5_15": load_average(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def report(doc: dict[str, Any], summary: Sequence[str]) -> None:
    """JSON on stdout (machine-readable), the human summary on stderr."""
    doc.setdefault("environment", environment())
    doc["environment"]["load_average_at_end"] = load_average()
    print(json.dumps(doc, indent=2))
    print("\n".join(["", *summary, f"load average at end: {load_average()}"]), file=sys.stderr)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------ envelopes


_PLACEHOLDER = b"\xab" * 32


class OneSampleEnvelopes:
    """Signed one-sample envelopes, fast: a real statement with the digest swapped in.

    The template is built once with the client's own ``attest_samples``; each
    envelope is then the template payload with another digest, signed afresh,
    so every envelope is a valid, distinct, correctly signed attestation.
    """

    def __init__(self, key: VendorKeyPair, details: ClaimDetails = DETAILS) -> None:
        from anchorlog.client.vendor import attest_samples
        from anchorlog.ledger.dsse import Envelope

        hexed = _PLACEHOLDER.hex()
        template = attest_samples(key, [_PLACEHOLDER], details, names=[f"sample/{hexed[:16]}"])
        payload = Envelope.parse(template.envelope).payload
        assert payload.count(hexed.encode()) == 1
        self._head, rest = payload.split(hexed.encode())
        self._middle, self._tail = rest.split(hexed[:16].encode(), 1)
        self._key = key.private_key
        self._keyid = key.key_id

    def payload(self, digest: bytes) -> bytes:
        hexed = digest.hex().encode()
        return b"".join((self._head, hexed, self._middle, hexed[:16], self._tail))

    def envelope(self, digest: bytes) -> bytes:
        import base64

        from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, pae

        payload = self.payload(digest)
        sig = self._key.sign(pae(PAYLOAD_TYPE_INTOTO, payload))
        return b'{"payload":"%s","payloadType":"%s","signatures":[{"keyid":"%s","sig":"%s"}]}' % (
            base64.b64encode(payload), PAYLOAD_TYPE_INTOTO.encode(), self._keyid.encode(),
            base64.b64encode(sig),
        )


def sample_digest(namespace: str, i: int) -> bytes:
    import hashlib

    return hashlib.sha256(b"%s/%d" % (namespace.encode(), i)).digest()


# ------------------------------------------------------------ profiling


class ServerProfile:
    """``py-spy record --gil`` on the server process while a block runs (``--profile``).

    Only samples holding the GIL are kept: in this server that is the Python work
    that competes for the one interpreter, which is what limits throughput.

    py-spy is optional (``pip install py-spy``); the summary lists the frames
    with the most samples, self and inclusive, from py-spy's collapsed stacks.
    """

    def __init__(self, pid: int, out: Path | None, *, rate: int = 200) -> None:
        self._pid = pid
        self._out = out
        self._rate = rate
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        if self._out is None:
            return self
        import shutil

        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self._process = subprocess.Popen(
            [spy, "record", "--pid", str(self._pid), "--format", "raw", "--rate", str(self._rate),
             "--threads", "--nonblocking", "--gil", "--output", str(self._out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)
            self._process.wait(60)


def top_frames(collapsed: Path, limit: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive share of samples per frame, from a collapsed-stack file."""
    self_count: dict[str, int] = {}
    incl_count: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("thread ") and not f.startswith("process ")]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        self_count[leaf] = self_count.get(leaf, 0) + count
        for frame in set(frames):
            incl_count[frame] = incl_count.get(frame, 0) + count

    def share(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return [(frame, round(100 * n / max(total, 1), 1)) for frame, n in ranked]

    return {"self_percent": share(self_count), "inclusive_percent": share(incl_count), "samples": [("total", total)]}
