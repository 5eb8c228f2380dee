"""`anchorlog audit` against a real server: mirror, verify, report, tamper evidence, gaming.

The log is populated through the real client over gRPC; the CLI is the real
click command line; corrupted databases are real SQLite files edited with
sqlite3 after the server stopped.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from anchorlog.client.audit.mirror import mirror_log
from anchorlog.client.cli import main
from anchorlog.client.ledger import LedgerClient, Submission
from anchorlog.client.vendor import (
    ClaimDetails,
    VendorKeyPair,
    attest_batch,
    attest_samples,
    revoke_entries,
)
from anchorlog.ledger.checkpoint import sign_checkpoint
from anchorlog.ledger.digests import Canonicalization, digest_text
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, pae, sign_envelope
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import PROVENANCE_V1, Claim, ProvenancePredicate
from anchorlog.ledger.statement import Subject, build_statement
from anchorlog.ledger.store import OPEN_CHECK_ENTRIES, LogStore, PendingEntry, dedup_key
from click.testing import CliRunner

from tests.conftest import ServerProcess, start_server

DB_FILE = "ledger.db"
TAMPER_MESSAGE = "the stored tree no longer matches the last signed checkpoint"


@dataclass(frozen=True)
class World:
    server: ServerProcess
    tmp: Path
    auditor_token: str
    vendor_token: str
    other_token: str
    key: VendorKeyPair
    other_key: VendorKeyPair

    def client(self, token: str, name: str) -> LedgerClient:
        return LedgerClient(
            self.server.address, token=token, log_key=self.server.log_key, state_path=self.tmp / f"{name}.json"
        )


def details(claim: Claim, actor: str, performed_at: datetime | None = None) -> ClaimDetails:
    return ClaimDetails(
        claim=claim, canonicalization=Canonicalization.UTF8_NFC_V1, actor_id=actor, method="review",
        performed_at=performed_at, generator_model="gen-1" if claim is Claim.SYNTHETIC else None,
    )


def submit(client: LedgerClient, items: list[Submission]) -> list[int]:
    outcomes = client.submit(items)
    assert all(o.ok for o in outcomes), [str(o.error) for o in outcomes if not o.ok]
    return [o.receipt.index for o in outcomes if o.receipt is not None]


def make_world(server: ServerProcess, tmp: Path) -> World:
    with LedgerClient(server.address, token=server.admin_token, log_key=server.log_key,
                      state_path=tmp / "admin.json") as admin:
        key, other_key = VendorKeyPair.generate(), VendorKeyPair.generate()
        admin.create_vendor("acme", "Acme Validation")
        admin.register_key("acme", key.public_key)
        admin.create_vendor("beta", "Beta Labs")
        admin.register_key("beta", other_key.public_key)
        world = World(
            server, tmp, admin.issue_token("compliance", "auditor"), admin.issue_token("acme", "vendor"),
            admin.issue_token("beta", "vendor"), key, other_key,
        )
    return world


def populate_clean(world: World) -> None:
    """A normal day: direct and batch attestations by a few reviewers, one revocation."""
    now = datetime.now(UTC)
    with world.client(world.vendor_token, "acme") as acme:
        indices = submit(acme, [
            attest_samples(world.key, [digest_text(f"a{i}") for i in range(3)],
                           details(Claim.HUMAN_VALIDATED, "rev-1", now - timedelta(minutes=30))),
            attest_samples(world.key, [digest_text("a9")], details(Claim.HUMAN_CREATED, "rev-2", now)),
            attest_batch(world.key, [digest_text(f"bulk {i}") for i in range(40)],
                         details(Claim.SYNTHETIC, "pipeline")),
        ])
        revocation = revoke_entries(world.key, [(indices[1], acme.entry(indices[1]).leaf_hash)], "typo")
        submit(acme, [revocation])
    with world.client(world.other_token, "beta") as beta:
        submit(beta, [attest_samples(world.other_key, [digest_text("b1")], details(Claim.HUMAN_EDITED, "ed-1"))])


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    out = result.stdout
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        doc = None
    return result.exit_code, doc, out + result.stderr


def audit_env(world: World) -> dict[str, str]:
    return {
        "ANCHORLOG_SERVER": world.server.address, "ANCHORLOG_TOKEN": world.auditor_token,
        "ANCHORLOG_LOG_KEY": world.server.log_key, "ANCHORLOG_STATE": str(world.tmp / "auditor.json"),
    }


def findings(doc: dict[str, Any]) -> set[tuple[str, int | None]]:
    return {(f["check"], f["index"]) for f in doc["findings"]}


# ---------------------------------------------------------------- clean log


def test_mirror_verify_report_clean_and_incremental(server: ServerProcess, tmp_path: Path) -> None:
    world = make_world(server, tmp_path)
    populate_clean(world)
    env = audit_env(world)
    mirror = tmp_path / "mirror.db"

    code, doc, out = cli("audit", "mirror", "--out", str(mirror), "--no-progress", "--json", env=env)
    assert code == 0, out
    assert doc["clean"] and doc["previous_size"] == 0 and doc["fetched"] == doc["size"] == doc["checkpoint_size"]
    first_size = doc["size"]
    assert first_size == 9  # 4 key events, 3 attestations, 1 revocation, 1 attestation

    code, doc, out = cli("audit", "verify", str(mirror), "--json", env=env)
    assert code == 0, out
    assert doc["clean"] and doc["entries"] == first_size and doc["signatures_verified"] == first_size
    assert "verify" in out and " entries/s" in out  # the progress bar, with its rate, on stderr

    code, doc, out = cli("audit", "report", str(mirror), "--out", str(tmp_path / "report"), "--json",
                         "--max-per-hour", "100", env=env)
    assert code == 0, out
    assert doc["anomalies"] == [] and doc["clean"]
    acme = doc["vendors"]["acme"]
    assert acme["attestations"] == 3 and acme["samples"] == 3 + 1 + 40
    assert acme["claims"] == {"human-created": 1, "human-validated": 1, "synthetic": 1}
    assert acme["revocations_issued"] == 1 and acme["attestations_revoked"] == 1
    reviewers = {(r["vendor"], r["actor"]): r for r in doc["reviewers"]}
    assert reviewers[("acme", "rev-2")]["attestations_revoked"] == 1
    assert reviewers[("beta", "ed-1")]["claims"] == {"human-edited": 1}
    html = (tmp_path / "report" / "activity.html").read_text()
    assert "<svg" in html and "<script" not in html and "src=" not in html
    assert "None found." in (tmp_path / "report" / "report.md").read_text()

    # Incremental: only the new entries are fetched, and consistency is proved and stored.
    with world.client(world.vendor_token, "acme") as acme_client:
        submit(acme_client, [attest_samples(world.key, [digest_text("late")], details(Claim.HUMAN_VALIDATED, "rev-1"))])
        submit(acme_client, [attest_samples(world.key, [digest_text("later")], details(Claim.HUMAN_VALIDATED, "rev-1"))])
    code, doc, out = cli("audit", "mirror", "--out", str(mirror), "--no-progress", "--json", env=env)
    assert code == 0, out
    assert (doc["previous_size"], doc["fetched"], doc["size"]) == (first_size, 2, first_size + 2)
    with sqlite3.connect(mirror) as conn:
        proofs = conn.execute("SELECT first_size, second_size FROM consistency").fetchall()
        sizes = [r[0] for r in conn.execute("SELECT size FROM checkpoints ORDER BY size")]
    assert proofs == [(first_size, first_size + 2)] and sizes == [first_size, first_size + 2]
    code, doc, out = cli("audit", "verify", str(mirror), "--no-progress", "--json", env=env)
    assert code == 0 and doc["clean"], out

    # Nothing new: nothing fetched.
    code, doc, _ = cli("audit", "mirror", "--out", str(mirror), "--no-progress", "--json", env=env)
    assert code == 0 and doc["fetched"] == 0


class _Interrupt(Exception):
    pass


class _StopAfter:
    """A progress sink that interrupts the mirror after some pages, like a Ctrl-C."""

    def __init__(self, pages: int) -> None:
        self.pages = pages

    def update(self, n: int) -> None:
        self.pages -= 1
        if self.pages == 0:
            raise _Interrupt()

    def close(self) -> None:
        pass


def test_interrupted_mirror_resumes_where_it_stopped(server: ServerProcess, tmp_path: Path) -> None:
    world = make_world(server, tmp_path)
    populate_clean(world)
    mirror = tmp_path / "mirror.db"
    verifier = NoteVerifier.from_vkey(server.log_key)
    with world.client(world.auditor_token, "auditor") as auditor:
        with pytest.raises(_Interrupt):
            mirror_log(auditor, mirror, verifier, page_size=2, progress=lambda total, initial: _StopAfter(2))
        with sqlite3.connect(mirror) as conn:
            assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 4
            assert conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 0
        resumed = mirror_log(auditor, mirror, verifier, page_size=2)
    assert resumed.findings.total == 0
    assert (resumed.previous_size, resumed.fetched, resumed.size) == (4, 5, 9)


def test_mirror_refuses_a_different_log_key(server: ServerProcess, tmp_path: Path) -> None:
    world = make_world(server, tmp_path)
    env = audit_env(world)
    mirror = tmp_path / "mirror.db"
    assert cli("audit", "mirror", "--out", str(mirror), "--no-progress", env=env)[0] == 0
    from anchorlog.ledger.note import NoteSigner

    stranger = NoteSigner.generate("anchorlog.local/log").verifier().vkey()
    code, _, out = cli("audit", "mirror", "--out", str(mirror), "--no-progress",
                       env={**env, "ANCHORLOG_LOG_KEY": stranger})
    assert code == 2 and "verifier_key" in out
    # The pinned key check also covers the checkpoint signature: a fresh mirror finds it.
    code, doc, out = cli("audit", "mirror", "--out", str(tmp_path / "other.db"), "--no-progress", "--json",
                         env={**env, "ANCHORLOG_LOG_KEY": stranger})
    assert code == 1 and findings(doc) == {("checkpoint-signature", None)}, out


# ---------------------------------------------------------------- tampering


def _edit(db: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(db)
    try:
        triggers = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
        for name in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        for sql, params in statements:
            conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def _entry(db: Path, index: int) -> bytes:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()[0]


def _flip_last_byte(data: bytes) -> bytes:
    # Inside the envelope JSON: the entry still decodes, only its hash changes.
    return data[:-2] + bytes([data[-2] ^ 0x01]) + data[-1:]


def tamper_byte(db: Path, index: int) -> None:
    _edit(db, ("UPDATE entries SET data = ? WHERE idx = ?", (_flip_last_byte(_entry(db, index)), index)))


def tamper_remove(db: Path, index: int) -> None:
    _edit(db, ("DELETE FROM entries WHERE idx = ?", (index,)))


def tamper_swap(db: Path, first: int, second: int) -> None:
    a, b = _entry(db, first), _entry(db, second)
    _edit(db, ("UPDATE entries SET data = ? WHERE idx = ?", (b, first)),
          ("UPDATE entries SET data = ? WHERE idx = ?", (a, second)))


@pytest.fixture(scope="module")
def populated_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A stopped server's data directory with a clean log, verified clean; tests edit copies."""
    tmp = tmp_path_factory.mktemp("populated")
    server = start_server(tmp / "data", "--auth-failures-per-minute", "10000")
    try:
        populate_clean(make_world(server, tmp))
    finally:
        assert server.stop() == 0
    code, doc, out = cli(
        "audit", "verify", str(server.data_dir / DB_FILE), "--log-key", server.log_key, "--no-progress", "--json"
    )
    assert code == 0 and doc["clean"] and doc["entries"] == 9, out
    return server.data_dir, server.log_key


