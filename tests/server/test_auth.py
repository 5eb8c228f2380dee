"""TokenStore revocation on a real SQLite file, including files from before revocation existed."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from anchorlog.server.auth import (
    LastAdminToken,
    Principal,
    Role,
    TokenNotFound,
    TokenSelector,
    TokenStore,
    hash_token,
    is_token_id,
    token_id,
)
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TokenStore]:
    tokens = TokenStore(tmp_path / "tokens.db")
    yield tokens
    tokens.close()


def test_token_id_is_the_sha256_prefix() -> None:
    token = "alt_example"
    assert token_id(token) == hashlib.sha256(token.encode()).hexdigest()[:16]
    assert is_token_id(token_id(token))


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=20))
def test_is_token_id_accepts_only_16_lowercase_hex(text: str) -> None:
    expected = len(text) == 16 and all(c in "0123456789abcdef" for c in text)
    assert is_token_id(text) is expected


def test_revoke_by_id_by_token_and_by_principal(store: TokenStore) -> None:
    admin = store.issue("admin", Role.ADMIN)
    vendor = store.issue("acme", Role.VENDOR)
    readers = [store.issue("builder-1", Role.READER) for _ in range(3)]
    auditor = store.issue("audit-1", Role.AUDITOR)

    assert store.revoke(TokenSelector(token_id=token_id(vendor))) == [token_id(vendor)]
    assert store.authenticate(vendor) is None
    assert store.revoke(TokenSelector(principal="builder-1")) == sorted(token_id(r) for r in readers)
    assert all(store.authenticate(r) is None for r in readers)
    assert store.revoke(TokenSelector(token=auditor)) == [token_id(auditor)]
    assert store.authenticate(auditor) is None
    # Rows stay (a revoked token never comes back); the admin token is untouched.
    assert store.count() == 6
    assert store.authenticate(admin) == Principal("admin", Role.ADMIN)


def test_nothing_live_is_not_found(store: TokenStore) -> None:
    store.issue("admin", Role.ADMIN)
    vendor = store.issue("acme", Role.VENDOR)
    with pytest.raises(TokenNotFound, match="no live token has id 0000000000000000"):
        store.revoke(TokenSelector(token_id="0" * 16))
    with pytest.raises(TokenNotFound, match="belongs to principal 'nobody'"):
        store.revoke(TokenSelector(principal="nobody"))
    store.revoke(TokenSelector(token=vendor))
    with pytest.raises(TokenNotFound) as again:
        store.revoke(TokenSelector(token=vendor))
    assert vendor not in str(again.value)


def test_last_admin_token_is_kept_and_nothing_changes(store: TokenStore) -> None:
    admin = store.issue("ops", Role.ADMIN)
    ops_reader = store.issue("ops", Role.READER)
    for selector in (TokenSelector(token_id=token_id(admin)), TokenSelector(token=admin),
                     TokenSelector(principal="ops")):
        with pytest.raises(LastAdminToken, match="last live admin token"):
            store.revoke(selector)
    # The refused principal-wide revocation did not take the reader token either.
    assert store.authenticate(ops_reader) == Principal("ops", Role.READER)
    assert store.authenticate(admin) == Principal("ops", Role.ADMIN)

    second = store.issue("admin-2", Role.ADMIN)
    assert store.revoke(TokenSelector(principal="ops")) == sorted([token_id(admin), token_id(ops_reader)])
    with pytest.raises(LastAdminToken):
        store.revoke(TokenSelector(token=second))
    assert store.authenticate(second) == Principal("admin-2", Role.ADMIN)


def test_revocation_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    first = TokenStore(path)
    first.issue("admin", Role.ADMIN)
    vendor = first.issue("acme", Role.VENDOR)
    first.revoke(TokenSelector(token_id=token_id(vendor)))
    first.close()
    reopened = TokenStore(path)
    try:
        assert reopened.authenticate(vendor) is None
    finally:
        reopened.close()


def test_old_tokens_db_without_the_column_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    admin, vendor = "alt_old-admin-token", "alt_old-vendor-token"
    with sqlite3.connect(path) as old:
        # The schema as written before revocation existed.
        old.execute("CREATE TABLE tokens (token_hash BLOB PRIMARY KEY, principal TEXT NOT NULL,"
                    " role TEXT NOT NULL, created_ms INTEGER NOT NULL)")
        old.executemany("INSERT INTO tokens VALUES (?, ?, ?, ?)",
                        [(hash_token(admin), "admin", "admin", 1), (hash_token(vendor), "acme", "vendor", 2)])
    old.close()
    path.chmod(0o644)

    store = TokenStore(path)
    try:
        assert store.authenticate(admin) == Principal("admin", Role.ADMIN)
        assert store.authenticate(vendor) == Principal("acme", Role.VENDOR)
        assert store.revoke(TokenSelector(token_id=token_id(vendor))) == [token_id(vendor)]
        assert store.authenticate(vendor) is None
        with pytest.raises(LastAdminToken):
            store.revoke(TokenSelector(principal="admin"))
    finally:
        store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as check:
        columns = [row[1] for row in check.execute("PRAGMA table_info(tokens)")]
        revoked = check.execute("SELECT principal FROM tokens WHERE revoked_ms IS NOT NULL").fetchall()
    check.close()
    assert columns == ["token_hash", "principal", "role", "created_ms", "revoked_ms"]
    assert revoked == [("acme",)]
    # Opening a migrated file again does not try to add the column twice.
    TokenStore(path).close()
