"""Bearer-token authentication and the role matrix.

Tokens are 32 random bytes, shown once when issued; the server keeps only their
SHA-256 (a token has 256 bits of entropy, so a plain hash is enough) in its own
SQLite file, apart from the log. Lookups go by hash and the final comparison is
constant-time. Failed attempts are rate-limited per peer.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

TOKEN_PREFIX = "alt_"
# Peers with failures in the window are kept; quiet ones are swept past this many.
_MAX_TRACKED_PEERS = 10_000


class Role(enum.StrEnum):
    ADMIN = "admin"
    VENDOR = "vendor"
    READER = "reader"
    AUDITOR = "auditor"


READ_ROLES = frozenset({Role.ADMIN, Role.VENDOR, Role.READER, Role.AUDITOR})
AUDIT_ROLES = frozenset({Role.ADMIN, Role.AUDITOR})

# Which roles may call each RPC. Every RPC is listed; the servicer refuses to
# start if one is missing, so a new RPC cannot be left open by accident.
RPC_ROLES: dict[str, frozenset[Role]] = {
    "Submit": frozenset({Role.VENDOR}),
    "SubmitStream": frozenset({Role.VENDOR}),
    "GetProvenance": READ_ROLES,
    "StreamProvenance": READ_ROLES,
    "GetCheckpoint": READ_ROLES,
    "GetConsistencyProof": READ_ROLES,
    "GetInclusionProof": READ_ROLES,
    "GetEntries": AUDIT_ROLES,
    "GetBatchDigests": AUDIT_ROLES,
    "GetKeyHistory": AUDIT_ROLES,
    "CreateVendor": frozenset({Role.ADMIN}),
    "RegisterKey": frozenset({Role.ADMIN}),
    "RotateKey": frozenset({Role.ADMIN}),
    "RevokeKey": frozenset({Role.ADMIN}),
    "IssueToken": frozenset({Role.ADMIN}),
    "WhoAmI": READ_ROLES,
}


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenStore:
    """Tokens in their own SQLite file (never in the log, never in backups of it)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS tokens ("
            " token_hash BLOB PRIMARY KEY, principal TEXT NOT NULL, role TEXT NOT NULL,"
            " created_ms INTEGER NOT NULL)"
        )
        self._path.chmod(0o600)

    def issue(self, principal: str, role: Role) -> str:
        token = new_token()
        with self._lock:
            self._conn.execute(
                "INSERT INTO tokens(token_hash, principal, role, created_ms) VALUES (?, ?, ?, ?)",
                (hash_token(token), principal, str(role), int(time.time() * 1000)),
            )
        return token

    def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        with self._lock:
            row = self._conn.execute(
                "SELECT token_hash, principal, role FROM tokens WHERE token_hash = ?", (digest,)
            ).fetchone()
        if row is None or not hmac.compare_digest(row[0], digest):
            return None
        return Principal(row[1], Role(row[2]))

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM tokens").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class FailureLimiter:
    """Sliding-window limit on failed authentications per peer."""

    def __init__(self, max_failures: int = 20, window_s: float = 60.0) -> None:
        self._max = max_failures
        self._window = window_s
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, peer: str) -> bool:
        with self._lock:
            recent = self._prune(peer, time.monotonic())
            if not recent:
                # Forget quiet peers, so the table cannot grow without bound.
                del self._failures[peer]
            return len(recent) >= self._max

    def record_failure(self, peer: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._prune(peer, now).append(now)
            if len(self._failures) > _MAX_TRACKED_PEERS:
                for quiet in [p for p in self._failures if not self._prune(p, now)]:
                    del self._failures[quiet]

    def _prune(self, peer: str, now: float) -> deque[float]:
        recent = self._failures.setdefault(peer, deque())
        while recent and now - recent[0] > self._window:
            recent.popleft()
        return recent