def _serve_fails(data_dir: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "anchorlog.client.cli", "serve", "--data", str(data_dir), "--listen", "127.0.0.1:0"],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda db: tamper_byte(db, 6), {("leaf-hash", 6), ("hash-chain", 7)}),
        # Entry 7 revokes entry 5: with 5 gone, the revocation points at nothing.
        (lambda db: tamper_remove(db, 5), {("entry-missing", 5), ("revocation-target", 7)}),
        (lambda db: tamper_swap(db, 5, 6), {("entry-index", 5), ("entry-index", 6)}),
    ],
    ids=["byte-changed", "entry-removed", "rows-reordered"],
)
def test_tampered_database_is_refused_and_pinpointed(
    populated_log: tuple[Path, str], tmp_path: Path, tamper: Any, expected: set[tuple[str, int]]
) -> None:
    source, log_key = populated_log
    data_dir = tmp_path / "data"
    shutil.copytree(source, data_dir)
    db = data_dir / DB_FILE
    tamper(db)

    stderr = _serve_fails(data_dir)
    assert TAMPER_MESSAGE in stderr, stderr
    code, doc, out = cli("audit", "verify", str(db), "--log-key", log_key, "--no-progress", "--json")
    assert code == 1, out
    got = findings(doc)
    assert expected <= got, doc["findings"]
    # Nothing is blamed outside the edit (the swap also breaks the link into the next entry).
    assert {i for c, i in got if c != "checkpoint-root"} <= {i for _, i in expected} | {max(i for _, i in expected) + 1}
    # The signed checkpoints no longer match the recomputed tree.
    assert "checkpoint-root" in doc["by_check"]


