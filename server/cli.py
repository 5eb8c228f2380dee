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
from anchorlog.ledger.errors import LedgerError

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
def serve(data_dir: Path, listen: str, origin: str, tls_cert: Path | None, tls_key: Path | None,
          workers: int, auth_failures_per_minute: int, log_level: str) -> None:
    """Run the ledger service until SIGTERM or SIGINT.

    Every option can also be set by the ANCHORLOG_* environment variable shown
    in its help. Logs are JSON lines on stderr and never contain tokens or keys.
    """
    from anchorlog.server.app import ServerConfig, serve_forever

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    _configure_logging(log_level)
    try:
        serve_forever(ServerConfig(
            data_dir=data_dir, listen=listen, origin=origin, tls_cert=tls_cert, tls_key=tls_key,
            workers=workers, auth_failures_per_minute=auth_failures_per_minute,
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
