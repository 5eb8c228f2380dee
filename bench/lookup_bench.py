"""Verified provenance lookups, streamed, and single-lookup latency over loopback.

    .venv/bin/python bench/lookup_bench.py [--entries 100000] [--lookups 20000] [--runs 3]

Builds a log of ``--entries`` one-sample attestations with ``bench/loader.py``
(the ``LogStore.append`` path; cached with ``--cache``), starts the real server
on it, then submits ``--batches`` batch-root envelopes of ``--batch-size``
samples through the real client. With a reader token and the real client,
client-side verification on (checkpoint signature and consistency, inclusion
proof of every entry, DSSE signature against the key registry replayed from
the log, batch path, status derived locally), it measures:

* per-sample dataset: ``provenance_many`` over ``--lookups`` random samples
  that each have their own entry, samples/s, median of ``--runs`` streams;
* bulk dataset: ``provenance_many`` over ``--lookups`` random samples attested
  through batch roots, samples/s;
* single lookups: ``provenance(digest)`` one at a time, ``--singles`` calls,
  latency p50/p99 (ms).

Each dataset first gets ``--warmup`` unmeasured runs (reported as
``warmup_samples_per_s``): the server builds a batch's tree on the first lookup
of one of its samples and keeps it, so the first bulk run measures that build.

Baselines in the same run: raw Ed25519 verifications/s in one thread (the
client's per-entry signature check), and the latency of a unary ``WhoAmI``
round trip over the same channel (the transport floor).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchorlog.client.vendor import attest_batch
from anchorlog.ledger.status import Status
from harness import (
    DETAILS,
    ServerProfile,
    client,
    ed25519_verify_rate,
    environment,
    median,
    note,
    percentile,
    process_cpu_seconds,
    report,
    sample_digest,
    start_server,
    stat,
    top_frames,
)
from loader import FILL, build_log

TARGET_PER_SAMPLE = 10_000.0


TARGET_BULK = 50_000.0
TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="one-sample entries in the log")
    parser.add_argument("--batches", type=int, default=3, help="batch-root envelopes submitted")
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=20_000, help="samples per streamed run")
    parser.add_argument("--chunk", type=int, default=2000, help="digests per streamed query message")
    parser.add_argument("--singles", type=int, default=1000, help="single lookups for the latency")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup", type=int, default=1,
        help="unmeasured runs per dataset first (the server builds each batch's tree on its first lookup)",
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "anchorlog-bench-cache")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the server into this folder")
    parser.add_argument(
        "--datasets", default="per_sample,bulk", help="streamed datasets to run, comma-separated (per_sample, bulk)"
    )
    options = parser.parse_args()
    if options.profile:
        options.profile.mkdir(parents=True, exist_ok=True)
    env = environment()
    note(f"load average at start: {env['load_average_1_5_15']}")
    rng = random.Random(7)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="anchorlog-lookup-") as tmp_name:
        tmp = Path(tmp_name)
        loaded = build_log(tmp / "data", options.entries, cache=options.cache)
        with start_server(loaded.data_dir) as server:
            note(f"submitting {options.batches} batch envelopes of {options.batch_size} samples")
            with client(server, loaded.vendor_token, tmp / "vendor.json") as vendor:
                for b in range(options.batches):
                    submission = attest_batch(
                        loaded.key, (sample_digest(f"bulk{b}", i) for i in range(options.batch_size)), DETAILS
                    )
                    (outcome,) = vendor.submit([submission])
                    if not outcome.ok:
                        raise RuntimeError(f"batch refused: {outcome.error}")
            # Filler samples are numbered from 2 (entries 0 and 1 are key events).
            per_sample = list(range(2, loaded.entries))
            datasets = {
                "per_sample": lambda: [sample_digest(FILL, i) for i in rng.sample(per_sample, options.lookups)],
                "bulk": lambda: [
                    sample_digest(f"bulk{rng.randrange(options.batches)}", rng.randrange(options.batch_size))
                    for _ in range(options.lookups)
                ],
            }
            wanted = [name for name in options.datasets.split(",") if name]
            unknown = set(wanted) - set(datasets)
            if unknown:
                parser.error(f"unknown datasets {sorted(unknown)}; choose from {sorted(datasets)}")
            with client(server, loaded.reader_token, tmp / "reader.json") as reader:
                reader.checkpoint()
                for name in wanted:
                    make = datasets[name]
                    rates = []
                    client_cpu: list[float] = []
                    server_cpu: list[float] = []
                    profile = options.profile / f"lookup-{name}.txt" if options.profile else None
                    # The first lookups of a batch build its tree on the server (kept
                    # afterwards): reported, not counted in the median.
                    cold: list[float] = []
                    for _ in range(options.warmup):
                        digests = make()
                        started = time.perf_counter()
                        count = sum(1 for _ in reader.provenance_many(digests, chunk=options.chunk))
                        cold.append(count / (time.perf_counter() - started))
                        note(f"[{name}] warm-up run: {cold[-1]:,.0f} verified samples/s (not counted)")
                    with ServerProfile(server.process.pid, profile):
                        for r in range(options.runs):
                            digests = make()
                            server_before = process_cpu_seconds(server.process.pid)
                            # The client's own threads and its signature process, not the server.
                            client_before = process_cpu_seconds(os.getpid(), exclude=(server.process.pid,))
                            started = time.perf_counter()
                            count = 0
                            for result in reader.provenance_many(digests, chunk=options.chunk):
                                if result.status is not Status.HUMAN_VALIDATED:
                                    raise RuntimeError(f"unexpected status {result.status}")
                                count += 1
                            rate = count / (time.perf_counter() - started)
                            client_after = process_cpu_seconds(os.getpid(), exclude=(server.process.pid,))
                            client_cpu.append((client_after - client_before) / count * 1e6)
                            server_cpu.append((process_cpu_seconds(server.process.pid) - server_before) / count * 1e6)
                            note(
                                f"[{name}] run {r + 1}: {rate:,.0f} verified samples/s (CPU per sample: "
                                f"client {client_cpu[-1]:.0f} us, server {server_cpu[-1]:.0f} us)"
                            )
                            rates.append(rate)
                    target = TARGET_PER_SAMPLE if name == "per_sample" else TARGET_BULK
                    result: dict[str, object] = {
                        "verified_samples_per_s": stat(rates, 0),
                        "warmup_samples_per_s": [round(c) for c in cold],
                        # CPU time (all threads) per verified sample: what a loaded machine
                        # does not distort as much as the wall-clock rate.
                        "client_cpu_us_per_sample": stat(client_cpu, 1),
                        "server_cpu_us_per_sample": stat(server_cpu, 1),
                        "target_samples_per_s": target,
                        "meets_target": median(rates) >= target,
                    }
                    if profile is not None:
                        result["server_profile"] = top_frames(profile)
                    results[name] = result

                def ping() -> float:
                    started = time.perf_counter()
                    reader.whoami()
                    return (time.perf_counter() - started) * 1000

                singles = [sample_digest(FILL, i) for i in rng.sample(per_sample, options.singles)]
                for d in singles[:20]:
                    reader.provenance(d)
                latencies = []
                pings = []
                for d in singles:
                    pings.append(ping())
                    started = time.perf_counter()
                    if reader.provenance(d).status is not Status.HUMAN_VALIDATED:
                        raise RuntimeError("unexpected status")
                    latencies.append((time.perf_counter() - started) * 1000)
                p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
                results["single_lookup_ms"] = {
                    "p50": round(p50, 3), "p99": round(p99, 3), "calls": len(latencies),
                    "baseline_unary_ping_ms": {
                        "p50": round(percentile(pings, 50), 3), "p99": round(percentile(pings, 99), 3),
                    },
                    "ratio_p50_to_ping_p50": round(p50 / percentile(pings, 50), 2),
                    "target_p50_ms": TARGET_P50_MS, "target_p99_ms": TARGET_P99_MS,
                    "meets_target": p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS,
                }
    verify_rate = ed25519_verify_rate(1)
    streamed = [name for name in ("per_sample", "bulk") if name in results]
    for name in streamed:
        r = results[name]
        assert isinstance(r, dict)
        r["ratio_to_raw_ed25519_verify_1_thread"] = round(r["verified_samples_per_s"]["median"] / verify_rate, 3)
    doc = {
        "bench": "lookup",
        "environment": env,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "log_entries": loaded.entries + options.batches,
        "baseline": {"ed25519_verifies_per_s_1_thread": round(verify_rate)},
        "results": results,
    }
    single = results["single_lookup_ms"]
    assert isinstance(single, dict)
    lines = [f"verified lookups, log of {loaded.entries:,} entries + {options.batches} batches, median of {options.runs}"]
    for name in streamed:
        r = results[name]
        assert isinstance(r, dict)
        rate = r["verified_samples_per_s"]["median"]
        lines.append(
            f"  {name}: {rate:,.0f} verified samples/s ({r['ratio_to_raw_ed25519_verify_1_thread']:.2f}x raw "
            f"1-thread Ed25519 verify {verify_rate:,.0f}/s); target {r['target_samples_per_s']:,.0f}: "
            f"{'met' if r['meets_target'] else 'MISSED'}; CPU per sample: client "
            f"{r['client_cpu_us_per_sample']['median']:.0f} us, server {r['server_cpu_us_per_sample']['median']:.0f} us"
        )
    lines.append(
        f"  single lookup: p50 {single['p50']:.2f} ms, p99 {single['p99']:.2f} ms "
        f"(unary ping p50 {single['baseline_unary_ping_ms']['p50']:.2f} ms); target p50<=2, p99<=10: "
        f"{'met' if single['meets_target'] else 'MISSED'}"
    )
    report(doc, lines)


if __name__ == "__main__":
    main()
