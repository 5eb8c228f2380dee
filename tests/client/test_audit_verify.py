"""`audit verify` on real SQLite log files: each check fires on exactly what breaks it."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from anchorlog.client.audit.findings import Check, Finding, FindingSink
from anchorlog.client.audit.mirror_db import MirrorDB, StoredCheckpoint, TreeState
from anchorlog.client.audit.verify import verify_mirror
from anchorlog.client.vendor import VendorKeyPair, attest_samples, revoke_entries
from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, sign_envelope
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.keys import KeyEvent, KeyEventType
from anchorlog.ledger.note import NoteSigner, NoteVerifier
from anchorlog.ledger.predicates import PROVENANCE_V1, Claim
from anchorlog.ledger.statement import Subject, build_statement
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.client.audit_log import ORIGIN, T0, LogBuilder, details, digest


def _findings(path: Path, log_key: str) -> set[tuple[str, int | None]]:
    result = verify_mirror(path, NoteVerifier.from_vkey(log_key))
    return {(str(f.check), f.index) for f in result.findings.findings}


def _unlock(conn: sqlite3.Connection) -> None:
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")


@pytest.fixture
def log(tmp_path: Path) -> Iterator[LogBuilder]:
    builder = LogBuilder(tmp_path / "log.db")
    try:
        yield builder
    finally:
        builder.close()


def test_clean_log_verifies_with_every_signature_checked(log: LogBuilder) -> None:
    acme = log.vendor("acme")
    first = log.attest("acme", acme, ["a", "b"], Claim.HUMAN_VALIDATED, "r1")
    log.attest_batch("acme", acme, [f"bulk {i}" for i in range(100)], Claim.HUMAN_CREATED, "r2")
    log.revoke("acme", acme, [first])
    result = verify_mirror(log.path, NoteVerifier.from_vkey(log.log_key))
    assert result.findings.total == 0, result.findings.findings
    assert (result.entries, result.signatures) == (5, 5)
    assert result.checkpoints == 6  # the empty tree and one per append


def test_checkpoint_signed_by_another_key_is_reported(log: LogBuilder) -> None:
    log.vendor("acme")
    stranger = NoteSigner.generate(ORIGIN)
    forged = sign_checkpoint(Checkpoint(ORIGIN, 2, log.store.root_hash), stranger)
    conn = sqlite3.connect(log.path)
    _unlock(conn)
    conn.execute("UPDATE checkpoints SET note = ? WHERE size = 2", (forged,))
    conn.commit()
    conn.close()
    result = verify_mirror(log.path, NoteVerifier.from_vkey(log.log_key))
    assert [(f.check, f.details) for f in result.findings.findings] == [
        (Check.CHECKPOINT_SIGNATURE, (("size", 2),))
    ]


def test_signature_by_a_revoked_key_is_reported(log: LogBuilder) -> None:
    acme = log.vendor("acme")
    fine = log.attest("acme", acme, ["before"], Claim.HUMAN_VALIDATED, "r1")
    log.revoke_key("acme", acme)
    late = log.attest("acme", acme, ["after"], Claim.HUMAN_VALIDATED, "r1")
    assert _findings(log.path, log.log_key) == {("signature", late)}
    assert fine < late


def test_key_state_follows_rotations(log: LogBuilder) -> None:
    old = log.vendor("acme")
    new = VendorKeyPair.generate()
    early_new = log.attest("acme", new, ["too early"], Claim.HUMAN_VALIDATED, "r1")
    before = log.attest("acme", old, ["before"], Claim.HUMAN_VALIDATED, "r1")
    log.rotate("acme", old, new)
    stale = log.attest("acme", old, ["stale"], Claim.HUMAN_VALIDATED, "r1")
    fresh = log.attest("acme", new, ["fresh"], Claim.HUMAN_VALIDATED, "r1")
    assert _findings(log.path, log.log_key) == {("signature", early_new), ("signature", stale)}
    assert before < stale < fresh


def test_vendor_signing_with_another_vendors_key_is_reported(log: LogBuilder) -> None:
    log.vendor("acme")
    beta = log.vendor("beta")
    stolen = log.attest("acme", beta, ["x"], Claim.HUMAN_VALIDATED, "r1")
    assert _findings(log.path, log.log_key) == {("signature", stolen)}


def test_key_event_not_signed_by_the_log_is_reported(log: LogBuilder) -> None:
    log.vendor("acme")
    rogue = NoteSigner.generate(ORIGIN)
    key = VendorKeyPair.generate()
    forged = log.key_event(
        KeyEvent(KeyEventType.KEY_REGISTERED, "acme", public_key=key.public_key, not_before=T0, not_after=None),
        signed_by=rogue,
    )
    # The key never entered the registry, so what it signs does not verify either.
    used = log.attest("acme", key, ["x"], Claim.HUMAN_VALIDATED, "r1")
    assert _findings(log.path, log.log_key) == {("key-event", forged), ("signature", used)}


def test_revocations_must_name_an_earlier_attestation_of_the_same_vendor(log: LogBuilder) -> None:
    acme = log.vendor("acme")
    beta = log.vendor("beta")
    acme_entry = log.attest("acme", acme, ["a"], Claim.HUMAN_VALIDATED, "r1")
    beta_entry = log.attest("beta", beta, ["b"], Claim.HUMAN_VALIDATED, "r1")
    cross = log.submit("beta", revoke_entries(beta, [(acme_entry, log.store.entry(acme_entry).leaf_hash)], "x"))
    key_event = log.submit("beta", revoke_entries(beta, [(1, log.store.entry(1).leaf_hash)], "x"))
    wrong_hash = log.submit("beta", revoke_entries(beta, [(beta_entry, digest("not the leaf"))], "x"))
    own = log.revoke("beta", beta, [beta_entry])
    found = _findings(log.path, log.log_key)
    assert found == {("revocation-target", cross), ("revocation-target", key_event), ("revocation-target", wrong_hash)}
    assert own > wrong_hash


def test_batch_digests_that_do_not_hash_to_the_signed_root_are_reported(log: LogBuilder) -> None:
    acme = log.vendor("acme")
    batch = log.attest_batch("acme", acme, [f"s{i}" for i in range(10)], Claim.HUMAN_VALIDATED, "r1")
    conn = sqlite3.connect(log.path)
    _unlock(conn)
    blob = conn.execute("SELECT digests FROM batches WHERE idx = ?", (batch,)).fetchone()[0]
    conn.execute("UPDATE batches SET digests = ? WHERE idx = ?", (blob[:-32], batch))
    conn.commit()
    conn.execute("DELETE FROM batches WHERE idx = ?", (batch,))
    conn.commit()
    conn.close()
    result = verify_mirror(log.path, NoteVerifier.from_vkey(log.log_key))
    assert [(f.check, f.index) for f in result.findings.findings] == [(Check.BATCH_DIGESTS, batch)]
    assert "required" in result.findings.findings[0].message


def test_invalid_statement_is_reported(log: LogBuilder) -> None:
    acme = log.vendor("acme")
    pending = log.pending("acme", attest_samples(acme, [digest("x")], details(Claim.HUMAN_VALIDATED, "r1")))
    not_json = log.append([replace(pending, envelope=b"{not json", dedup_key=b"a" * 32)])[0]
    # Validly signed, but the statement says human-validated with a generator model.
    bad_predicate = details(Claim.HUMAN_VALIDATED, "r1").predicate().to_json() | {"generatorModel": "gpt"}
    payload = build_statement([Subject("s", digest("y"))], PROVENANCE_V1, bad_predicate)
    envelope = sign_envelope(PAYLOAD_TYPE_INTOTO, payload, acme.private_key)
    bad = log.append([replace(pending, envelope=envelope, dedup_key=b"b" * 32)])[0]
    assert _findings(log.path, log.log_key) == {("statement", not_json), ("statement", bad)}


def test_tampered_consistency_proof_is_reported(log: LogBuilder, tmp_path: Path) -> None:
    """A mirror's stored consistency proofs are re-verified offline."""
    log.vendor("acme")
    entries = log.store.entries(0, 2)
    honest_proof = log.store.consistency_proof(1, 2)
    mirror = MirrorDB(tmp_path / "m.db", origin=ORIGIN, verifier_key=log.log_key)
    try:
        mirror.append_page([(e.index, e.leaf_hash, e.data) for e in entries], [], TreeState(2, (), bytes(32)))
        for cp in log.store.checkpoints():
            mirror.store_checkpoint(StoredCheckpoint(cp.size, cp.root_hash, cp.note), 0, None)
    finally:
        mirror.close()
    assert _findings(tmp_path / "m.db", log.log_key) == set()
    conn = sqlite3.connect(tmp_path / "m.db")
    conn.execute("INSERT INTO consistency VALUES (1, 2, ?)", (b"".join(honest_proof),))
    conn.commit()
    assert _findings(tmp_path / "m.db", log.log_key) == set()
    conn.execute("UPDATE consistency SET proof = ?", (bytes(32) * len(honest_proof),))
    conn.commit()
    conn.close()
    assert _findings(tmp_path / "m.db", log.log_key) == {("checkpoint-consistency", None)}


