"""Append throughput in bulk envelopes, in attested samples/s.

    .venv/bin/python bench/bulk_bench.py [--direct-envelopes 60] [--batch-envelopes 6] [--runs 3]

Starts the real server on loopback with a fresh database and a vendor made with
the real client, then measures two shapes of bulk attestation, each submitted
over ``--streams`` concurrent ``SubmitStream`` calls from the real client, every
receipt verified by the client, acknowledgements durable:

* direct: envelopes naming ``--subjects`` (1,000) sample digests each as
  in-toto subjects (``attest_samples``);
* batch: envelopes committing to a batch root over ``--batch-size`` (100,000)
  sample digests (``attest_batch``), the digests sent alongside.

Envelopes are built and signed before the clock starts. Baselines in the same
run: the server-side checks a bulk envelope needs, done locally in one thread
(SHA-256 of the batch Merkle tree for a batch envelope, JSON parse and
statement validation for a 1,000-subject envelope), as samples/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchorlog.client.ledger import Submission
from anchorlog.client.vendor import VendorKeyPair, attest_batch, attest_samples
from anchorlog.ledger.attestation import check_attestation
from harness import (
    DETAILS,
    BenchServer,
    ServerProfile,
    client,
    environment,
    median,
    note,
    process_cpu_seconds,
    report,
    sample_digest,
    setup_vendor,
    start_server,
    stat,
    top_frames,
)

TARGET = 150_000.0


def submit_all(
    server: BenchServer, token: str, submissions: list[Submission], streams: int, state: Path
) -> float:
    """Seconds to get verified receipts for every submission over ``streams`` streams."""
    slices = [submissions[i::streams] for i in range(streams)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(streams + 1)

    def run(i: int) -> None:
        try:
            with client(server, token, state / f"s{i}.json") as c:
                barrier.wait()
                for outcome in c.submit_stream(slices[i]):
                    if not outcome.ok:
                        raise RuntimeError(f"submission refused: {outcome.error}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(slices))]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"a submitter failed: {errors[0]!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=1000, help="subjects per direct envelope")
    parser.add_argument("--direct-envelopes", type=int, default=60, help="direct envelopes per run")
    parser.add_argument("--batch-size", type=int, default=100_000, help="samples per batch root")
    parser.add_argument("--batch-envelopes", type=int, default=6, help="batch envelopes per run")
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the server into this folder")
    options = parser.parse_args()
    if options.profile:
        options.profile.mkdir(parents=True, exist_ok=True)
    env = environment()
    note(f"load average at start: {env['load_average_1_5_15']}")
    key = VendorKeyPair.generate()

    note("signing envelopes")
    direct_runs = [
        [
            attest_samples(
                key, [sample_digest(f"d{r}-{e}", i) for i in range(options.subjects)], DETAILS
            )
            for e in range(options.direct_envelopes)
        ]
        for r in range(options.runs)
    ]
    batch_runs = [
        [
            attest_batch(key, (sample_digest(f"b{r}-{e}", i) for i in range(options.batch_size)), DETAILS)
            for e in range(options.batch_envelopes)
        ]
        for r in range(options.runs)
    ]

    # Same-run baselines: the validation work per envelope, locally, one thread.
    def local_rate(submission: Submission, samples: int) -> float:
        started = time.perf_counter()
        repeats = 3
        for _ in range(repeats):
            check_attestation(
                submission.envelope, submission.batch_digests,
                max_subjects=max(options.subjects, 100_000), max_batch=max(options.batch_size, 1_000_000),
                max_envelope_bytes=64 << 20,
            )
        return repeats * samples / (time.perf_counter() - started)

    # A shape with no envelopes (``--direct-envelopes 0`` or ``--batch-envelopes 0``) is skipped.
    baseline = {
        name: median([local_rate(runs[0][0], samples) for _ in range(options.runs)])
        for name, runs, samples in (
            ("direct_local_validation_samples_per_s", direct_runs, options.subjects),
            ("batch_local_validation_samples_per_s", batch_runs, options.batch_size),
        )
        if runs[0]
    }
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="anchorlog-bulk-") as tmp_name:
        tmp = Path(tmp_name)
        with start_server(tmp / "data") as server:
            tokens = setup_vendor(server, tmp, key)
            # Warm-up (connections, first pages), not counted.
            warm = [attest_samples(key, [sample_digest("warm", i) for i in range(10)], DETAILS)]
            submit_all(server, tokens.vendor, warm, 1, tmp)
            for shape, runs, per_envelope, base_key in (
                ("direct", direct_runs, options.subjects, "direct_local_validation_samples_per_s"),
                ("batch", batch_runs, options.batch_size, "batch_local_validation_samples_per_s"),
            ):
                if not runs[0]:
                    continue
                rates, server_cpu, client_cpu = [], [], []
                profile = options.profile / f"bulk-{shape}.txt" if options.profile else None
                with ServerProfile(server.process.pid, profile):
                    for r, submissions in enumerate(runs):
                        # CPU of the server process and of this one (the client threads;
                        # envelopes were signed before): where the two cores go.
                        server_before, client_before = process_cpu_seconds(server.process.pid), time.process_time()
                        elapsed = submit_all(server, tokens.vendor, submissions, options.streams, tmp)
                        samples = len(submissions) * per_envelope
                        server_cpu.append(1e6 * (process_cpu_seconds(server.process.pid) - server_before) / samples)
                        client_cpu.append(1e6 * (time.process_time() - client_before) / samples)
                        rate = samples / elapsed
                        note(
                            f"[{shape}] run {r + 1}: {rate:,.0f} samples/s ({len(submissions)} envelopes); "
                            f"CPU per sample: server {server_cpu[-1]:.2f} us, client {client_cpu[-1]:.2f} us"
                        )
                        rates.append(rate)
                result: dict[str, object] = {
                    "samples_per_envelope": per_envelope,
                    "envelopes_per_run": len(runs[0]),
                    "attested_samples_per_s": stat(rates, 0),
                    "server_cpu_us_per_sample": stat(server_cpu, 2),
                    "client_cpu_us_per_sample": stat(client_cpu, 2),
                    "ratio_to_local_validation": round(median(rates) / baseline[base_key], 3),
                    "target_samples_per_s": TARGET,
                    "meets_target": median(rates) >= TARGET,
                }
                if profile is not None:
                    result["server_profile"] = top_frames(profile)
                results[shape] = result
            db_bytes = sum(p.stat().st_size for p in (tmp / "data").glob("ledger.db*"))
    doc = {
        "bench": "bulk",
        "environment": env,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "baseline": {k: round(v) for k, v in baseline.items()},
        "results": results,
        "database_bytes_at_end": db_bytes,
    }
    lines = [f"bulk append, {options.streams} streams, median of {options.runs} runs"]
    for shape, result in results.items():
        rate = result["attested_samples_per_s"]["median"]  # type: ignore[index]
        lines.append(
            f"  {shape} ({result['samples_per_envelope']:,} samples/envelope): {rate:,.0f} attested samples/s, "
            f"{result['ratio_to_local_validation']:.2f}x local validation rate; target {TARGET:,.0f}: "
            f"{'met' if result['meets_target'] else 'MISSED'}"
        )
    lines.append(
        "  baselines (one thread, local): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in baseline.items())
    )
    report(doc, lines)


if __name__ == "__main__":
    main()
