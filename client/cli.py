"""The ``anchorlog`` command line.

Exit codes: 0 success; 1 a check that ran and failed (policy failed, verification
failed); 2 usage or input error; 3 the service refused or could not be reached.
Every command takes ``--json`` for machine-readable output on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from anchorlog.ledger.errors import InvalidInput, LedgerError, VerificationError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3


def _emit(as_json: bool, doc: Any, text: str) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(text)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@dataclass(frozen=True)
class Connection:
    server: str
    token: str | None
    log_key: str | None
    state: Path | None
    tofu: bool
    ca: Path | None

    def client(self):  # type: ignore[no-untyped-def]
        from anchorlog.client.ledger import LedgerClient, fetch_verifier_key_tofu

        if not self.token:
            _fail("a token is required: --token, --token-file or ANCHORLOG_TOKEN", EXIT_USAGE)
        roots = self.ca.read_bytes() if self.ca else None
        log_key = self.log_key
        if not log_key:
            if not self.tofu:
                _fail(
                    "the log's verifier key is required (--log-key or ANCHORLOG_LOG_KEY); "
                    "--tofu trusts whatever the server says the first time",
                    EXIT_USAGE,
                )
            log_key = fetch_verifier_key_tofu(self.server, token=self.token, root_certificates=roots)
            click.echo(f"trusting log key on first use: {log_key}", err=True)
        return LedgerClient(
            self.server, token=self.token, log_key=log_key, state_path=self.state, root_certificates=roots
        )


def _connection_options(func):  # type: ignore[no-untyped-def]
    options = [
        click.option("--server", envvar="ANCHORLOG_SERVER", default="127.0.0.1:7370", show_default=True,
                     help="Service address host:port."),
        click.option("--token", envvar="ANCHORLOG_TOKEN", default=None, help="Bearer token."),
        click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     envvar="ANCHORLOG_TOKEN_FILE", default=None, help="File holding the bearer token."),
        click.option("--log-key", envvar="ANCHORLOG_LOG_KEY", default=None,
                     help="The log's verifier key (origin+keyid+base64), pinned."),
        click.option("--state", type=click.Path(dir_okay=False, path_type=Path), envvar="ANCHORLOG_STATE",
                     default=None, help="File keeping the last trusted checkpoint."),
        click.option("--tofu", is_flag=True, help="Trust the server's log key on first use."),
        click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     envvar="ANCHORLOG_CA", default=None, help="PEM roots for TLS."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _conn(kwargs: dict[str, Any]) -> Connection:
    token = kwargs.pop("token")
    token_file = kwargs.pop("token_file")
    if token is None and token_file is not None:
        token = token_file.read_text().strip()
    return Connection(
        server=kwargs.pop("server"), token=token, log_key=kwargs.pop("log_key"),
        state=kwargs.pop("state"), tofu=kwargs.pop("tofu"), ca=kwargs.pop("ca"),
    )


class _Group(click.Group):
    """Map library errors to meaningful exit codes instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        from anchorlog.client.ledger import LedgerRpcError

        try:
            return super().invoke(ctx)
        except LedgerRpcError as exc:
            details = "".join(f"\n  {f}: {d}" for f, d in exc.fields)
            _fail(f"service refused: {exc}{details}", EXIT_SERVICE)
        except VerificationError as exc:
            _fail(f"verification failed: {exc}", EXIT_FAILED)
        except InvalidInput as exc:
            _fail(str(exc), EXIT_USAGE)
        except LedgerError as exc:
            _fail(str(exc), EXIT_USAGE)
        except OSError as exc:
            _fail(str(exc), EXIT_USAGE)


