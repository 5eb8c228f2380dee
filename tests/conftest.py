"""Shared fixtures: a real anchorlog server in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VECTORS = SHARED / "test-vectors"


@dataclass
class ServerProcess:
    """A running `anchorlog serve` and what it printed at start-up."""

    data_dir: Path
    process: subprocess.Popen[str]
    address: str
    log_key: str
    admin_token: str
    output: list[str]
    # The server's stderr (JSON log lines) goes to a file, never to a pipe nobody
    # drains: a full pipe would block the server on its next log line.
    log_path: Path | None = None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(data_dir: Path, *extra: str, env: dict[str, str] | None = None,
                 startup_timeout: float = 30.0) -> ServerProcess:
    """Start `anchorlog serve` on port 0 and wait until it says where it listens."""
    command = [sys.executable, "-m", "anchorlog.client.cli", "serve", "--data", str(data_dir),
               "--listen", "127.0.0.1:0", *extra]
    log_path = data_dir.parent / f"{data_dir.name}.server.log"
    with open(log_path, "a") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log_file, text=True,
            env={**os.environ, **(env or {})},
        )
    lines: list[str] = []
    address = log_key = ""
    deadline = time.monotonic() + startup_timeout
    assert process.stdout is not None
    # Wait for output with a timeout: a server that is alive but silent must not
    # hang the test past the deadline (readline alone would block forever).
    waiting = selectors.DefaultSelector()
    waiting.register(process.stdout, selectors.EVENT_READ)
    pending = ""
    while (remaining := deadline - time.monotonic()) > 0:
        if "\n" not in pending:
            if not waiting.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 65536).decode(errors="replace")
            if not chunk:
                break
            pending += chunk
            continue
        line, pending = pending.split("\n", 1)
        lines.append(line.rstrip("\n"))
        if m := re.match(r"anchorlog serving on (\S+)", line):
            address = m.group(1)
        if m := re.match(r"verifier key: (\S+)", line):
            log_key = m.group(1)
        if line.startswith("log size:"):
            break
    waiting.close()
    if not address or not log_key:
        process.kill()
        process.communicate(timeout=10)
        raise RuntimeError(f"server did not start: {lines} {log_path.read_text()}")
    token = (data_dir / "admin.token").read_text().strip()
    return ServerProcess(data_dir, process, address, log_key, token, lines, log_path)


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...); OSError once gone."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def spawned_workers(parent: int) -> list[int]:
    """``parent``'s child processes started by multiprocessing's spawn (the
    envelope-checking workers; not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(proc_stat(int(entry.name))[1])
            spawned = b"spawn_main" in (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if ppid == parent and spawned:
            found.append(int(entry.name))
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path / "data", "--auth-failures-per-minute", "10000")
    try:
        yield proc
    finally:
        proc.stop()
