"""Start, run and stop the anchorlog service.

First start in an empty data directory creates the SQLite log, the log's Ed25519
signing key (``log.key``, mode 0600) and an admin token (``admin.token``, mode
0600). Later starts reuse them and refuse a database whose stored tree no longer
matches its last signed checkpoint, or that is behind the high-water mark in
``log.head`` (see :mod:`anchorlog.server.head`).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import grpc
from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.errors import InvalidInput, TamperedStoreError
from anchorlog.ledger.keys import replay_registry
from anchorlog.ledger.note import NoteSigner, open_note
from anchorlog.ledger.store import LogStore
from anchorlog.server.auth import FailureLimiter, Role, TokenStore
from anchorlog.server.decoding import RejectUndecodable
from anchorlog.server.head import HeadFile, check_store_reaches_head
from anchorlog.server.sequencer import Sequencer
from anchorlog.server.service import LedgerService, ServiceLimits
from anchorlog.server.validation_pool import CheckPool
from anchorlog.v1 import anchorlog_pb2 as pb
from anchorlog.v1 import anchorlog_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger("anchorlog.server")

DB_FILE = "ledger.db"
KEY_FILE = "log.key"
TOKENS_FILE = "tokens.db"
ADMIN_TOKEN_FILE = "admin.token"
SERVICE_NAME = "anchorlog.v1.Ledger"


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    listen: str = "127.0.0.1:7370"
    origin: str = "anchorlog.local/log"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    workers: int = 16
    max_message_bytes: int = 64 << 20
    auth_failures_per_minute: int = 20
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    # Cap on ledger.db's size; past it submissions fail RESOURCE_EXHAUSTED as on a full disk.
    max_db_bytes: int | None = None
    # Processes that check submitted envelopes beside the server's interpreter (0: none;
    # the command line's default is one less than the CPUs).
    check_workers: int = 0


def write_secret_file(path: Path, content: str) -> None:
    """Create ``path`` with mode 0600 from the start (never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def load_signer(path: Path) -> NoteSigner:
    """Read the log key file, refusing one that others could read."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise InvalidInput(str(path), f"log key file is mode {mode:o}; it must be 0600")
    return NoteSigner.from_skey(path.read_text().strip())


def load_or_create_signer(data_dir: Path, origin: str) -> NoteSigner:
    path = data_dir / KEY_FILE
    if path.exists():
        signer = load_signer(path)
        if signer.name != origin:
            raise InvalidInput(
                "origin", f"the log key in {path} is for origin {signer.name!r}, not {origin!r}"
            )
        return signer
    signer = NoteSigner.generate(origin)
    write_secret_file(path, signer.skey() + "\n")
    return signer


def _start_check_pool(workers: int) -> CheckPool | None:
    """The checking workers, or None (checks in this process) when there are none or
    they cannot be started: the service still runs, slower, and says so."""
    if not workers:
        return None
    try:
        return CheckPool(workers)
    except OSError as exc:
        log.error("cannot start %d envelope-checking workers (%s); checking in the server process", workers, exc)
        return None


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    store: LogStore
    sequencer: Sequencer
    tokens: TokenStore
    health: health.HealthServicer
    signer: NoteSigner
    check_pool: CheckPool | None = None

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let RPCs in flight finish, drain the sequencer, close."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.sequencer.close()
        if self.check_pool is not None:
            self.check_pool.close()
        self.store.close()
        self.tokens.close()


def start(config: ServerConfig, out: TextIO = sys.stdout) -> RunningServer:
    if config.limits.max_streams >= config.workers:
        # Each open stream holds a worker thread: at the worker count, idle
        # streams would leave no thread for any other call.
        raise InvalidInput(
            "max_streams",
            f"{config.limits.max_streams} must be below the worker count ({config.workers})",
        )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o700)
    signer = load_or_create_signer(config.data_dir, config.origin)
    store = LogStore(config.data_dir / DB_FILE, origin=config.origin, max_bytes=config.max_db_bytes)
    if store.read_only:
        log.warning("%s is not writable: serving read-only, submissions fail UNAVAILABLE", store.path)
    latest = store.latest_checkpoint()
    if latest is not None:
        # The stored head must carry our own signature over what the tree says.
        opened = open_note(latest.note, [signer.verifier()])
        body = Checkpoint.parse(opened.text)
        if body.size != latest.size or body.root_hash != latest.root_hash:
            raise TamperedStoreError("the last stored checkpoint's note does not match its row")

    def sign(checkpoint: Checkpoint) -> bytes:
        return sign_checkpoint(checkpoint, signer)

    head_file = HeadFile(config.data_dir)
    head = head_file.read(signer.verifier())
    if head is not None:
        check_store_reaches_head(store, head, head_file.path)
    key_entries = store.entries_by_index(store.key_event_indices())
    registry = replay_registry(
        ((i, key_entries[i].data) for i in sorted(key_entries)), signer.public_key
    )
    sequencer = Sequencer(store, registry, sign, on_commit=head_file.write)
    latest = store.ensure_checkpoint(sign=sign)
    if not store.read_only:
        head_file.write(latest)
    tokens = TokenStore(config.data_dir / TOKENS_FILE)
    admin_token_path = config.data_dir / ADMIN_TOKEN_FILE
    if tokens.count() == 0:
        write_secret_file(admin_token_path, tokens.issue("admin", Role.ADMIN) + "\n")

    server = grpc.server(
        ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="anchorlog-rpc"),
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        interceptors=[RejectUndecodable()],
    )
    if config.tls_cert and config.tls_key:
        credentials = grpc.ssl_server_credentials(
            [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())]
        )
        port = server.add_secure_port(config.listen, credentials)
    else:
        port = server.add_insecure_port(config.listen)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    # After the last step that can fail on bad configuration: nothing to stop on error.
    check_pool = _start_check_pool(config.check_workers)
    service = LedgerService(
        store=store,
        registry=registry,
        sequencer=sequencer,
        tokens=tokens,
        signer=signer,
        limits=config.limits,
        failures=FailureLimiter(config.auth_failures_per_minute, 60.0),
        check_pool=check_pool,
    )
    pb_grpc.add_LedgerServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (pb.DESCRIPTOR.services_by_name["Ledger"].full_name, health.SERVICE_NAME, reflection.SERVICE_NAME),
        server,
    )
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = config.listen.rsplit(":", 1)[0]
    print(f"anchorlog serving on {host}:{port}", file=out)
    print(f"origin: {config.origin}", file=out)
    print(f"verifier key: {signer.verifier().vkey()}", file=out)
    if store.read_only:
        print("storage: read-only (ledger.db has no write permission)", file=out)
    if admin_token_path.exists():
        print(f"admin token file: {admin_token_path}", file=out)
    # Last line of the start-up banner: scripts (and the tests) wait for it.
    print(f"log size: {store.size}", file=out)
    out.flush()
    return RunningServer(server, port, store, sequencer, tokens, health_servicer, signer, check_pool)


# Tracked allocations between young collections. Every submission allocates a few
# dozen short-lived containers (parsed JSON, dataclasses), all freed by reference
# counting; at the default 700 the cycle collector ran every few submissions and
# took about a tenth of the server's CPU under load.
GC_YOUNG_THRESHOLD = 50_000


def _tune_gc() -> None:
    """Fewer cycle collections, and none over what start-up loaded (registry, caches)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def serve_forever(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    # Handlers first: a signal that arrives while starting (right after the
    # banner) must still mean a graceful stop, not the default kill.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    running = start(config)
    _tune_gc()
    while not stop.wait(0.5):
        pass
    running.stop()
    print("anchorlog stopped", flush=True)
