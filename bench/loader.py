"""Fast loader: build a big log without the network, through the same append path.

    .venv/bin/python bench/loader.py --entries 1000000 --data /tmp/bench-log

The data directory is first initialised by the real server (log key, admin
token, the vendor and its registered key as logged key events, vendor and
reader tokens), then the server is stopped and real, signed one-sample
attestations are appended with ``LogStore.append`` in batches: the sequencer's
own call (entry encoding, hash chain, tree nodes, digest index, one signed
checkpoint per batch, durable commit). Only gRPC and the per-envelope
validation are skipped. The server opens the result like any other log.

Sample ``i`` has digest ``SHA-256("fill/<i>")`` (see ``harness.sample_digest``).
``bench.json`` in the data directory records the tokens and the entry count;
``vendor.key`` is the vendor's signing key.

Built logs can be cached (``--cache``): later runs copy the cached directory
instead of rebuilding it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from anchorlog.client.vendor import VendorKeyPair
from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, pae
from anchorlog.ledger.entry import EntryKind
from anchorlog.ledger.store import SCHEMA_VERSION, LogStore, PendingEntry, dedup_key
from anchorlog.server.app import DB_FILE, KEY_FILE, load_signer
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import VENDOR, OneSampleEnvelopes, note, sample_digest, setup_vendor, start_server

ORIGIN = "anchorlog.local/log"
FILL = "fill"
INFO_FILE = "bench.json"
LOADER_VERSION = 1


@dataclass(frozen=True)
class LoadedLog:
    data_dir: Path
    entries: int
    vendor_token: str
    reader_token: str
    key: VendorKeyPair
    build_seconds: float
    # The database schema the log was written with (a cached log may predate
    # this code's; LogStore upgrades it in place when the server opens it).
    schema: int


def _init(data_dir: Path) -> tuple[VendorKeyPair, dict[str, str]]:
    key = VendorKeyPair.generate()
    with tempfile.TemporaryDirectory() as state:
        server = start_server(data_dir)
        try:
            tokens = setup_vendor(server, Path(state), key)
        finally:
            server.stop()
    key.save(data_dir / "vendor.key")
    return key, {"vendor_token": tokens.vendor, "reader_token": tokens.reader}


def append_filler(data_dir: Path, target: int, *, batch: int = 5000, progress: bool = True) -> float:
    """Append one-sample attestations until the log holds ``target`` entries; seconds taken."""
    key = VendorKeyPair.load(data_dir / "vendor.key")
    signer = load_signer(data_dir / KEY_FILE)
    factory = OneSampleEnvelopes(key)

    def sign(checkpoint: Checkpoint) -> bytes:
        return sign_checkpoint(checkpoint, signer)

    store = LogStore(data_dir / DB_FILE, origin=ORIGIN)
    started = time.perf_counter()
    try:
        first = store.size
        bar = tqdm(total=max(0, target - first), unit="entry", disable=not progress, file=sys.stderr)
        while store.size < target:
            n = min(batch, target - store.size)
            # Filler sample numbers continue from what is there (key events included).
            base = store.size
            items = []
            for i in range(base, base + n):
                envelope = factory.envelope(sample_digest(FILL, i))
                digest = sample_digest(FILL, i)
                items.append(PendingEntry(
                    kind=EntryKind.ATTESTATION, submitter=VENDOR, envelope=envelope,
                    dedup_key=dedup_key(VENDOR, pae(PAYLOAD_TYPE_INTOTO, factory.payload(digest))),
                    subject_digests=(digest,),
                ))
            store.append(items, now_ms=int(time.time() * 1000), sign=sign)
            bar.update(n)
        bar.close()
    finally:
        store.close()
    return time.perf_counter() - started


def build_log(
    data_dir: Path, entries: int, *, batch: int = 5000, cache: Path | None = None, progress: bool = True
) -> LoadedLog:
    """A log of at least ``entries`` entries in ``data_dir`` (which must not exist)."""
    cached = cache / f"log-{entries}-v{LOADER_VERSION}" if cache else None
    started = time.perf_counter()
    if cached is not None and (cached / INFO_FILE).exists():
        note(f"copying cached log of {entries} entries from {cached}")
        shutil.copytree(cached, data_dir)
    else:
        # Build in a folder of this process's own, then rename: two benches building
        # the same cached log at once must not delete each other's work.
        target_dir = cached.with_name(f"{cached.name}.building-{os.getpid()}") if cached else data_dir
        if target_dir.exists():
            shutil.rmtree(target_dir)
        target_dir.parent.mkdir(parents=True, exist_ok=True)
        _, tokens = _init(target_dir)
        append_filler(target_dir, entries, batch=batch, progress=progress)
        store = LogStore(target_dir / DB_FILE, origin=ORIGIN, check_on_open=False)
        count = store.size
        store.close()
        (target_dir / INFO_FILE).write_text(json.dumps({**tokens, "entries": count}))
        if cached is not None:
            target_dir.with_name(f"{target_dir.name}.server.log").unlink(missing_ok=True)
            try:
                target_dir.rename(cached)
            except OSError:  # another bench finished the same log first: use theirs
                shutil.rmtree(target_dir)
            shutil.copytree(cached, data_dir)
    # A copied log (10^6 entries: over 1 GB) sits dirty in the kernel's cache; written
    # back during the measured runs, it would compete with the server's own syncs.
    os.sync()
    info = json.loads((data_dir / INFO_FILE).read_text())
    schema = _schema_of(data_dir / DB_FILE)
    if schema < SCHEMA_VERSION:
        note(f"the log was written with schema {schema}; the store upgrades it to {SCHEMA_VERSION} on open "
             "(entries written before keep the old layout)")
    return LoadedLog(
        data_dir=data_dir,
        entries=info["entries"],
        vendor_token=info["vendor_token"],
        reader_token=info["reader_token"],
        key=VendorKeyPair.load(data_dir / "vendor.key"),
        build_seconds=time.perf_counter() - started,
        schema=schema,
    )


def _schema_of(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True, help="data directory to create")
    parser.add_argument("--batch", type=int, default=5000, help="entries per append transaction")
    parser.add_argument("--cache", type=Path, default=None)
    options = parser.parse_args()
    if options.data.exists():
        parser.error(f"{options.data} exists; the loader builds a fresh log")
    loaded = build_log(options.data, options.entries, batch=options.batch, cache=options.cache)
    rate = loaded.entries / loaded.build_seconds
    print(json.dumps({
        "data_dir": str(loaded.data_dir), "entries": loaded.entries,
        "build_seconds": round(loaded.build_seconds, 1), "entries_per_s": round(rate),
    }))


if __name__ == "__main__":
    main()