def test_mirror_pinpoints_tampering_the_open_check_does_not_reach(tmp_path: Path) -> None:
    """Old entries edited beyond the server's start-up re-hash window: the audit finds them."""
    server = start_server(tmp_path / "data", "--auth-failures-per-minute", "10000")
    try:
        world = make_world(server, tmp_path)
        with world.client(world.vendor_token, "acme") as acme:
            detail = details(Claim.HUMAN_VALIDATED, "rev-1")
            items = [attest_samples(world.key, [digest_text(f"s{i}")], detail) for i in range(OPEN_CHECK_ENTRIES + 20)]
            for start in range(0, len(items), 500):
                submit(acme, items[start : start + 500])
    finally:
        assert server.stop() == 0
    db = server.data_dir / DB_FILE
    tamper_byte(db, 5)
    tamper_swap(db, 10, 11)
    restarted = start_server(server.data_dir, "--auth-failures-per-minute", "10000")
    try:
        world = World(restarted, tmp_path, world.auditor_token, world.vendor_token, world.other_token,
                      world.key, world.other_key)
        code, doc, out = cli("audit", "mirror", "--out", str(tmp_path / "m.db"), "--no-progress", "--json",
                             env=audit_env(world))
    finally:
        restarted.stop()
    assert code == 1, out
    got = findings(doc)
    assert {("hash-chain", 6), ("entry-index", 10), ("entry-index", 11), ("checkpoint-root", None)} <= got, got
    chain = next(f for f in doc["findings"] if f["check"] == "hash-chain" and f["index"] == 6)
    assert chain["details"]["previous_index"] == 5
    # The tampered checkpoint is not stored; the evidence (entries) is.
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 0
    code, doc, _ = cli("audit", "verify", str(tmp_path / "m.db"), "--no-progress", "--json")
    assert code == 1 and {("hash-chain", 6), ("entry-index", 10)} <= findings(doc)