def test_findings_are_capped_per_check_and_counted() -> None:
    sink = FindingSink(per_check=2)
    for i in range(5):
        sink.add(Check.HASH_CHAIN, i, "broken")
    sink.add(Check.LEAF_HASH, 9, "bad", size=3)
    assert sink.total == 6 and len(sink.findings) == 3
    doc = sink.to_json()
    assert doc["suppressed"] == {"hash-chain": 3}
    assert doc["findings"][-1] == {"check": "leaf-hash", "index": 9, "message": "bad", "details": {"size": 3}}
    assert str(Finding(Check.HASH_CHAIN, None, "x")) == "[hash-chain] log: x"


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A closed six-entry log file (WAL folded in), copied by each example."""
    builder = LogBuilder(tmp_path_factory.mktemp("template") / "log.db")
    try:
        acme = builder.vendor("acme")
        for i in range(4):
            builder.attest("acme", acme, [f"s{i}"], Claim.HUMAN_VALIDATED, "r1")
    finally:
        builder.close()
    return builder.path, builder.log_key


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_bit_flip_is_pinned_to_its_entry(
    small_log: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    template, log_key = small_log
    path = tmp_path_factory.mktemp("flip") / "log.db"
    shutil.copy(template, path)
    index = data.draw(st.integers(0, 5), label="index")
    conn = sqlite3.connect(path)
    _unlock(conn)
    (blob,) = conn.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    bit = data.draw(st.integers(0, 7), label="bit")
    changed = blob[:position] + bytes([blob[position] ^ (1 << bit)]) + blob[position + 1 :]
    conn.execute("UPDATE entries SET data = ? WHERE idx = ?", (changed, index))
    conn.commit()
    conn.close()
    found = _findings(path, log_key)
    assert ("leaf-hash", index) in found
    # Nothing earlier is blamed, and the recomputed tree no longer matches what was signed.
    assert all(i is None or i >= index for _, i in found), found
    assert any(c == "checkpoint-root" for c, _ in found)


def test_parallel_envelope_checks_find_the_same_as_serial(log: LogBuilder) -> None:
    acme, beta = log.vendor("acme"), log.vendor("beta")
    first = log.attest("acme", acme, ["a"], Claim.HUMAN_VALIDATED, "r1")
    log.attest_batch("acme", acme, [f"b{i}" for i in range(30)], Claim.HUMAN_VALIDATED, "r1")
    stolen = log.attest("acme", beta, ["x"], Claim.HUMAN_VALIDATED, "r1")
    log.revoke_key("acme", acme)
    late = log.attest("acme", acme, ["late"], Claim.HUMAN_VALIDATED, "r1")
    cross = log.submit("beta", revoke_entries(beta, [(first, log.store.entry(first).leaf_hash)], "x"))
    verifier = NoteVerifier.from_vkey(log.log_key)
    serial = verify_mirror(log.path, verifier, workers=1)
    parallel = verify_mirror(log.path, verifier, workers=2)
    expected = {(Check.SIGNATURE, stolen), (Check.SIGNATURE, late), (Check.REVOCATION_TARGET, cross)}
    assert {(f.check, f.index) for f in serial.findings.findings} == expected
    assert parallel.findings.findings == serial.findings.findings
    assert (parallel.entries, parallel.signatures) == (serial.entries, serial.signatures) == (10, 10)
    with pytest.raises(InvalidInput, match="workers"):
        verify_mirror(log.path, verifier, workers=0)
