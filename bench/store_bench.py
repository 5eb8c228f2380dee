"""Log store throughput: appends/s and proofs/s at 100k and 1M entries.

    .venv/bin/python bench/store_bench.py [--sizes 100000,1000000] [--runs 5] [--batch 2000]

Builds a log in a fresh SQLite file (the same ``LogStore.append`` path the
sequencer uses: entry encoding, hash chain, tree nodes, digest index, one signed
checkpoint per batch, durable commit), then at each target size measures:

* appends/s: further batches of single-sample entries, median of --runs;
* inclusion proofs/s and consistency proofs/s for random indices and sizes,
  read from the stored nodes, median of --runs;
* baseline, in the same run: raw SHA-256 leaf hashing and Ed25519 signing, so
  the figures can be compared across machines as ratios.

Prints one JSON document to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.store import LogStore, PendingEntry

ORIGIN = "bench.anchorlog.local/log"


def pending(i: int) -> PendingEntry:
    # Roughly the size of a real one-sample envelope (~700 bytes).
    envelope = b'{"payload":"%s","n":%d}' % (b"x" * 650, i)
    digest = hashlib.sha256(b"sample %d" % i).digest()
    return PendingEntry(
        kind=EntryKind.ATTESTATION, submitter="bench-vendor", envelope=envelope,
        dedup_key=hashlib.sha256(envelope).digest(), subject_digests=(digest,),
    )


def grow(store: LogStore, target: int, batch: int, sign) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    while store.size < target:
        n = min(batch, target - store.size)
        base = store.size
        store.append([pending(base + i) for i in range(n)], now_ms=int(time.time() * 1000), sign=sign)
        if store.size % 100_000 < batch:
            rate = store.size / (time.perf_counter() - start)
            print(f"  built {store.size} entries ({rate:,.0f}/s)", file=sys.stderr)


def median_rate(runs: int, count: int, work) -> float:  # type: ignore[no-untyped-def]
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        work()
        rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--proofs", type=int, default=2000)
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    signer = NoteSigner.generate(ORIGIN)

    def sign(cp: Checkpoint) -> bytes:
        return sign_checkpoint(cp, signer)

    rng = random.Random(1)
    data = [bytes(rng.getrandbits(8) for _ in range(700)) for _ in range(200)]
    baseline = {
        "sha256_leaf_hashes_per_s": median_rate(
            options.runs, 200 * 50, lambda: [hashlib.sha256(b"\x00" + d).digest() for _ in range(50) for d in data]
        ),
        "ed25519_signs_per_s": median_rate(options.runs, 2000, lambda: [signer.sign(b"x" * 100) for _ in range(2000)]),
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        store = LogStore(Path(tmp) / "bench.db", origin=ORIGIN)
        for size in sizes:
            grow(store, size, options.batch, sign)

            def append_batch() -> None:
                base = store.size
                store.append([pending(base + i) for i in range(options.batch)], now_ms=0, sign=sign)

            appends = median_rate(options.runs, options.batch, append_batch)
            n = store.size
            indices = [rng.randrange(n) for _ in range(options.proofs)]
            pairs = [sorted((rng.randrange(1, n + 1), rng.randrange(1, n + 1))) for _ in range(options.proofs)]
            inclusion = median_rate(
                options.runs, options.proofs, lambda n=n, indices=indices: [store.inclusion_proof(i, n) for i in indices]
            )
            consistency = median_rate(
                options.runs, options.proofs, lambda pairs=pairs: [store.consistency_proof(a, b) for a, b in pairs]
            )
            db_bytes = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*"))
            results.append({
                "entries": n,
                "appends_per_s": round(appends),
                "append_batch": options.batch,
                "inclusion_proofs_per_s": round(inclusion),
                "consistency_proofs_per_s": round(consistency),
                "db_bytes_per_entry": round(db_bytes / n),
            })
            print(json.dumps(results[-1]), file=sys.stderr)
        store.close()
    print(json.dumps({
        "bench": "store",
        "runs": options.runs,
        "baseline": {k: round(v) for k, v in baseline.items()},
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
