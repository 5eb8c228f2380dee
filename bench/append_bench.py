"""Append throughput, one sample per envelope, durable before acknowledgement.

    .venv/bin/python bench/append_bench.py [--prefill 1000000] [--streams 8] [--per-run 12000] [--runs 3]

Starts the real server on loopback with a fresh database, creates a vendor with
the real client, then drives ``SubmitStream`` from ``--streams`` concurrent
submitters (each its own ``LedgerClient`` and channel, spread over
``--procs`` client processes) with distinct, signed one-sample envelopes made
before the clock starts. The clock stops when every envelope has a receipt the
client verified (checkpoint signature, inclusion proof, same statement): the
server acknowledges only after the group commit is durable, so the rate is
durable attestations/s.

Measured twice: on an empty log, and with ``--prefill`` entries already in
the log (built by ``bench/loader.py`` through ``LogStore.append``; cached with
``--cache``). ``--prefill 0`` skips the second phase.

Baseline in the same run: raw Ed25519 verifications/s with as many threads as
there are submitters; the headline ratio is attestations/s divided by it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchorlog.client.ledger import Submission
from anchorlog.client.vendor import VendorKeyPair
from harness import (
    BenchServer,
    OneSampleEnvelopes,
    ServerProfile,
    ed25519_verify_rate,
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
from loader import build_log

TARGET = 6000.0


@dataclass(frozen=True)
class RunFigures:
    rate: float  # attestations/s
    # CPU time per attestation (user + system, all threads): where the 2 cores go.
    server_cpu_us: float
    client_cpu_us: float


def _submitter(
    address: str, log_key: str, token: str, envelopes: list[bytes], state: str, per_request: int
) -> int:
    from anchorlog.client.ledger import LedgerClient

    with LedgerClient(address, token=token, log_key=log_key, state_path=Path(state)) as c:
        ok = 0
        submissions = [Submission(e) for e in envelopes]
        if per_request:
            outcomes = (
                o
                for start in range(0, len(submissions), per_request)
                for o in c.submit(submissions[start : start + per_request], per_request=per_request)
            )
        else:
            outcomes = c.submit_stream(submissions)
        for outcome in outcomes:
            if not outcome.ok:
                raise RuntimeError(f"submission refused: {outcome.error}")
            ok += 1
    return ok


def _process_main(args: tuple[str, str, str, list[list[bytes]], str, int, mp.Barrier, mp.Queue]) -> None:
    import resource
    import threading

    address, log_key, token, slices, state_dir, per_request, barrier, out = args
    counts = [0] * len(slices)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            counts[i] = _submitter(
                address, log_key, token, slices[i], f"{state_dir}/s{i}.json", per_request
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(slices))]
    barrier.wait()
    before = resource.getrusage(resource.RUSAGE_SELF)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    out.put(repr(errors[0]) if errors else (sum(counts), cpu))


def run_once(
    server: BenchServer,
    token: str,
    envelopes: list[bytes],
    streams: int,
    procs: int,
    state_dir: Path,
    per_request: int = 0,
) -> RunFigures:
    """Submit ``envelopes`` from ``streams`` submitters in ``procs`` processes.

    ``per_request`` 0: one ``SubmitStream`` per submitter; else unary ``Submit``
    calls of that many envelopes (each still one sample).
    """
    slices = [envelopes[i::streams] for i in range(streams)]
    per_proc = [slices[p::procs] for p in range(procs)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs + 1)
    out: mp.Queue = ctx.Queue()
    workers = [
        ctx.Process(
            target=_process_main,
            args=((server.address, server.log_key, token, per_proc[p], str(state_dir / f"p{p}"), per_request,
                   barrier, out),),
        )
        for p in range(procs)
    ]
    for w in workers:
        w.start()
    barrier.wait()
    server_cpu = process_cpu_seconds(server.process.pid)
    started = time.perf_counter()
    results = [out.get() for _ in workers]
    elapsed = time.perf_counter() - started
    server_cpu = process_cpu_seconds(server.process.pid) - server_cpu
    for w in workers:
        w.join()
    bad = [r for r in results if not isinstance(r, tuple)]
    if bad:
        raise RuntimeError(f"a submitter failed: {bad[0]}")
    receipts = sum(r[0] for r in results)
    if receipts != len(envelopes):
        raise RuntimeError(f"{receipts} receipts for {len(envelopes)} envelopes")
    return RunFigures(
        rate=len(envelopes) / elapsed,
        server_cpu_us=1e6 * server_cpu / len(envelopes),
        client_cpu_us=1e6 * sum(r[1] for r in results) / len(envelopes),
    )


def phase(
    name: str, server: BenchServer, key: VendorKeyPair, token: str, options: argparse.Namespace, tmp: Path
) -> dict[str, object]:
    factory = OneSampleEnvelopes(key)
    note(f"[{name}] signing {options.runs} x {options.per_run} envelopes")
    batches = [
        [factory.envelope(sample_digest(f"{name}-run{r}", i)) for i in range(options.per_run)]
        for r in range(options.runs + 1)
    ]
    # One warm-up run as long as a measured one (connections, caches), not counted.
    # On a log of 10^6 entries built by loader.py the first measured run is still
    # about 0.6x the next ones, as it was with a quarter-length warm-up (not
    # explained yet; the median of three runs is reported, each run is printed).
    run_once(server, token, batches[0], options.streams, options.procs, tmp / f"{name}-w", options.per_request)
    rates: list[float] = []
    server_cpu: list[float] = []
    client_cpu: list[float] = []
    profile = options.profile / f"append-{name}.txt" if options.profile else None
    with ServerProfile(server.process.pid, profile):
        for r in range(1, options.runs + 1):
            figures = run_once(server, token, batches[r], options.streams, options.procs,
                               tmp / f"{name}-{r}", options.per_request)
            note(f"[{name}] run {r}: {figures.rate:,.0f} attestations/s; CPU per attestation: "
                 f"server {figures.server_cpu_us:,.0f} us, clients {figures.client_cpu_us:,.0f} us")
            rates.append(figures.rate)
            server_cpu.append(figures.server_cpu_us)
            client_cpu.append(figures.client_cpu_us)
    result: dict[str, object] = {
        "attestations_per_s": stat(rates, 0),
        "server_cpu_us_per_attestation": stat(server_cpu, 0),
        "client_cpu_us_per_attestation": stat(client_cpu, 0),
    }
    if profile is not None:
        result["server_profile"] = top_frames(profile)
        result["server_profile_file"] = str(profile)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=8, help="concurrent submit streams")
    parser.add_argument("--per-request", type=int, default=0,
                        help="0: SubmitStream per submitter; N: unary Submit calls of N one-sample envelopes")
    parser.add_argument("--procs", type=int, default=2, help="client processes the streams are spread over")
    parser.add_argument("--per-run", type=int, default=12000, help="envelopes per measured run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefill", type=int, default=1_000_000, help="entries already in the log (0: skip)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "anchorlog-bench-cache")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the server with py-spy into this folder during measured runs")
    options = parser.parse_args()
    if options.profile:
        options.profile.mkdir(parents=True, exist_ok=True)
    options.procs = max(1, min(options.procs, options.streams))
    env = environment()
    note(f"load average at start: {env['load_average_1_5_15']}")

    baseline_before = ed25519_verify_rate(options.streams)
    phases: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="anchorlog-append-") as tmp_name:
        tmp = Path(tmp_name)
        key = VendorKeyPair.generate()
        with start_server(tmp / "fresh") as server:
            tokens = setup_vendor(server, tmp, key)
            phases["empty_log"] = phase("empty", server, key, tokens.vendor, options, tmp)
        if options.prefill:
            note(f"[prefilled] building a log of {options.prefill} entries")
            loaded = build_log(tmp / "prefilled", options.prefill, cache=options.cache)
            with start_server(loaded.data_dir) as server:
                result = phase("prefilled", server, loaded.key, loaded.vendor_token, options, tmp)
                result["entries_before"] = loaded.entries
                result["log_schema_as_built"] = loaded.schema
                phases["prefilled_log"] = result
    baseline_after = ed25519_verify_rate(options.streams)
    verify_rate = median([baseline_before, baseline_after])
    openssl_rate = ed25519_verify_rate(options.streams, openssl=True)  # the check used before libsodium
    for result in phases.values():
        assert isinstance(result, dict)
        rate = result["attestations_per_s"]["median"]
        result["ratio_to_raw_ed25519_verify"] = round(rate / verify_rate, 3)
        result["target_attestations_per_s"] = TARGET
        result["meets_target"] = rate >= TARGET
    doc = {
        "bench": "append",
        "environment": env,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "baseline": {
            "ed25519_verifies_per_s": round(verify_rate),
            "threads": options.streams,
            "runs": [round(baseline_before), round(baseline_after)],
            "openssl_ed25519_verifies_per_s": round(openssl_rate),
        },
        "results": phases,
    }
    lines = [
        (
            f"append, one sample per envelope, {options.streams} submitters in {options.procs} client "
            f"processes ({'SubmitStream' if not options.per_request else f'unary Submit of {options.per_request}'}), "
            f"{options.per_run} envelopes per run, median of {options.runs}"
        ),
        (
            f"  baseline raw Ed25519 verify ({options.streams} threads): {verify_rate:,.0f}/s "
            f"(libsodium, as the server checks; OpenSSL: {openssl_rate:,.0f}/s)"
        ),
    ]
    for name, result in phases.items():
        assert isinstance(result, dict)
        rate = result["attestations_per_s"]["median"]
        lines.append(
            f"  {name}: {rate:,.0f} attestations/s durable (runs {result['attestations_per_s']['runs']}), "
            f"{result['ratio_to_raw_ed25519_verify']:.2f}x raw verify rate; target {TARGET:,.0f}: "
            f"{'met' if result['meets_target'] else 'MISSED'}"
        )
    report(doc, lines)


if __name__ == "__main__":
    main()
