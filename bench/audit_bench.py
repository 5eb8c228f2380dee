"""Audit throughput: `audit mirror` and `audit verify` entries/s on a big log.

    .venv/bin/python bench/audit_bench.py                           # 1,000,000 entries, 1 run
    .venv/bin/python bench/audit_bench.py --entries 100000 --runs 3

Builds a log of N entries fast by calling ``LogStore.append`` directly in big
batches (the sequencer's append path: entry encoding, hash chain, tree nodes,
digest index, one signed checkpoint per batch, durable commit; no network), with
real key events and real Ed25519-signed one-sample attestations (a pool of
distinct signed envelopes is reused, so building does not spend minutes signing;
every entry is still verified in full). Then starts a real ``anchorlog serve``
on it, and ``--runs`` times mirrors the whole log into a fresh mirror over gRPC
with the verifying client (``mirror_log``) and verifies the mirror from scratch
(``verify_mirror``).

Prints one JSON document: median entries/s for mirror and verify, and same-run
baselines: raw SHA-256 leaf hashing of the same entry bytes (a floor on what
any auditor must do per entry) and Ed25519 verifications/s (what verify does
per entry), with the ratios of the audit rates to them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from anchorlog.client.audit.mirror import mirror_log
from anchorlog.client.audit.verify import verify_mirror
from anchorlog.client.ledger import LedgerClient
from anchorlog.client.vendor import ClaimDetails, VendorKeyPair, attest_samples
from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.digests import Canonicalization
from anchorlog.ledger.dsse import Envelope, ed25519_key_id, verify_envelope
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.keys import KeyEvent, KeyEventType, key_event_envelope
from anchorlog.ledger.note import NoteSigner, NoteVerifier
from anchorlog.ledger.predicates import Claim
from anchorlog.ledger.store import LogStore, PendingEntry, dedup_key

ORIGIN = "bench.anchorlog.local/log"
VENDOR = "bench-vendor"


def build_log(data_dir: Path, entries: int, batch: int, pool: int) -> NoteSigner:
    """Write ``data_dir``/ledger.db and log.key as `anchorlog serve` expects them."""
    data_dir.mkdir(parents=True)
    signer = NoteSigner.generate(ORIGIN)
    key_file = data_dir / "log.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(signer.skey() + "\n")
    store = LogStore(data_dir / "ledger.db", origin=ORIGIN)

    def sign(cp: Checkpoint) -> bytes:
        return sign_checkpoint(cp, signer)

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    vendor_key = VendorKeyPair.generate()
    events = [
        KeyEvent(KeyEventType.VENDOR_CREATED, VENDOR, display_name="Bench"),
        KeyEvent(KeyEventType.KEY_REGISTERED, VENDOR, public_key=vendor_key.public_key,
                 not_before=start - timedelta(days=1), not_after=None),
    ]
    keyid = ed25519_key_id(signer.public_key)
    store.append([
        PendingEntry(kind=EntryKind.KEY_EVENT, submitter="admin",
                     envelope=(env := key_event_envelope(e, signer.sign, keyid)),
                     dedup_key=hashlib.sha256(env).digest())
        for e in events
    ], now_ms=int(start.timestamp() * 1000), sign=sign)
    details = ClaimDetails(
        claim=Claim.HUMAN_VALIDATED, canonicalization=Canonicalization.RAW_BYTES, actor_id="reviewer-1",
        method="bench", performed_at=start - timedelta(hours=1),
    )
    envelopes = []
    for i in range(pool):
        digest = hashlib.sha256(b"bench sample %d" % i).digest()
        envelopes.append((attest_samples(vendor_key, [digest], details).envelope, digest))
    t0 = time.perf_counter()
    while store.size < entries:
        n = min(batch, entries - store.size)
        base = store.size
        items = []
        for i in range(base, base + n):
            envelope, digest = envelopes[i % pool]
            items.append(PendingEntry(
                kind=EntryKind.ATTESTATION, submitter=VENDOR, envelope=envelope,
                dedup_key=dedup_key(VENDOR, b"%d" % i), subject_digests=(digest,),
            ))
        store.append(items, now_ms=int((start + timedelta(seconds=base)).timestamp() * 1000), sign=sign)
        if store.size % 100_000 < batch:
            print(f"  built {store.size} entries ({store.size / (time.perf_counter() - t0):,.0f}/s)",
                  file=sys.stderr)
    store.close()
    return signer


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.errors = (data_dir.parent / "server.err").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anchorlog.client.cli", "serve", "--data", str(data_dir),
             "--listen", "127.0.0.1:0", "--origin", ORIGIN, "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=self.errors, text=True,
        )
        assert self.process.stdout is not None
        self.address = ""
        for line in self.process.stdout:
            if m := re.match(r"anchorlog serving on (\S+)", line):
                self.address = m.group(1)
            if line.startswith("log size:"):
                break
        if not self.address:
            self.stop()
            raise RuntimeError(f"server did not start: {(data_dir.parent / 'server.err').read_text()[-2000:]}")
        self.admin_token = (data_dir / "admin.token").read_text().strip()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.errors.close()


def rate(count: int, work: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    work()
    return count / (time.perf_counter() - t0)


def baselines(data_dir: Path, verifier_key: bytes, sample: int = 20_000) -> dict[str, float]:
    store = LogStore(data_dir / "ledger.db", origin=ORIGIN, check_on_open=False)
    rows = [e.data for e in store.entries(2, 2 + sample)]
    store.close()
    from anchorlog.ledger.entry import decode_entry

    envelope = Envelope.parse(decode_entry(rows[0]).envelope)
    sha = statistics.median(
        rate(len(rows), lambda: [hashlib.sha256(b"\x00" + d).digest() for d in rows]) for _ in range(3)
    )
    ed = statistics.median(rate(2000, lambda: [verify_envelope(envelope, verifier_key) for _ in range(2000)])
                           for _ in range(3))
    return {"sha256_leaf_hashes_per_s": sha, "ed25519_envelope_verifies_per_s": ed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="mirror+verify runs (median reported)")
    parser.add_argument("--batch", type=int, default=10_000, help="entries per LogStore.append")
    parser.add_argument("--pool", type=int, default=2_000, help="distinct signed envelopes reused")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None,
                        help="verify processes (default: verify_mirror's choice, one per CPU)")
    options = parser.parse_args()
    if options.entries < 10 or options.runs < 1:
        parser.error("--entries must be >= 10 and --runs >= 1")

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        t0 = time.perf_counter()
        signer = build_log(data_dir, options.entries, options.batch, options.pool)
        build_s = time.perf_counter() - t0
        verifier = signer.verifier()
        vendor_public = _vendor_key(data_dir, verifier)
        base = baselines(data_dir, vendor_public)
        server = Server(data_dir)
        mirror_rates, verify_rates, mirror_bytes = [], [], 0
        try:
            with LedgerClient(server.address, token=server.admin_token, log_key=verifier.vkey(),
                              state_path=Path(tmp) / "admin.json") as admin:
                token = admin.issue_token("bench-auditor", "auditor")
            for run in range(options.runs):
                mirror = Path(tmp) / f"mirror-{run}.db"
                with LedgerClient(server.address, token=token, log_key=verifier.vkey(),
                                  state_path=Path(tmp) / "auditor.json") as client:
                    t1 = time.perf_counter()
                    result = mirror_log(client, mirror, verifier, page_size=options.page_size)
                    mirror_s = time.perf_counter() - t1
                if result.findings.total or result.size != options.entries:
                    raise SystemExit(f"mirror not clean: {result.to_json()}")
                t2 = time.perf_counter()
                checked = verify_mirror(mirror, verifier, workers=options.workers)
                verify_s = time.perf_counter() - t2
                if checked.findings.total or checked.entries != options.entries:
                    raise SystemExit(f"verify not clean: {checked.to_json()}")
                mirror_rates.append(options.entries / mirror_s)
                verify_rates.append(options.entries / verify_s)
                mirror_bytes = sum(p.stat().st_size for p in Path(tmp).glob(f"mirror-{run}.db*"))
                print(f"  run {run + 1}: mirror {mirror_rates[-1]:,.0f}/s, verify {verify_rates[-1]:,.0f}/s",
                      file=sys.stderr)
                mirror.unlink()
        finally:
            server.stop()
    mirror_rate, verify_rate = statistics.median(mirror_rates), statistics.median(verify_rates)
    print(json.dumps({
        "bench": "audit",
        "entries": options.entries,
        "runs": options.runs,
        "verify_workers": options.workers or ("auto", os.cpu_count()),
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "build_entries_per_s": round(options.entries / build_s),
        "mirror_entries_per_s": round(mirror_rate),
        "verify_entries_per_s": round(verify_rate),
        "mirror_runs": [round(r) for r in mirror_rates],
        "verify_runs": [round(r) for r in verify_rates],
        "mirror_db_bytes_per_entry": round(mirror_bytes / options.entries),
        "baseline": {k: round(v) for k, v in base.items()},
        "ratios": {
            "mirror_vs_sha256_leaf_hashing": round(mirror_rate / base["sha256_leaf_hashes_per_s"], 4),
            "verify_vs_sha256_leaf_hashing": round(verify_rate / base["sha256_leaf_hashes_per_s"], 4),
            "verify_vs_ed25519_envelope_verify": round(verify_rate / base["ed25519_envelope_verifies_per_s"], 3),
        },
    }, indent=2))


def _vendor_key(data_dir: Path, verifier: NoteVerifier) -> bytes:
    from anchorlog.ledger.keys import replay_registry

    store = LogStore(data_dir / "ledger.db", origin=ORIGIN, check_on_open=False)
    events = [(e.index, e.data) for e in store.entries(0, 2)]
    store.close()
    (key,) = replay_registry(events, verifier.public_key).keys.values()
    return key.public_key


if __name__ == "__main__":
    main()
