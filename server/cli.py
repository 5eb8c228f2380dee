"""Server-side commands of the ``anchorlog`` command line: ``serve`` and ``log-key``.

They join the client's top-level group through the ``anchorlog.commands`` entry
points, so the client package never imports the server.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
from anchorlog.ledger.errors import LedgerError, TamperedStoreError, VerificationError

EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


class _JsonLogFormatter(logging.Formatter):
    """One JSON object per line; messages are escaped, never interpolated into JSON."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@click.command()
@click.option("--data", "data_dir", envvar="ANCHORLOG_DATA", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Data directory (created on first start).")
@click.option("--listen", envvar="ANCHORLOG_LISTEN", default="127.0.0.1:7370", show_default=True,
              help="host:port to listen on (port 0 picks a free port).")
@click.option("--origin", envvar="ANCHORLOG_ORIGIN", default="anchorlog.local/log", show_default=True,
              help="The log's origin line (fixed at first start).")
@click.option("--tls-cert", envvar="ANCHORLOG_TLS_CERT", type=click.Path(exists=True, path_type=Path),
              help="PEM certificate chain; enables TLS together with --tls-key.")
@click.option("--tls-key", envvar="ANCHORLOG_TLS_KEY", type=click.Path(exists=True, path_type=Path),
              help="PEM private key for --tls-cert.")
@click.option("--workers", envvar="ANCHORLOG_WORKERS", default=16, show_default=True, type=click.IntRange(1, 256),
              help="RPC handler threads.")
@click.option("--auth-failures-per-minute", envvar="ANCHORLOG_AUTH_FAILURES_PER_MINUTE", default=20,
              show_default=True, type=click.IntRange(1), help="Failed authentications per address before refusing.")
@click.option("--log-level", envvar="ANCHORLOG_LOG_LEVEL", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--max-db-bytes", envvar="ANCHORLOG_MAX_DB_BYTES", type=click.IntRange(1),
              help="Cap on ledger.db's size (SQLite max_page_count). Past it submissions fail "
                   "RESOURCE_EXHAUSTED as on a full disk, reads go on; restart with a larger cap to resume.")
@click.option("--max-message-bytes", envvar="ANCHORLOG_MAX_MESSAGE_BYTES", default=64 << 20,
              show_default=True, type=click.IntRange(1024), help="Largest gRPC message accepted.")
@click.option("--max-envelope-bytes", envvar="ANCHORLOG_MAX_ENVELOPE_BYTES", default=4 << 20,
              show_default=True, type=click.IntRange(1), help="Largest DSSE envelope accepted.")
@click.option("--max-subjects", envvar="ANCHORLOG_MAX_SUBJECTS", default=100_000, show_default=True,
              type=click.IntRange(1), help="Subjects per statement.")
@click.option("--max-batch-digests", envvar="ANCHORLOG_MAX_BATCH_DIGESTS", default=1_000_000,
              show_default=True, type=click.IntRange(1), help="Sample digests per batch-root envelope.")
@click.option("--max-items-per-request", envvar="ANCHORLOG_MAX_ITEMS_PER_REQUEST", default=10_000,
              show_default=True, type=click.IntRange(1), help="Items per Submit call or SubmitStream message.")
@click.option("--max-stream-items", envvar="ANCHORLOG_MAX_STREAM_ITEMS", default=10_000_000,
              show_default=True, type=click.IntRange(1), help="Items per SubmitStream call.")
@click.option("--max-streams-per-principal", envvar="ANCHORLOG_MAX_STREAMS_PER_PRINCIPAL", default=8,
              show_default=True, type=click.IntRange(1), help="Concurrent streams per principal.")
@click.option("--max-streams", envvar="ANCHORLOG_MAX_STREAMS", type=click.IntRange(0),
              help="Concurrent streams in all; below --workers so unary calls keep threads "
                   "[default: 3/4 of --workers].")
@click.option("--stream-idle-seconds", envvar="ANCHORLOG_STREAM_IDLE_SECONDS", default=60.0,
              show_default=True, type=click.FloatRange(0, min_open=True),
              help="End a stream that sends no request for this long (DEADLINE_EXCEEDED).")
@click.option("--max-stream-seconds", envvar="ANCHORLOG_MAX_STREAM_SECONDS", default=3600.0,
              show_default=True, type=click.FloatRange(0, min_open=True),
              help="End a stream open longer than this (DEADLINE_EXCEEDED).")
@click.option("--max-entries-page", envvar="ANCHORLOG_MAX_ENTRIES_PAGE", default=1000, show_default=True,
              type=click.IntRange(1), help="Entries per GetEntries answer (clients page on).")
@click.option("--max-entries-bytes", envvar="ANCHORLOG_MAX_ENTRIES_BYTES", default=16 << 20, show_default=True,
              type=click.IntRange(1), help="Entry bytes per GetEntries answer (at least one entry is sent).")
@click.option("--max-digests-per-query", envvar="ANCHORLOG_MAX_DIGESTS_PER_QUERY", default=10_000,
              show_default=True, type=click.IntRange(1), help="Digests per StreamProvenance message.")
@click.option("--check-workers", envvar="ANCHORLOG_CHECK_WORKERS", default=None, type=click.IntRange(0, 64),
              help="Processes that check submitted envelopes (parse, statement, signature) beside the "
                   "server's own interpreter; 0 checks them in it.  [default: CPUs - 1, at most 8]")
def serve(data_dir: Path, listen: str, origin: str, tls_cert: Path | None, tls_key: Path | None,
          workers: int, auth_failures_per_minute: int, log_level: str, max_db_bytes: int | None,
          max_message_bytes: int, max_envelope_bytes: int, max_subjects: int, max_batch_digests: int,
          max_items_per_request: int, max_stream_items: int, max_streams_per_principal: int,
          max_streams: int | None, stream_idle_seconds: float, max_stream_seconds: float,
          max_entries_page: int, max_entries_bytes: int, max_digests_per_query: int,
          check_workers: int | None) -> None:
    """Run the ledger service until SIGTERM or SIGINT.

    Every option can also be set by the ANCHORLOG_* environment variable shown
    in its help. Logs are JSON lines on stderr and never contain tokens or keys.
    """
    from anchorlog.server.app import ServerConfig, serve_forever
    from anchorlog.server.service import ServiceLimits
    from anchorlog.server.submissions import SubmissionLimits
    from anchorlog.server.validation_pool import default_workers

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    _configure_logging(log_level)
    try:
        serve_forever(ServerConfig(
            data_dir=data_dir, listen=listen, origin=origin, tls_cert=tls_cert, tls_key=tls_key,
            workers=workers, auth_failures_per_minute=auth_failures_per_minute,
            max_db_bytes=max_db_bytes, max_message_bytes=max_message_bytes,
            check_workers=default_workers() if check_workers is None else check_workers,
            limits=ServiceLimits(
                submission=SubmissionLimits(
                    max_envelope_bytes=max_envelope_bytes, max_subjects=max_subjects,
                    max_batch=max_batch_digests,
                ),
                max_items_per_request=max_items_per_request, max_stream_items=max_stream_items,
                max_streams_per_principal=max_streams_per_principal,
                max_streams=workers * 3 // 4 if max_streams is None else max_streams,
                stream_idle_seconds=stream_idle_seconds, max_stream_seconds=max_stream_seconds,
                max_entries_page=max_entries_page, max_digests_per_query=max_digests_per_query,
                max_entries_bytes=min(max_entries_bytes, max_message_bytes // 2),
            ),
        ))
    except (LedgerError, OSError) as exc:
        click.echo(f"error: cannot start: {exc}", err=True)
        sys.exit(EXIT_USAGE)


@click.command("log-key")
@click.option("--data", "data_dir", envvar="ANCHORLOG_DATA", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="The server's data directory.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def log_key(data_dir: Path, as_json: bool) -> None:
    """Print the log's verifier key (origin+keyid+base64) from the server's data directory."""
    from anchorlog.server.app import KEY_FILE, load_signer

    try:
        signer = load_signer(data_dir / KEY_FILE)
    except (LedgerError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    vkey = signer.verifier().vkey()
    click.echo(json.dumps({"origin": signer.name, "verifier_key": vkey}) if as_json else vkey)


@click.command("backup")
@click.option("--data", "data_dir", envvar="ANCHORLOG_DATA", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="The server's data directory.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Backup file to write (a standalone SQLite database).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--full-check", is_flag=True, help="Re-hash every entry of the copy, not only the newest.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backup(data_dir: Path, out: Path, force: bool, full_check: bool, as_json: bool) -> None:
    """Copy the log database consistently while the server keeps running, then verify the copy.

    Uses SQLite's online backup API (one read snapshot; writers are not blocked).
    Tokens and the log key are not copied. To restore: make a new data directory,
    put the backup there as ledger.db and the original log.key (mode 0600) beside
    it, and run `anchorlog serve --data` on it; a new admin token is issued.
    """
    from anchorlog.server.backup import backup as run_backup

    try:
        summary = run_backup(data_dir, out, overwrite=force, full_check=full_check)
    except (TamperedStoreError, VerificationError) as exc:
        click.echo(f"error: the copy does not verify: {exc}", err=True)
        sys.exit(EXIT_CHECK_FAILED)
    except (LedgerError, OSError) as exc:
        click.echo(f"error: backup failed: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    doc = {
        "out": str(summary.path), "tree_size": summary.size, "root_hash": summary.root_hash.hex(),
        "bytes": summary.bytes_written, "checkpoint": summary.checkpoint.decode("utf-8"),
        "signature_checked": summary.signature_checked,
    }
    if as_json:
        click.echo(json.dumps(doc))
    else:
        click.echo(f"backup {summary.path}: {summary.size} entries, root {summary.root_hash.hex()}, "
                   f"{summary.bytes_written} bytes, checkpoint signature "
                   f"{'verified' if summary.signature_checked else 'not checked (no log.key)'}")
