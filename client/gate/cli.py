"""``anchorlog check MANIFEST``: the dataset gate on the command line.

Exit codes: 0 the policy passed; 1 it failed (every failing slice is listed);
2 any error (bad input, unreadable manifest, service unreachable or refusing,
an answer that does not verify), so a CI step can tell "not enough human data"
from "could not decide".

The command is built by :func:`build_check_command` from the main command line's
connection-option helpers and registered in ``client/cli.py``; taking them as
arguments keeps this module free of an import cycle with ``client/cli.py``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

EXIT_PASSED = 0
EXIT_POLICY_FAILED = 1
EXIT_ERROR = 2
FORMATS = ["auto", "jsonl", "csv", "parquet", "dir"]
STATUSES = ["human-created", "human-validated", "human-edited"]


def _error(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _summary(result: Any, written: dict[str, Path]) -> str:
    verdict = "PASSED" if result.passed else "FAILED"
    cp = result.checkpoint
    lines = [
        (
            f"{verdict}: {result.grounded}/{result.total} samples human-grounded ({result.fraction:.2%}), "
            f"required {result.policy.min_fraction:.2%}"
        ),
        f"verified against checkpoint {cp.checkpoint.origin} size {cp.size} root {cp.root_hash.hex()}",
        "statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(result.statuses.items())),
    ]
    if result.slices:
        lines.append(
            f"slices by {result.policy.slice_column!r} (threshold {result.policy.slice_threshold:.2%}):"
        )
        lines += [
            f"  {'ok  ' if s.passed else 'FAIL'} {s.name}: {s.grounded}/{s.total} ({s.fraction:.2%})"
            for s in result.slices
        ]
    ignored = [v.vendor for v in result.vendors if not v.trusted]
    if ignored:
        lines.append(f"ignored untrusted vendors: {', '.join(ignored)}")
    lines += [f"failure: {f}" for f in result.failures]
    lines += [f"wrote {kind}: {path}" for kind, path in written.items()]
    return "\n".join(lines)


def build_check_command(
    connection_options: Callable[[Callable[..., Any]], Callable[..., Any]],
    connection: Callable[[dict[str, Any]], Any],
) -> click.Command:
    """The ``check`` command, using the main CLI's ``_connection_options`` and ``_conn``."""

    @click.command("check")
    @click.argument("manifest", type=click.Path(exists=True, path_type=Path))
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="auto",
        show_default=True,
        help="Manifest format (auto: from the suffix; a directory is 'dir').",
    )
    @click.option(
        "--field",
        default=None,
        help="Sample column: text, content (hashed utf8-nfc-v1), path (file, raw-bytes), sha256 "
        "(hex digest), or COLUMN:KIND for another column. Default: detected.",
    )
    @click.option(
        "--slice-column",
        default=None,
        help="Compute the share per value of this column ('dir' for a directory: its sub-folders).",
    )
    @click.option(
        "--policy",
        "policy_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="TOML policy file; flags override it.",
    )
    @click.option(
        "--min-fraction",
        type=float,
        default=None,
        help="Overall human-grounded share required [default 0.20].",
    )
    @click.option(
        "--min-slice-fraction",
        type=float,
        default=None,
        help="Share required in every slice [default: --min-fraction].",
    )
    @click.option(
        "--count",
        "counted",
        multiple=True,
        type=click.Choice(STATUSES),
        help="Statuses that count as human-grounded (repeat) [default: all three].",
    )
    @click.option(
        "--vendor",
        "vendors",
        multiple=True,
        help="Trusted vendor ID (repeat); attestations of others are ignored [default: all].",
    )
    @click.option(
        "--max-age", default=None, help="Ignore human acts older than this, e.g. 365d, 12w, 48h."
    )
    @click.option(
        "--report-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Write report.json, report.md and report.html (chart) here.",
    )
    @click.option(
        "--bundle",
        "bundle_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the verified provenance of every human-grounded sample (checkable offline "
        "with 'anchorlog verify').",
    )
    @click.option(
        "--vsa",
        "vsa_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the decision as a SLSA Verification Summary (in-toto Statement JSON).",
    )
    @click.option(
        "--chunk",
        type=click.IntRange(1, 10_000),
        default=2000,
        show_default=True,
        help="Digests per streamed query.",
    )
    @click.option(
        "--progress/--no-progress",
        default=None,
        help="Progress bar [default: when stderr is a tty].",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout.")
    @connection_options
    def check(
        manifest: Path,
        fmt: str,
        field: str | None,
        slice_column: str | None,
        policy_file: Path | None,
        min_fraction: float | None,
        min_slice_fraction: float | None,
        counted: tuple[str, ...],
        vendors: tuple[str, ...],
        max_age: str | None,
        report_dir: Path | None,
        bundle_path: Path | None,
        vsa_path: Path | None,
        chunk: int,
        progress: bool | None,
        as_json: bool,
        **kwargs: Any,
    ) -> None:
        """Check MANIFEST against the ledger: is enough of it grounded in human data?

        MANIFEST is a JSONL, CSV or Parquet file, or a directory of files. Every
        answer is verified against one signed checkpoint before it counts.
        Exit 0 passed, 1 policy failed, 2 error.
        """
        from anchorlog.client.gate.bundle import gate_bundle_json, grounded_bundle
        from anchorlog.client.gate.check import check_dataset
        from anchorlog.client.gate.manifests import read_manifest
        from anchorlog.client.gate.policy import Policy, load_policy
        from anchorlog.client.gate.report import write_reports
        from anchorlog.client.gate.slsa import verification_summary
        from anchorlog.client.ledger import LedgerRpcError
        from anchorlog.client.receipts import Bundle, dumps
        from anchorlog.ledger.errors import InconsistentLogError, LedgerError, VerificationError
        from anchorlog.ledger.status import Status

        try:
            policy = load_policy(policy_file) if policy_file else Policy()
            policy = policy.override(
                min_fraction=min_fraction,
                min_slice_fraction=min_slice_fraction,
                slice_column=slice_column,
                counted_statuses=counted or None,
                trusted_vendors=vendors or None,
                max_age=max_age,
            )
            samples = read_manifest(
                manifest,
                fmt=None if fmt == "auto" else fmt,
                field=field,
                slice_column=policy.slice_column,
            )
            show = progress if progress is not None else (sys.stderr.isatty() and not as_json)
            raw: list[Bundle] | None = [] if bundle_path else None
            grounded: dict[bytes, Status] | None = {} if bundle_path else None
            with connection(kwargs).client() as client:
                result = check_dataset(
                    client,
                    samples,
                    policy,
                    manifest=manifest.name,
                    chunk=chunk,
                    progress=show,
                    bundle=raw,
                    grounded=grounded,
                )
            written: dict[str, Path] = {}
            if report_dir is not None:
                written.update(write_reports(result, report_dir))
            if bundle_path is not None:
                assert raw is not None and grounded is not None
                doc = gate_bundle_json(grounded_bundle(raw[0], grounded), result, grounded)
                bundle_path.write_text(dumps(doc), encoding="utf-8")
                written["bundle"] = bundle_path
            if vsa_path is not None:
                vsa = verification_summary(
                    result,
                    resource_uri=manifest.resolve().as_uri(),
                    policy_uri=policy_file.resolve().as_uri() if policy_file else None,
                )
                vsa_path.write_text(json.dumps(vsa, indent=2) + "\n", encoding="utf-8")
                written["vsa"] = vsa_path
        except LedgerRpcError as exc:
            details = "".join(f"\n  {f}: {d}" for f, d in exc.fields)
            _error(f"service refused: {exc}{details}")
        except InconsistentLogError:
            raise  # the main group reports a forked log with its own exit code
        except VerificationError as exc:
            _error(f"verification failed, no decision: {exc}")
        except LedgerError as exc:
            _error(str(exc))
        except OSError as exc:
            _error(str(exc))
        if as_json:
            doc = result.to_json()
            doc["written"] = {k: str(v) for k, v in written.items()}
            click.echo(json.dumps(doc, indent=2))
        else:
            click.echo(_summary(result, written))
        sys.exit(EXIT_PASSED if result.passed else EXIT_POLICY_FAILED)

    return check
