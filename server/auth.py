"""Bearer-token authentication and the role matrix.

Tokens are 32 random bytes, shown once when issued; the server keeps only their
SHA-256 (a token has 256 bits of entropy, so a plain hash is enough) in its own
SQLite file, apart from the log. Lookups go by hash and the final comparison is
constant-time. Failed attempts are rate-limited per peer.

A token is named by its id, the first 16 hex characters of its SHA-256, so an
admin can revoke it without the server ever holding the plaintext. Revocation
sets ``revoked_ms``; the row stays, so a revoked token can never come back, and
revoking the last live admin token is refused so the log always keeps an admin.
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

from anchorlog.ledger.errors import NotFound
from anchorlog.server.errors import FailedPrecondition

TOKEN_PREFIX = "alt_"
TOKEN_ID_HEX_CHARS = 16
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
    "RevokeToken": frozenset({Role.ADMIN}),
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


def token_id(token: str) -> str:
    """The public name of a token: a hash prefix, safe to log and to show."""
    return hash_token(token).hex()[:TOKEN_ID_HEX_CHARS]


def is_token_id(text: str) -> bool:
    return len(text) == TOKEN_ID_HEX_CHARS and all(c in "0123456789abcdef" for c in text)


class TokenNotFound(NotFound):
    """No live (unrevoked) token matches the revocation request."""


class LastAdminToken(FailedPrecondition):
    """The revocation would leave the log with no live admin token."""


@dataclass(frozen=True)
class TokenSelector:
    """Which tokens to revoke: exactly one of the three is set."""

    token_id: str | None = None
    token: str | None = None
    principal: str | None = None

    def describe(self) -> str:
        """For errors and logs: never the token itself."""
        if self.token is not None:
            return "matches the given token"
        if self.token_id is not None:
            return f"has id {self.token_id}"
        return f"belongs to principal {self.principal!r}"


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
            " created_ms INTEGER NOT NULL, revoked_ms INTEGER)"
        )
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(tokens)")}
        if "revoked_ms" not in columns:
            # tokens.db files written before revocation existed.
            self._conn.execute("ALTER TABLE tokens ADD COLUMN revoked_ms INTEGER")
        self._path.chmod(0o600)

    def issue(self, principal: str, role: Role) -> str:
        token = new_token()
        with self._lock:
            self._conn.execute(
                "INSERT INTO tokens(token_hash, principal, role, created_ms) VALUES (?, ?, ?, ?)",
                (hash_token(token), principal, str(role), int(time.time() * 1000)),
            )
        return token

    def revoke(self, selector: TokenSelector) -> list[str]:
        """Revoke the live tokens ``selector`` names; returns their ids (never empty).

        Raises TokenNotFound if none is live, LastAdminToken if no live admin
        token would remain (then nothing is revoked).
        """
        with self._lock:
            # One write transaction: the last-admin check and the update see the same rows.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                chosen_hashes = self._select_revocable(selector)
                now = int(time.time() * 1000)
                self._conn.executemany(
                    "UPDATE tokens SET revoked_ms = ? WHERE token_hash = ?",
                    [(now, digest) for digest in sorted(chosen_hashes)],
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return sorted(digest.hex()[:TOKEN_ID_HEX_CHARS] for digest in chosen_hashes)

    def _select_revocable(self, selector: TokenSelector) -> set[bytes]:
        live: list[tuple[bytes, str, str]] = self._conn.execute(
            "SELECT token_hash, principal, role FROM tokens WHERE revoked_ms IS NULL"
        ).fetchall()
        if selector.token is not None:
            wanted = hash_token(selector.token)
            chosen = [row for row in live if hmac.compare_digest(row[0], wanted)]
        elif selector.token_id is not None:
            chosen = [row for row in live if row[0].hex()[:TOKEN_ID_HEX_CHARS] == selector.token_id]
        else:
            chosen = [row for row in live if row[1] == selector.principal]
        if not chosen:
            raise TokenNotFound(f"no live token {selector.describe()}")
        chosen_hashes = {row[0] for row in chosen}
        admins_left = [row for row in live if row[2] == Role.ADMIN and row[0] not in chosen_hashes]
        if any(row[2] == Role.ADMIN for row in chosen) and not admins_left:
            raise LastAdminToken(
                "refusing to revoke the last live admin token; issue another admin token first"
            )
        return chosen_hashes

    def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        with self._lock:
            row = self._conn.execute(
                "SELECT token_hash, principal, role, revoked_ms FROM tokens WHERE token_hash = ?", (digest,)
            ).fetchone()
        if row is None or not hmac.compare_digest(row[0], digest) or row[3] is not None:
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
