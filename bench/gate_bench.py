"""Dataset gate bench: check a big manifest against a populated local server.

    .venv/bin/python bench/gate_bench.py                  # 1,000,000 samples, 3 runs
    .venv/bin/python bench/gate_bench.py --samples 100000 --runs 5

Starts a real ``anchorlog serve`` on loopback in a temporary folder, writes a
JSONL manifest of N texts in 8 slices (one rare), and has one vendor attest
them in bulk through batch roots (one signed envelope per 100,000 samples):
half human-validated, a tenth synthetic, the rest unknown. Then it runs the gate
(``check_dataset`` over ``read_manifest``: read, hash utf8-nfc-v1, stream to
the server, verify every answer, tally) and writes the reports, several times.

Prints medians: samples/s of the check, seconds until the report is written, and
as same-run baselines the rate of reading and hashing the manifest alone (no
ledger) and the ratio of the check to it. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchorlog.client.gate.check import check_dataset
from anchorlog.client.gate.manifests import read_manifest
from anchorlog.client.gate.policy import Policy
from anchorlog.client.gate.report import write_reports
from anchorlog.client.ledger import LedgerClient
from anchorlog.client.vendor import ClaimDetails, VendorKeyPair, attest_batch
from anchorlog.ledger.digests import Canonicalization, digest_text
from anchorlog.ledger.predicates import Claim
from harness import BenchServer, start_server

SLICES = ["news", "web", "books", "code", "forum", "legal", "medical"]
RARE = "rare-dialect"
PER_ENVELOPE = 100_000


def _text(i: int) -> str:
    return f"bench sample {i}: a sentence a person wrote and another person checked."


def _slice(i: int) -> str:
    return RARE if i % 200 == 0 else SLICES[i % len(SLICES)]


def write_manifest(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps({"text": _text(i), "slice": _slice(i)}) + "\n")


def populate(address: str, log_key: str, admin_token: str, state: Path, n: int) -> str:
    key = VendorKeyPair.generate()
    with LedgerClient(
        address, token=admin_token, log_key=log_key, state_path=state / "admin.json"
    ) as admin:
        admin.create_vendor("bench", "Bench Validation")
        admin.register_key("bench", key.public_key)
        vendor_token = admin.issue_token("bench", "vendor")
        reader_token = admin.issue_token("bench-reader", "reader")
    validated = ClaimDetails(
        Claim.HUMAN_VALIDATED, Canonicalization.UTF8_NFC_V1, "reviewer-1", "bench review"
    )
    synthetic = ClaimDetails(
        Claim.SYNTHETIC,
        Canonicalization.UTF8_NFC_V1,
        "pipeline-1",
        "generated",
        generator_model="bench-llm",
    )
    human = [digest_text(_text(i)) for i in range(n) if i % 10 < 5]
    machine = [digest_text(_text(i)) for i in range(n) if i % 10 == 5]
    submissions = [
        attest_batch(key, human[s : s + PER_ENVELOPE], validated)
        for s in range(0, len(human), PER_ENVELOPE)
    ]
    submissions += [
        attest_batch(key, machine[s : s + PER_ENVELOPE], synthetic)
        for s in range(0, len(machine), PER_ENVELOPE)
    ]
    with LedgerClient(
        address, token=vendor_token, log_key=log_key, state_path=state / "vendor.json"
    ) as vendor:
        for outcome in vendor.submit_stream(submissions):
            if not outcome.ok:
                raise SystemExit(f"attestation refused: {outcome.error}")
    return reader_token


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--keep", type=Path, default=None, help="Keep the work folder here.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    server: BenchServer | None = None
    try:
        started = time.perf_counter()
        manifest = work / "train.jsonl"
        write_manifest(manifest, args.samples)
        server = start_server(work / "data")
        address, log_key = server.address, server.log_key
        reader_token = populate(address, log_key, server.admin_token, work, args.samples)
        setup = time.perf_counter() - started
        print(
            f"setup: {args.samples} samples written and attested in "
            f"{-(-args.samples // PER_ENVELOPE) * 2} batch envelopes or fewer, {setup:.1f} s",
            flush=True,
        )

        hashing, checks, reports = [], [], []
        policy = Policy(slice_column="slice")
        result = None
        for run in range(args.runs):
            t0 = time.perf_counter()
            count = sum(1 for _ in read_manifest(manifest, slice_column="slice"))
            hashing.append(count / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            with LedgerClient(
                address, token=reader_token, log_key=log_key, state_path=work / f"reader-{run}.json"
            ) as client:
                result = check_dataset(
                    client,
                    read_manifest(manifest, slice_column="slice"),
                    policy,
                    manifest=manifest.name,
                    chunk=args.chunk,
                )
            t1 = time.perf_counter()
            write_reports(result, work / f"reports-{run}")
            t2 = time.perf_counter()
            checks.append(result.total / (t1 - t0))
            reports.append(t2 - t0)
            print(
                f"run {run + 1}: check {result.total / (t1 - t0):,.0f} samples/s, report after {t2 - t0:.1f} s, "
                f"hashing alone {hashing[-1]:,.0f} samples/s",
                flush=True,
            )
        assert result is not None
        check_rate, hash_rate = statistics.median(checks), statistics.median(hashing)
        print()
        print(
            f"samples: {result.total}  human-grounded: {result.grounded} ({result.fraction:.2%})  "
            f"result: {'PASSED' if result.passed else 'FAILED'}  checkpoint size: {result.checkpoint.size}"
        )
        print(
            f"check (read + hash + stream + verify + tally), median of {args.runs}: {check_rate:,.0f} samples/s"
        )
        print(
            f"time to report (check + JSON/Markdown/HTML), median of {args.runs}: "
            f"{statistics.median(reports):.1f} s"
        )
        print(f"baseline, read + hash the manifest only, median: {hash_rate:,.0f} samples/s")
        print(f"ratio check / hashing baseline: {check_rate / hash_rate:.3f}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process (manifest writer, vendor and checker): {peak:,.0f} MiB")
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            shutil.move(str(work), args.keep)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
