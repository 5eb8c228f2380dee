"""``anchorlog audit``: mirror, verify, report.

Exit codes: 0 clean, 1 findings (or anomalies), 2 error (bad input, service
unreachable or refusing). The group is built by :func:`make_audit_group` from the
main CLI's connection helpers, so this module never imports ``anchorlog.client.cli``
(which registers it; ``python -m anchorlog.client.cli`` would import it twice).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from anchorlog.ledger.errors import LedgerError
from anchorlog.ledger.note import NoteVerifier

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _error(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _mirror_key(path: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'verifier_key'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _verifier(log_key: str | None, mirror: Path) -> NoteVerifier:
    """The pinned key given, else the key the mirror was made with (pinned then)."""
    key = log_key or _mirror_key(mirror)
    if not key:
        _error(f"{mirror} records no log key; give --log-key (or ANCHORLOG_LOG_KEY)")
    try:
        return NoteVerifier.from_vkey(key)
    except LedgerError as exc:
        _error(f"bad log key: {exc}")


def _print_findings(result_json: dict[str, Any], as_json: bool, summary: str) -> None:
    if as_json:
        click.echo(json.dumps(result_json, indent=2))
        return
    click.echo(summary)
    for finding in result_json["findings"]:
        where = "log" if finding["index"] is None else f"entry {finding['index']}"
        click.echo(f"FINDING [{finding['check']}] {where}: {finding['message']}")
    for check, n in result_json["suppressed"].items():
        click.echo(f"... and {n} more [{check}] findings")


def make_audit_group(
    connection_options: Callable[[Any], Any], conn: Callable[[dict[str, Any]], Any]
) -> click.Group:
    """The ``audit`` group, wired to the main CLI's ``_connection_options``/``_conn``."""

    @click.group()
    def audit() -> None:
        """Audit the whole log offline: mirror it, verify the mirror, report anomalies."""

    @audit.command()
    @click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
                  help="Mirror SQLite file (created, or brought up to date).")
    @click.option("--page-size", default=1000, show_default=True, type=click.IntRange(1, 100_000),
                  help="Entries asked per request (the server may return fewer).")
    @click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @connection_options
    def mirror(out: Path, page_size: int, progress: bool, as_json: bool, **kwargs: Any) -> None:
        """Copy the log into a local mirror, verifying every entry, root and checkpoint.

        Resumable and incremental: a later run fetches only entries not yet mirrored,
        and proves the new checkpoint consistent with the last one stored.
        """
        from anchorlog.client.audit.mirror import mirror_log, tqdm_progress

        connection = conn(kwargs)
        if not connection.log_key:
            _error("audit mirror needs the pinned log key (--log-key or ANCHORLOG_LOG_KEY)")
        try:
            with connection.client() as client:
                result = mirror_log(
                    client, out, client.verifier, page_size=page_size,
                    progress=tqdm_progress("mirror") if progress else None,
                )
        except (LedgerError, OSError, sqlite3.Error) as exc:
            _error(str(exc))
        summary = (
            f"mirror {out}: {result.size} entries ({result.fetched} fetched now), "
            f"checkpoint size {result.checkpoint_size}, "
            + ("clean" if result.findings.total == 0 else f"{result.findings.total} finding(s)")
        )
        _print_findings(result.to_json(), as_json, summary)
        sys.exit(EXIT_FINDINGS if result.findings.total else EXIT_CLEAN)

    @audit.command()
    @click.argument("mirror", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--log-key", envvar="ANCHORLOG_LOG_KEY", default=None,
                  help="The log's verifier key; defaults to the key the mirror was made with.")
    @click.option("--workers", type=click.IntRange(1, 64), default=None,
                  help="Processes checking envelopes [default: one per CPU for 50,000+ entries].")
    @click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def verify(mirror: Path, log_key: str | None, workers: int | None, progress: bool, as_json: bool) -> None:
        """Re-check a mirror (or a server's log database file) from scratch."""
        from anchorlog.client.audit.mirror import tqdm_progress
        from anchorlog.client.audit.verify import verify_mirror

        verifier = _verifier(log_key, mirror)
        try:
            result = verify_mirror(
                mirror, verifier, progress=tqdm_progress("verify") if progress else None, workers=workers
            )
        except (LedgerError, OSError, sqlite3.Error) as exc:
            _error(str(exc))
        summary = (
            f"verify {mirror}: {result.entries} entries, {result.checkpoints} checkpoints, "
            f"{result.signatures} signatures, "
            + ("clean" if result.findings.total == 0 else f"{result.findings.total} finding(s)")
        )
        _print_findings(result.to_json(), as_json, summary)
        sys.exit(EXIT_FINDINGS if result.findings.total else EXIT_CLEAN)

    @audit.command()
    @click.argument("mirror", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                  help="Directory for report.json, report.md and activity.html.")
    @click.option("--log-key", envvar="ANCHORLOG_LOG_KEY", default=None,
                  help="The log's verifier key; defaults to the key the mirror was made with.")
    @click.option("--max-per-hour", default=600, show_default=True, type=click.IntRange(1),
                  help="Samples one reviewer can plausibly attest as human work per hour.")
    @click.option("--max-repeats", default=2, show_default=True, type=click.IntRange(1),
                  help="Validations of one sample by one reviewer before it is an anomaly.")
    @click.option("--future-skew", default=300, show_default=True, type=click.IntRange(0),
                  help="Seconds performedAt may run ahead of integration time (clock skew).")
    @click.option("--json", "as_json", is_flag=True, help="Print the report JSON.")
    def report(mirror: Path, out_dir: Path, log_key: str | None, max_per_hour: int, max_repeats: int,
               future_skew: int, as_json: bool) -> None:
        """Per vendor and reviewer activity, claim mix, revocations and anomalies."""
        from anchorlog.client.audit.report import Thresholds, build_report, write_report

        verifier = _verifier(log_key, mirror)
        try:
            thresholds = Thresholds(max_per_hour, max_repeats, timedelta(seconds=future_skew))
            built = build_report(mirror, verifier, thresholds)
            paths = write_report(built, out_dir)
        except (LedgerError, OSError, sqlite3.Error) as exc:
            _error(str(exc))
        if as_json:
            click.echo(json.dumps(built.to_json(), indent=2))
        else:
            click.echo(
                f"report {mirror}: {built.entries} entries, {len(built.vendors)} vendors, "
                f"{len(built.reviewers)} reviewers, {sum(built.anomaly_counts.values())} anomalies; wrote "
                + ", ".join(str(p) for p in paths.values())
            )
            for anomaly in built.anomalies:
                click.echo(f"ANOMALY [{anomaly.kind}] entry {anomaly.index}: {anomaly.message}")
        sys.exit(EXIT_FINDINGS if built.anomalies else EXIT_CLEAN)

    return audit