# ---------------------------------------------------------------- gaming


def _append_behind_the_service(
    data_dir: Path, key: VendorKeyPair, text: str, predicate: ProvenancePredicate
) -> int:
    """Append one signed attestation with the store's own append path, bypassing the
    service's checks: what a misbehaving (or older) server could have logged."""
    from anchorlog.server.app import KEY_FILE, load_signer

    signer = load_signer(data_dir / KEY_FILE)
    payload = build_statement(
        [Subject(name="s", digest=digest_text(text))], PROVENANCE_V1, predicate.to_json(),
    )
    envelope = sign_envelope(PAYLOAD_TYPE_INTOTO, payload, key.private_key)
    store = LogStore(data_dir / DB_FILE, origin=signer.name)
    try:
        result = store.append(
            [PendingEntry(
                kind=EntryKind.ATTESTATION, submitter="acme", envelope=envelope,
                dedup_key=dedup_key("acme", pae(PAYLOAD_TYPE_INTOTO, payload)),
                subject_digests=(digest_text(text),),
            )],
            now_ms=int(datetime.now(UTC).timestamp() * 1000), sign=lambda cp: sign_checkpoint(cp, signer),
        )
    finally:
        store.close()
    return result.entries[0].index


def test_gaming_patterns_are_reported(server: ServerProcess, tmp_path: Path) -> None:
    world = make_world(server, tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    shared = digest_text("a sample beta created")
    repeated = digest_text("validated again and again")
    with world.client(world.other_token, "beta") as beta:
        (created,) = submit(beta, [attest_samples(world.other_key, [shared], details(Claim.HUMAN_CREATED, "author"))])
    with world.client(world.vendor_token, "acme") as acme:
        # Fast reviewer: 45 samples within a few minutes (limit below: 40/hour).
        (fast_1, fast_2) = submit(acme, [
            attest_batch(world.key, [digest_text(f"fast {i}") for i in range(30)],
                         details(Claim.HUMAN_VALIDATED, "speedy", now - timedelta(minutes=10))),
            attest_samples(world.key, [digest_text(f"fast x{i}") for i in range(15)],
                           details(Claim.HUMAN_VALIDATED, "speedy", now - timedelta(minutes=5))),
        ])
        # Validated a day before the sample first appeared in the log.
        (backdated,) = submit(acme, [attest_samples(
            world.key, [shared], details(Claim.HUMAN_VALIDATED, "backdater", now - timedelta(days=1)))])
        # One sample validated three times by one reviewer (limit 2).
        loops = submit(acme, [
            attest_samples(world.key, [repeated], details(Claim.HUMAN_VALIDATED, "looper", now - timedelta(minutes=m)))
            for m in (30, 20, 10)
        ])
        # A clean reviewer in the same log.
        submit(acme, [attest_samples(world.key, [digest_text("fine")], details(Claim.HUMAN_VALIDATED, "careful"))])
    with world.client(world.server.admin_token, "admin") as admin:
        new_key = VendorKeyPair.generate()
        admin.register_key("acme", new_key.public_key)
        admin.revoke_key("acme", world.key.key_id, reason="left the company")
    env = audit_env(world)
    mirror = tmp_path / "mirror.db"
    code, doc, out = cli("audit", "mirror", "--out", str(mirror), "--no-progress", "--json", env=env)
    assert code == 0 and doc["clean"], out
    code, doc, out = cli("audit", "verify", str(mirror), "--no-progress", "--json", env=env)
    assert code == 0 and doc["clean"], out  # gaming is not corruption: every check passes

    # The service refuses a claim performed in the future and any envelope signed by a
    # revoked key, so those only get in through a misbehaving (or older) server: append
    # them with the store's own append path while the service is down, then serve again.
    server.stop()
    future = _append_behind_the_service(
        server.data_dir, new_key, "tomorrow",
        details(Claim.HUMAN_VALIDATED, "seer", now + timedelta(days=2)).predicate(),
    )
    revoked_use = _append_behind_the_service(
        server.data_dir, world.key, "after revocation", details(Claim.HUMAN_VALIDATED, "careful").predicate(),
    )
    restarted = start_server(server.data_dir, "--auth-failures-per-minute", "10000")
    try:
        code, doc, out = cli("audit", "mirror", "--out", str(mirror), "--no-progress", "--json",
                             env={**env, "ANCHORLOG_SERVER": restarted.address})
    finally:
        restarted.stop()
    assert code == 0 and doc["fetched"] == 2, out  # the tree and chain are intact
    code, doc, out = cli("audit", "verify", str(mirror), "--no-progress", "--json", env=env)
    assert code == 1 and findings(doc) == {("signature", revoked_use)}, out

    code, doc, out = cli("audit", "report", str(mirror), "--out", str(tmp_path / "r"), "--json",
                         "--max-per-hour", "40", "--max-repeats", "2", env=env)
    assert code == 1, out
    anomalies = {(a["kind"], a["index"], a["actor"]) for a in doc["anomalies"]}
    assert anomalies == {
        ("reviewer-rate", fast_2, "speedy"),
        ("validated-before-first-appearance", backdated, "backdater"),
        ("performed-in-future", future, "seer"),
        ("repeated-validation", loops[2], "looper"),
        ("revoked-key-signature", revoked_use, ""),
    }, doc["anomalies"]
    assert created < backdated and fast_1 < fast_2
    assert doc["anomaly_counts"] == {kind: 1 for kind, _, _ in anomalies}
    rate = next(a for a in doc["anomalies"] if a["kind"] == "reviewer-rate")
    assert rate["details"]["samples"] == 45
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "validated-before-first-appearance" in markdown and "repeated-validation" in markdown
    assert "revoked-key-signature" in (tmp_path / "r" / "activity.html").read_text()
    # A generous limit clears the rate anomaly and nothing else.
    code, doc, _ = cli("audit", "report", str(mirror), "--out", str(tmp_path / "r2"), "--json",
                       "--max-per-hour", "1000", env=env)
    assert "reviewer-rate" not in {a["kind"] for a in doc["anomalies"]}


def test_audit_errors_exit_2_and_change_nothing(tmp_path: Path) -> None:
    from anchorlog.ledger.note import NoteSigner

    log_key = NoteSigner.generate("anchorlog.local/log").verifier().vkey()
    code, _, out = cli("audit", "verify", str(tmp_path / "nope.db"), "--log-key", log_key, "--no-progress")
    assert code == 2, out
    not_a_log = tmp_path / "other.db"
    sqlite3.connect(not_a_log).execute("CREATE TABLE t (x)").connection.close()
    code, _, out = cli("audit", "verify", str(not_a_log), "--log-key", log_key, "--no-progress")
    assert code == 2 and "not an anchorlog log" in out, out
    code, _, out = cli("audit", "verify", str(not_a_log), "--no-progress")
    assert code == 2 and "--log-key" in out, out
    code, _, out = cli("audit", "mirror", "--out", str(tmp_path / "m.db"), "--server", "127.0.0.1:1",
                       "--token", "t", "--log-key", log_key, "--no-progress")
    assert code == 2 and "error" in out, out
    assert not (tmp_path / "m.db").exists()
    code, _, out = cli("audit", "report", str(not_a_log), "--out", str(tmp_path / "r"), "--log-key", log_key,
                       "--max-per-hour", "0")
    assert code == 2 and not (tmp_path / "r").exists(), out
