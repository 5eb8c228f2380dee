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
* predicate time parsing: ``strptime`` vs ``fromisoformat`` after the pattern;
* cached inclusion proofs with every level in memory (``hot_level=0``): the
  bottom-up walk over an int-keyed dict of nodes vs ``inclusion_nodes`` and
  dense per-level lists;
* subjects index insert of a 100,000-digest batch into a fresh table: one
  ``executemany`` row per digest vs one statement cutting the blob in SQLite;
* batch digest order check of 100,000 digests: a Python loop vs one
  ``map(operator.lt, ...)`` pass.
"""

from __future__ import annotations

import argparse
import operator
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchorlog.client.verify import CheckpointMemo, check_checkpoint, check_entry
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.merkle import inclusion_plan
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.store import _INSERT_SUBJECT_BLOB, LogStore, PendingEntry
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


def _dict_walk(nodes: dict[int, bytes], edges: dict[int, bytes], index: int, size: int) -> list[bytes]:
    """The cached audit path as it was before: RFC 9162's walk, one dict read per level."""
    proof: list[bytes] = []
    fn, sn, level = index, size - 1, 0
    while sn:
        if fn & 1:
            proof.append(nodes[(fn - 1) << 6 | level])
        elif fn < sn:
            sibling = fn + 1
            if (sibling + 1) << level > size:
                proof.append(edges[sibling << level])
            else:
                proof.append(nodes[sibling << 6 | level])
        fn >>= 1
        sn >>= 1
        level += 1
    return proof


def _subjects_insert(blob: bytes, *, blob_statement: bool) -> float:
    """Seconds to insert a batch's subject rows into a fresh subjects table (commit excluded)."""
    with tempfile.TemporaryDirectory(prefix="anchorlog-micro-subjects-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "s.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE subjects (digest BLOB NOT NULL, idx INTEGER NOT NULL, "
            "PRIMARY KEY (digest, idx)) WITHOUT ROWID"
        )
        conn.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        if blob_statement:
            conn.execute(_INSERT_SUBJECT_BLOB, (blob, len(blob) // 32, 7))
        else:
            conn.executemany(
                "INSERT OR IGNORE INTO subjects(digest, idx) VALUES (?, ?)",
                [(blob[i : i + 32], 7) for i in range(0, len(blob), 32)],
            )
        elapsed = time.perf_counter() - started
        conn.execute("COMMIT")
        conn.close()
    return elapsed


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
        # Keys without subjects: the dedup-table probe alone, as in the old way.
        probes = [
            PendingEntry(kind=EntryKind.ATTESTATION, submitter="micro", envelope=b"", dedup_key=k) for k in keys
        ]

        def one_by_one() -> None:
            for k in keys:
                reader.execute(
                    "SELECT e.idx, e.data, e.leaf_hash FROM dedup d JOIN entries e ON e.idx = d.idx "
                    "WHERE d.key = ?", (k,),
                ).fetchone()

        results["dedup_check_5000_group"] = ab(
            options.runs,
            lambda: per_op(1, one_by_one),
            lambda: per_op(1, lambda: store._find_duplicates(reader, probes)),
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

        memory = LogStore(db, origin=ORIGIN, hot_level=0)
        levels = memory._proofs.levels
        by_key = {i << 6 | level: h for level, nodes in enumerate(levels) for i, h in enumerate(nodes)}
        edges = memory._proofs.edges[n]
        spread = [rng.randrange(n) for _ in range(5000)]
        results["inclusion_proof_all_cached"] = ab(
            options.runs,
            lambda: per_op(len(spread), lambda: [_dict_walk(by_key, edges, i, n) for i in spread]),
            lambda: per_op(len(spread), lambda: [memory._inclusion_from_edges(i, n, edges) for i in spread]),
        )
        assert all(_dict_walk(by_key, edges, i, n) == memory.inclusion_proof(i, n) for i in spread[:200])
        note(f"cached proofs: {results['inclusion_proof_all_cached']}")
        memory.close()

    blob = b"".join(sorted(bytes(rng.getrandbits(8) for _ in range(32)) for _ in range(100_000)))
    results["subjects_insert_100k_batch"] = ab(
        options.runs,
        lambda: _subjects_insert(blob, blob_statement=False) / 100_000,
        lambda: _subjects_insert(blob, blob_statement=True) / 100_000,
    )
    note(f"subjects insert: {results['subjects_insert_100k_batch']}")
    digests = [blob[i : i + 32] for i in range(0, len(blob), 32)]

    def order_loop() -> None:
        for i in range(1, len(digests)):
            if digests[i - 1] >= digests[i]:
                raise AssertionError

    results["batch_order_check_100k"] = ab(
        options.runs,
        lambda: per_op(len(digests), order_loop),
        lambda: per_op(len(digests), lambda: all(map(operator.lt, digests, islice(digests, 1, None)))),
    )

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
