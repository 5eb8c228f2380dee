"""Single verified provenance lookups over loopback: latency and CPU per call.

    .venv/bin/python bench/single_bench.py [--entries 100000] [--calls 1000] [--runs 3]

Copies a cached log of ``--entries`` one-sample attestations (``bench/loader.py``,
cache in ``--cache``), starts the real server on it and, with a reader token and
the real verifying client, times ``--calls`` single ``LedgerClient.provenance()``
calls per run (random per-sample digests, each answer fully verified), after
``--warmup`` calls. Each call is preceded by a unary ``WhoAmI`` ping on the same
channel: the same-run transport floor. Per run it prints latency p50/p99 (ms),
the ping's p50, and CPU time per call of the client process and of the server
process (all threads; the server's also per ping, its gRPC floor); the JSON
has medians over ``--runs``.

With ``--bulk N`` (default 10,000) one batch-root envelope of N samples is
submitted first and the same is measured for single lookups of its samples
(``bulk``): every answer names the same entry, so what a client or server can
remember between calls shows there; ``--bulk 0`` skips it.

``--cprofile FILE`` profiles the client's calls in-process (cProfile, one run,
stats written to FILE and the top functions printed); ``--profile DIR`` records
the server with ``py-spy record --gil`` during the runs.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchorlog.client.ledger import LedgerClient
from anchorlog.client.vendor import attest_batch
from anchorlog.ledger.status import Status
from harness import (
    DETAILS,
    ServerProfile,
    client,
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

TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0


def measure(
    reader: LedgerClient, pid: int, digests: list[bytes], profiler: cProfile.Profile | None
) -> dict[str, float]:
    """Time single lookups of ``digests``, each after a unary ping on the same channel."""
    latencies: list[float] = []
    pings: list[float] = []
    client_cpu = server_cpu = ping_server_cpu = 0.0
    for digest in digests:
        server_before = process_cpu_seconds(pid)
        started = time.perf_counter()
        reader.whoami()
        pings.append((time.perf_counter() - started) * 1000)
        ping_server_cpu += process_cpu_seconds(pid) - server_before
        server_before = process_cpu_seconds(pid)
        client_before = time.process_time()
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = reader.provenance(digest)
        if profiler is not None:
            profiler.disable()
        latencies.append((time.perf_counter() - started) * 1000)
        client_cpu += time.process_time() - client_before
        server_cpu += process_cpu_seconds(pid) - server_before
        if result.status is not Status.HUMAN_VALIDATED:
            raise RuntimeError(f"unexpected status {result.status}")
    n = len(digests)
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "ping_p50_ms": percentile(pings, 50),
        "client_cpu_us_per_call": client_cpu / n * 1e6,
        "server_cpu_us_per_call": server_cpu / n * 1e6,
        "server_cpu_us_per_ping": ping_server_cpu / n * 1e6,
    }


def summarize(runs: list[dict[str, float]]) -> dict[str, object]:
    def col(key: str, digits: int = 3) -> dict[str, object]:
        return stat([run[key] for run in runs], digits)

    p50 = median([run["p50_ms"] for run in runs])
    p99 = median([run["p99_ms"] for run in runs])
    return {
        "p50_ms": col("p50_ms"),
        "p99_ms": col("p99_ms"),
        "baseline_ping_p50_ms": col("ping_p50_ms"),
        "ratio_p50_to_ping_p50": round(p50 / median([run["ping_p50_ms"] for run in runs]), 2),
        "client_cpu_us_per_call": col("client_cpu_us_per_call", 0),
        "server_cpu_us_per_call": col("server_cpu_us_per_call", 0),
        "server_cpu_us_per_ping": col("server_cpu_us_per_ping", 0),
        "target_p50_ms": TARGET_P50_MS,
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="one-sample entries in the log")
    parser.add_argument("--calls", type=int, default=1000, help="single lookups per run")
    parser.add_argument("--bulk", type=int, default=10_000, help="samples of one batch envelope (0: none)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "anchorlog-bench-cache")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the server into this folder")
    parser.add_argument("--cprofile", type=Path, default=None, help="cProfile the client's calls into this file")
    options = parser.parse_args()
    if options.profile:
        options.profile.mkdir(parents=True, exist_ok=True)
    env = environment()
    note(f"load average at start: {env['load_average_1_5_15']}")
    rng = random.Random(11)
    runs: dict[str, list[dict[str, float]]] = {"per_sample": [], "bulk": []}
    with tempfile.TemporaryDirectory(prefix="anchorlog-single-") as tmp_name:
        tmp = Path(tmp_name)
        loaded = build_log(tmp / "data", options.entries, cache=options.cache, progress=False)
        per_sample = range(2, loaded.entries)  # entries 0 and 1 are key events
        with start_server(loaded.data_dir) as server:
            if options.bulk:
                with client(server, loaded.vendor_token, tmp / "v.json") as vendor:
                    batch = (sample_digest("single-bulk", i) for i in range(options.bulk))
                    (outcome,) = vendor.submit([attest_batch(loaded.key, batch, DETAILS)])
                    if not outcome.ok:
                        raise RuntimeError(f"batch refused: {outcome.error}")
            makers = {"per_sample": lambda: [sample_digest(FILL, i) for i in rng.sample(per_sample, options.calls)]}
            if options.bulk:
                makers["bulk"] = lambda: [
                    sample_digest("single-bulk", i) for i in rng.sample(range(options.bulk), options.calls)
                ]
            with client(server, loaded.reader_token, tmp / "r.json") as reader:
                pid = server.process.pid
                for i in rng.sample(per_sample, options.warmup):
                    reader.provenance(sample_digest(FILL, i))
                profile = options.profile / "single-server.txt" if options.profile else None
                with ServerProfile(pid, profile):
                    for r in range(options.runs):
                        for name, make in makers.items():
                            profiler = cProfile.Profile() if options.cprofile and r == 0 else None
                            run = measure(reader, pid, make(), profiler)
                            runs[name].append(run)
                            note(
                                f"[{name}] run {r + 1}: p50 {run['p50_ms']:.3f} ms, p99 {run['p99_ms']:.3f} ms, "
                                f"ping p50 {run['ping_p50_ms']:.3f} ms; CPU per call: client "
                                f"{run['client_cpu_us_per_call']:.0f} us, server {run['server_cpu_us_per_call']:.0f}"
                                f" us (per ping {run['server_cpu_us_per_ping']:.0f} us)"
                            )
                            if profiler is not None:
                                out = options.cprofile.with_suffix(f".{name}{options.cprofile.suffix}")
                                profiler.dump_stats(out)
                                stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative")
                                stats.print_stats(25)
                                stats.sort_stats("tottime").print_stats(20)
    results: dict[str, object] = {name: summarize(done) for name, done in runs.items() if done}
    if profile is not None:
        results["server_profile"] = top_frames(profile)
    doc = {
        "bench": "single",
        "environment": environment(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "log_entries": loaded.entries + (1 if options.bulk else 0),
        "results": results,
    }
    lines = [f"single lookups, log of {loaded.entries:,} entries, {options.calls} calls x {options.runs} runs (medians):"]
    for name, done in runs.items():
        if not done:
            continue
        p50 = median([run["p50_ms"] for run in done])
        p99 = median([run["p99_ms"] for run in done])
        ping = median([run["ping_p50_ms"] for run in done])
        cpu = {k: median([run[k] for run in done]) for k in done[0]}
        lines.append(
            f"  {name}: p50 {p50:.3f} ms, p99 {p99:.3f} ms; unary ping p50 {ping:.3f} ms (ratio {p50 / ping:.2f}); "
            f"target p50<=2, p99<=10: {'met' if p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS else 'MISSED'}"
        )
        lines.append(
            f"    CPU per call: client {cpu['client_cpu_us_per_call']:.0f} us, server "
            f"{cpu['server_cpu_us_per_call']:.0f} us (server per unary ping {cpu['server_cpu_us_per_ping']:.0f} us)"
        )
    report(doc, lines)


if __name__ == "__main__":
    main()
