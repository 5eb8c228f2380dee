"""Before/after of the issue-8 optimizations, each measured both ways in one run.

    .venv/bin/python bench/micro_bench.py [--entries 1000000] [--runs 5]

Uses a log built by ``bench/loader.py`` (cached). Each line runs the old way
and the new way on the same data, same process, alternating, and prints
medians and the speed-up:

* node reads for proofs: ``(level, idx) IN (VALUES ...)`` (a full scan of
  ``nodes``) vs a join from the wanted IDs (primary-key searches);
* inclusion proofs: the planned path reading every node from SQLite vs the
  cached hot levels and right-edge hashes;
* log open: ``count(*)`` over ``entries`` (the old gap check) vs without;
* duplicate check of a 5,000-entry group: one query per key vs one per 500;
* receipt verification on the client: checkpoint signature every receipt vs
  remembered per note (a group's receipts share one checkpoint);
* predicate time parsing: ``strptime`` vs ``fromisoformat`` after the pattern.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchorlog.client.verify import CheckpointMemo, check_checkpoint, check_entry
from anchorlog.ledger.merkle import inclusion_plan
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.store import LogStore
from anchorlog.server.app import DB_FILE, KEY_FILE, load_signer
from harness import environment, note, report
from loader import ORIGIN, build_log


def ab(runs: int, old: Callable[[], float], new: Callable[[], float]) -> dict[str, float]:
    """Alternate old and new ``runs`` times; each returns seconds per operation."""
    olds, news = [], []
    for _ in range(runs):
        olds.append(old())
        news.append(new())
    o, n = statistics.median(olds), statistics.median(news)
    return {"old_us": round(o * 1e6, 2), "new_us": round(n * 1e6, 2), "speedup": round(o / n, 1)}


def per_op(count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "anchorlog-bench-cache")
    options = parser.parse_args()
    env = environment()
    rng = random.Random(3)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="anchorlog-micro-") as tmp_name:
        loaded = build_log(Path(tmp_name) / "data", options.entries, cache=options.cache)
        db = loaded.data_dir / DB_FILE
        store = LogStore(db, origin=ORIGIN)
        n = store.size
        conn = sqlite3.connect(db)

        ids = [(lvl, rng.randrange(max(1, n >> lvl))) for lvl in range(1, 8)]
        params = [v for pair in ids for v in pair]
        values = ",".join("(?, ?)" for _ in ids)
        scan = f"SELECT level, idx, hash FROM nodes WHERE (level, idx) IN (VALUES {values})"
        join = (f"SELECT n.level, n.idx, n.hash FROM (VALUES {values}) AS v "
                "JOIN nodes AS n ON n.level = v.column1 AND n.idx = v.column2")
        results["node_query_7_nodes"] = ab(
            options.runs,
            lambda: per_op(3, lambda: [conn.execute(scan, params).fetchall() for _ in range(3)]),
            lambda: per_op(300, lambda: [conn.execute(join, params).fetchall() for _ in range(300)]),
        )
        note(f"node query: {results['node_query_7_nodes']}")

        indices = [rng.randrange(n) for _ in range(500)]

        def planned() -> None:
            for i in indices:
                plan = inclusion_plan(i, n)
                plan.assemble(store._read_nodes(store._reader(), plan.node_ids()))

        results["inclusion_proof_random"] = ab(
            options.runs,
            lambda: per_op(len(indices), planned),
            lambda: per_op(len(indices), lambda: [store.inclusion_proof(i, n) for i in indices]),
        )
        recent = [n - 1 - rng.randrange(2000) for _ in range(500)]

        def planned_recent() -> None:
            for i in recent:
                plan = inclusion_plan(i, n)
                plan.assemble(store._read_nodes(store._reader(), plan.node_ids()))

        results["inclusion_proof_recent_receipt"] = ab(
            options.runs,
            lambda: per_op(len(recent), planned_recent),
            lambda: per_op(len(recent), lambda: [store.inclusion_proof(i, n) for i in recent]),
        )
        note(f"proofs: {results['inclusion_proof_random']} {results['inclusion_proof_recent_receipt']}")
        store.close()

        def open_with_count() -> float:
            started = time.perf_counter()
            c = sqlite3.connect(db)
            c.execute("SELECT max(idx), count(*) FROM entries").fetchone()
            c.close()
            s = LogStore(db, origin=ORIGIN)
            s.close()
            return time.perf_counter() - started

        def open_now() -> float:
            started = time.perf_counter()
            s = LogStore(db, origin=ORIGIN)
            s.close()
            return time.perf_counter() - started

        results["log_open"] = ab(options.runs, open_with_count, open_now)
        note(f"open: {results['log_open']}")

        store = LogStore(db, origin=ORIGIN)
        keys = [k for (k,) in conn.execute("SELECT key FROM dedup ORDER BY random() LIMIT 2500")]
        keys += [bytes(rng.getrandbits(8) for _ in range(32)) for _ in range(2500)]
        reader = store._reader()

        def one_by_one() -> None:
            for k in keys:
                reader.execute(
                    "SELECT e.idx, e.data, e.leaf_hash FROM dedup d JOIN entries e ON e.idx = d.idx "
                    "WHERE d.key = ?", (k,),
                ).fetchone()

        results["dedup_check_5000_group"] = ab(
            options.runs,
            lambda: per_op(1, one_by_one),
            lambda: per_op(1, lambda: store._find_duplicates(reader, keys)),
        )
        note(f"dedup: {results['dedup_check_5000_group']}")

        signer = load_signer(loaded.data_dir / KEY_FILE)
        verifier = NoteVerifier.from_vkey(signer.verifier().vkey())
        cp = store.latest_checkpoint()
        assert cp is not None
        receipts = [(i, store.entry(i).data, store.inclusion_proof(i, n)) for i in recent[:200]]

        def verify_plain() -> None:
            for i, data, proof in receipts:
                check_entry(i, data, proof, n, check_checkpoint(cp.note, verifier))

        def verify_memo() -> None:
            memo = CheckpointMemo(verifier)
            for i, data, proof in receipts:
                check_entry(i, data, proof, n, memo.check(cp.note))

        results["receipt_verify_client"] = ab(
            options.runs, lambda: per_op(len(receipts), verify_plain), lambda: per_op(len(receipts), verify_memo)
        )
        note(f"receipts: {results['receipt_verify_client']}")
        store.close()
        conn.close()

    stamp = "2026-11-01T09:30:00Z"
    results["predicate_time_parse"] = ab(
        options.runs,
        lambda: per_op(5000, lambda: [datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                                      for _ in range(5000)]),
        lambda: per_op(5000, lambda: [datetime.fromisoformat(stamp[:-1]).replace(tzinfo=UTC) for _ in range(5000)]),
    )
    doc = {"bench": "micro", "environment": env, "entries": n, "results": results}
    lines = [f"issue-8 optimizations, old vs new in one run, log of {n:,} entries, median of {options.runs}"]
    for name, r in results.items():
        lines.append(f"  {name}: {r['old_us']:,.1f} us -> {r['new_us']:,.1f} us ({r['speedup']}x)")
    report(doc, lines)


if __name__ == "__main__":
    main()