class _Main(_Group):
    """The top-level group; commands of other anchorlog packages join it by entry point.

    The client never imports the server: ``serve`` and the other server-side
    commands are contributed through the ``anchorlog.commands`` entry-point group
    (see pyproject.toml) and loaded only when the command line starts.
    """

    def _plugins(self) -> dict[str, click.Command]:
        from importlib.metadata import entry_points

        return {ep.name: ep.load() for ep in entry_points(group="anchorlog.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._plugins().get(cmd_name)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="anchorlog")
def main() -> None:
    """anchorlog: a verifiable provenance ledger for ML training data."""


# ---------------------------------------------------------------- keys


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def keygen(path: Path, as_json: bool) -> None:
    """Create a vendor Ed25519 signing key at PATH (mode 0600) and print its public key."""
    import base64

    from anchorlog.client.vendor import VendorKeyPair

    if path.exists():
        _fail(f"{path} exists; refusing to overwrite a key", EXIT_USAGE)
    key = VendorKeyPair.generate()
    key.save(path)
    public = base64.b64encode(key.public_key).decode()
    _emit(as_json, {"path": str(path), "public_key": public, "key_id": key.key_id},
          f"wrote {path}\npublic key: {public}\nkey id: {key.key_id}")


@main.command("public-key")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def public_key(path: Path, as_json: bool) -> None:
    """Print the base64 public key of the vendor key file PATH (for admin register-key)."""
    import base64

    from anchorlog.client.vendor import VendorKeyPair

    key = VendorKeyPair.load(path)
    public = base64.b64encode(key.public_key).decode()
    _emit(as_json, {"public_key": public, "key_id": key.key_id}, public)


# ---------------------------------------------------------------- admin


@main.group()
def admin() -> None:
    """Administer vendors, keys and tokens (admin token required)."""


@admin.command("add-vendor")
@click.argument("vendor_id")
@click.option("--name", default="", help="Display name.")
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def add_vendor(vendor_id: str, name: str, as_json: bool, **kwargs: Any) -> None:
    """Create vendor VENDOR_ID (a logged key event)."""
    with _conn(kwargs).client() as client:
        receipt = client.create_vendor(vendor_id, name)
    _emit(as_json, {"vendor_id": vendor_id, "index": receipt.index},
          f"vendor {vendor_id} created at log index {receipt.index}")


def _read_public_key(value: str) -> bytes:
    import base64

    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        _fail("public key must be base64 of the raw 32-byte Ed25519 key", EXIT_USAGE)
    return raw


@admin.command("register-key")
@click.argument("vendor_id")
@click.argument("public_key")
@click.option("--not-after", type=click.DateTime(), default=None, help="Expiry (UTC).")
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def register_key(vendor_id: str, public_key: str, not_after: datetime | None, as_json: bool, **kwargs: Any) -> None:
    """Register PUBLIC_KEY (base64, as keygen prints it) for VENDOR_ID."""
    expiry = int(not_after.replace(tzinfo=UTC).timestamp()) if not_after else 0
    with _conn(kwargs).client() as client:
        key_id, receipt = client.register_key(vendor_id, _read_public_key(public_key), not_after=expiry)
    _emit(as_json, {"vendor_id": vendor_id, "key_id": key_id, "index": receipt.index},
          f"key {key_id} registered for {vendor_id} at log index {receipt.index}")


@admin.command("rotate-key")
@click.argument("vendor_id")
@click.argument("old_key_id")
@click.argument("new_public_key")
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def rotate_key(vendor_id: str, old_key_id: str, new_public_key: str, as_json: bool, **kwargs: Any) -> None:
    """Replace OLD_KEY_ID by NEW_PUBLIC_KEY in one logged event."""
    with _conn(kwargs).client() as client:
        key_id, receipt = client.rotate_key(vendor_id, old_key_id, _read_public_key(new_public_key))
    _emit(as_json, {"vendor_id": vendor_id, "key_id": key_id, "old_key_id": old_key_id, "index": receipt.index},
          f"key {old_key_id} rotated to {key_id} at log index {receipt.index}")


@admin.command("revoke-key")
@click.argument("vendor_id")
@click.argument("key_id")
@click.option("--compromised", is_flag=True, help="Taint everything the key ever signed.")
@click.option("--reason", default="")
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def revoke_key(vendor_id: str, key_id: str, compromised: bool, reason: str, as_json: bool, **kwargs: Any) -> None:
    """Revoke KEY_ID of VENDOR_ID."""
    with _conn(kwargs).client() as client:
        receipt = client.revoke_key(vendor_id, key_id, compromised=compromised, reason=reason)
    _emit(as_json, {"vendor_id": vendor_id, "key_id": key_id, "index": receipt.index,
                    "compromised": compromised},
          f"key {key_id} revoked at log index {receipt.index}")


@admin.command("issue-token")
@click.argument("principal")
@click.option("--role", type=click.Choice(["admin", "vendor", "reader", "auditor"]), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the token to this file (mode 0600) instead of stdout.")
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def issue_token(principal: str, role: str, out: Path | None, as_json: bool, **kwargs: Any) -> None:
    """Issue a token for PRINCIPAL (a vendor ID for vendor tokens). Shown once."""
    import os

    with _conn(kwargs).client() as client:
        token = client.issue_token(principal, role)
    if out is not None:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        _emit(as_json, {"principal": principal, "role": role, "token_file": str(out)},
              f"{role} token for {principal} written to {out}")
    else:
        _emit(as_json, {"principal": principal, "role": role, "token": token}, token)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def whoami(as_json: bool, **kwargs: Any) -> None:
    """Show the principal and role of the token."""
    with _conn(kwargs).client() as client:
        principal, role = client.whoami()
    _emit(as_json, {"principal": principal, "role": role}, f"{principal} ({role})")


# ---------------------------------------------------------------- vendors


def _iter_inputs(paths: tuple[Path, ...], jsonl: Path | None, field: str) -> Iterator[tuple[str, bytes]]:
    """(name, digest) per sample: files and directories hashed as raw bytes,
    JSONL rows by their ``field`` (text → utf8-nfc-v1, sha256 → as given)."""
    from anchorlog.ledger.digests import digest_file, digest_text, parse_hex_digest

    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            yield str(file), digest_file(file)
    if jsonl is not None:
        with jsonl.open() as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if field == "sha256":
                    yield f"{jsonl.name}:{number}", parse_hex_digest(row.get("sha256"), f"line {number}.sha256")
                else:
                    value = row.get(field)
                    if not isinstance(value, str):
                        raise InvalidInput(f"line {number}.{field}", "must be a string")
                    yield f"{jsonl.name}:{number}", digest_text(value)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="ANCHORLOG_VENDOR_KEY", help="Vendor private key file (from keygen).")
@click.option("--jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL of samples (see --field).")
@click.option("--field", default="text", show_default=True, type=click.Choice(["text", "sha256"]),
              help="JSONL field: text (hashed utf8-nfc-v1) or sha256 (hex digest as given).")
@click.option("--claim", required=True,
              type=click.Choice(["human-created", "human-validated", "human-edited", "synthetic"]))
@click.option("--actor", "actor_id", required=True, help="Pseudonymous reviewer/author ID (vendor-scoped).")
@click.option("--method", required=True, help="How the human act was done, e.g. 'two-pass review'.")
@click.option("--performed-at", type=click.DateTime(), default=None, help="Time of the human act (UTC).")
@click.option("--source-type", default=None, help="IPTC digital source type URI (default from the claim).")
@click.option("--evidence", default=None, help="Reference to evidence (URI).")
@click.option("--generator-model", default=None, help="For synthetic samples: the generating model.")
@click.option("--batch/--direct", default=None,
              help="Commit to a batch root (default when more than 1000 samples) or list subjects.")
@click.option("--per-envelope", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Samples per envelope in --direct mode.")
@click.option("--receipts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory to write one receipt JSON per envelope.")
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def attest(paths: tuple[Path, ...], key_path: Path, jsonl: Path | None, field: str, claim: str, actor_id: str,
           method: str, performed_at: datetime | None, source_type: str | None, evidence: str | None,
           generator_model: str | None, batch: bool | None, per_envelope: int, receipts: Path | None,
           as_json: bool, **kwargs: Any) -> None:
    """Hash samples (files, directories, JSONL), sign attestations and submit them."""
    from anchorlog.client.receipts import dumps
    from anchorlog.client.vendor import ClaimDetails, VendorKeyPair, attest_batch, attest_samples
    from anchorlog.ledger.digests import Canonicalization
    from anchorlog.ledger.predicates import Claim
    from tqdm import tqdm

    if not paths and jsonl is None:
        _fail("give files, directories or --jsonl", EXIT_USAGE)
    key = VendorKeyPair.load(key_path)
    rule = Canonicalization.RAW_BYTES if paths else (
        Canonicalization.UTF8_NFC_V1 if field == "text" else Canonicalization.RAW_BYTES
    )
    details = ClaimDetails(
        claim=Claim(claim), canonicalization=rule, actor_id=actor_id, method=method,
        performed_at=performed_at.replace(tzinfo=UTC) if performed_at else None,
        source_type=source_type, evidence=evidence, generator_model=generator_model,
    )
    samples = list(tqdm(_iter_inputs(paths, jsonl, field), desc="hashing", unit="sample",
                        disable=as_json or not sys.stderr.isatty()))
    if not samples:
        _fail("no samples found", EXIT_USAGE)
    use_batch = batch if batch is not None else len(samples) > 1000
    if use_batch:
        submissions = [attest_batch(key, [d for _, d in samples], details)]
    else:
        unique: dict[bytes, str] = {}
        for name, digest in samples:
            unique.setdefault(digest, name)
        items = list(unique.items())
        submissions = [
            attest_samples(key, [d for d, _ in chunk], details, names=[n for _, n in chunk])
            for chunk in (items[i : i + per_envelope] for i in range(0, len(items), per_envelope))
        ]
    results = []
    with _conn(kwargs).client() as client:
        bar = tqdm(total=len(submissions), desc="submitting", unit="envelope",
                   disable=as_json or not sys.stderr.isatty())
        for outcome in client.submit_stream(submissions):
            bar.update(1)
            results.append(outcome)
        bar.close()
    if receipts is not None:
        receipts.mkdir(parents=True, exist_ok=True)
        for outcome in results:
            if outcome.receipt is not None:
                (receipts / f"receipt-{outcome.receipt.index}.json").write_text(dumps(outcome.receipt.to_json()))
    failed = [o for o in results if not o.ok]
    doc = {
        "samples": len(samples),
        "envelopes": len(submissions),
        "mode": "batch" if use_batch else "direct",
        "accepted": [{"index": o.receipt.index, "duplicate": o.receipt.duplicate} for o in results if o.receipt],
        "rejected": [{"position": o.position, "error": str(o.error)} for o in failed],
    }
    _emit(as_json, doc, f"attested {len(samples)} samples in {len(submissions)} envelope(s); "
          f"{len(results) - len(failed)} accepted, {len(failed)} rejected"
          + "".join(f"\n  item {o.position}: {o.error}" for o in failed))
    if failed:
        sys.exit(EXIT_SERVICE)


# ---------------------------------------------------------------- readers


def _digest_arg(value: str, text: bool) -> bytes:
    from anchorlog.ledger.digests import digest_file, digest_text, parse_hex_digest

    if text:
        return digest_text(value)
    path = Path(value)
    if path.is_file():
        return digest_file(path)
    return parse_hex_digest(value.lower() if len(value) == 64 else value, "digest")


def _provenance_doc(result: Any) -> dict[str, Any]:
    return {
        "digest": result.digest.hex(),
        "status": str(result.status),
        "checkpoint_size": result.checkpoint.size,
        "attestations": [
            {
                "index": a.entry.index,
                "vendor": a.vendor_id,
                "claim": str(a.predicate.claim),
                "actor": a.predicate.actor_id,
                "method": a.predicate.method,
                "performed_at": a.predicate.performed_at.isoformat(),
                "revoked": a.entry.index in result.revoked_entries,
                "key_compromised": a.key_compromised,
            }
            for a in result.attestations
        ],
    }


@main.command()
@click.argument("sample")
@click.option("--text", is_flag=True, help="SAMPLE is text to hash (utf8-nfc-v1).")
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def provenance(sample: str, text: bool, as_json: bool, **kwargs: Any) -> None:
    """Verified provenance of SAMPLE: a hex SHA-256 digest or a file to hash."""
    digest = _digest_arg(sample, text)
    with _conn(kwargs).client() as client:
        result = client.provenance(digest)
    doc = _provenance_doc(result)
    lines = [f"{doc['digest']}: {doc['status']} (verified against checkpoint size {doc['checkpoint_size']})"]
    lines += [
        f"  entry {a['index']}: {a['claim']} by {a['vendor']}/{a['actor']} at {a['performed_at']}"
        + (" [revoked]" if a["revoked"] else "") + (" [key compromised]" if a["key_compromised"] else "")
        for a in doc["attestations"]
    ]
    _emit(as_json, doc, "\n".join(lines))


@main.command()
@click.option("--json", "as_json", is_flag=True)
@_connection_options
def checkpoint(as_json: bool, **kwargs: Any) -> None:
    """Fetch the latest checkpoint, verify it and prove it consistent with the trusted one."""
    with _conn(kwargs).client() as client:
        previous = client.trusted_checkpoint
        cp = client.checkpoint()
    doc = {
        "origin": cp.checkpoint.origin,
        "size": cp.size,
        "root_hash": cp.root_hash.hex(),
        "previously_trusted_size": previous.size if previous else None,
        "note": cp.note.decode(),
    }
    _emit(as_json, doc, cp.note.decode().rstrip("\n") + f"\n\nverified; consistent with trusted size "
          f"{doc['previously_trusted_size']}")


@main.command()
@click.argument("documents", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--log-key", envvar="ANCHORLOG_LOG_KEY", required=True, help="The log's verifier key.")
@click.option("--json", "as_json", is_flag=True)
def verify(documents: tuple[Path, ...], log_key: str, as_json: bool) -> None:
    """Verify receipts or bundles offline with the log's verifier key alone.

    Exits 1 if any document fails to verify; each failure names the check.
    """
    from anchorlog.client.receipts import verify_document
    from anchorlog.ledger.note import NoteVerifier

    verifier = NoteVerifier.from_vkey(log_key)
    reports = []
    for document in documents:
        try:
            doc = json.loads(document.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            _fail(f"{document} is not JSON: {exc}", EXIT_USAGE)
        try:
            report = verify_document(doc, verifier)
        except VerificationError as exc:
            report = {"valid": False, "error": str(exc)}
        reports.append({"document": str(document), **report})
    failed = [r for r in reports if not r["valid"]]
    lines = [
        f"{r['document']}: " + (r["summary"] if r["valid"] else f"INVALID: {r['error']}")
        for r in reports
    ]
    _emit(as_json, reports if len(reports) > 1 else reports[0], "\n".join(lines))
    if failed:
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
