"""The ``anchorlog`` command line.

Exit codes: 0 success; 1 a check that ran and failed (policy failed, verification
failed); 2 usage or input error; 3 the service refused or could not be reached;
4 the log presented a checkpoint inconsistent with one this client trusted
(evidence of a forked or rewritten log: keep the state file, report it).
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
from anchorlog.ledger.errors import (
    InconsistentLogError,
    InvalidInput,
    LedgerError,
    VerificationError,
)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3
EXIT_INCONSISTENT = 4


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
        from anchorlog.client.ledger import LedgerClient

        if not self.token:
            _fail("a token is required: --token, --token-file or ANCHORLOG_TOKEN(_FILE)", EXIT_USAGE)
        if not self.log_key and not self.tofu:
            _fail(
                "the log's verifier key is required (--log-key or ANCHORLOG_LOG_KEY); "
                "--tofu trusts whatever the server says the first time and pins it",
                EXIT_USAGE,
            )
        roots = self.ca.read_bytes() if self.ca else None
        client = LedgerClient(
            self.server, token=self.token, log_key=self.log_key or None, state_path=self.state,
            root_certificates=roots, trust_on_first_use=self.tofu,
        )
        if self.tofu and not self.log_key:
            click.echo(f"trust on first use: log key pinned in {client.state_path}: "
                       f"{client.verifier.vkey()}", err=True)
        return client


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
        except InconsistentLogError as exc:
            _fail(
                f"THE LOG IS INCONSISTENT WITH A CHECKPOINT THIS CLIENT TRUSTED: {exc}\n"
                "This is evidence of a forked or rewritten log. Keep the state file as evidence "
                "and do not rely on answers from this server.",
                EXIT_INCONSISTENT,
            )
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
    """anchorlog: a verifiable provenance ledger for ML training data.

    Every answer from the service is verified against the log's pinned verifier
    key (--log-key / ANCHORLOG_LOG_KEY) before it is shown.

    \b
    Exit codes:
      0  success
      1  a check ran and failed (verification, policy)
      2  usage or input error
      3  the service refused the request or could not be reached
      4  the log is inconsistent with a checkpoint this client trusted
         (evidence of a forked or rewritten log)
    """


# ---------------------------------------------------------------- keys


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_connection_options
def issue_token(principal: str, role: str, out: Path | None, as_json: bool, **kwargs: Any) -> None:
    """Issue a token for PRINCIPAL (a vendor ID for vendor tokens). Shown once."""
    import os

    with _conn(kwargs).client() as client:
        issued = client.issue_token_with_id(principal, role)
    if out is not None:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(issued.token + "\n")
        _emit(as_json,
              {"principal": principal, "role": role, "token_id": issued.token_id, "token_file": str(out)},
              f"{role} token {issued.token_id} for {principal} written to {out}")
    else:
        if not as_json:
            # stdout stays the bare token (scripts capture it); the id goes to stderr.
            click.echo(f"token id: {issued.token_id}", err=True)
        _emit(as_json,
              {"principal": principal, "role": role, "token_id": issued.token_id, "token": issued.token},
              issued.token)


@admin.command("revoke-token")
@click.argument("token_id", required=False)
# Not --token-file: that option already names the caller's own token.
@click.option("--revoke-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Revoke the token stored in this file.")
@click.option("--principal", default=None, help="Revoke every live token of this principal.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_connection_options
def revoke_token(
    token_id: str | None, revoke_file: Path | None, principal: str | None, as_json: bool, **kwargs: Any
) -> None:
    """Revoke the token TOKEN_ID (as issue-token printed it), or --revoke-file, or --principal.

    The last live admin token cannot be revoked: issue another admin token first.
    """
    if sum(value is not None for value in (token_id, revoke_file, principal)) != 1:
        raise click.UsageError("give exactly one of TOKEN_ID, --revoke-file, --principal")
    token = revoke_file.read_text(encoding="utf-8").strip() if revoke_file is not None else None
    with _conn(kwargs).client() as client:
        revoked = client.revoke_token(token_id=token_id, token=token, principal=principal)
    _emit(as_json, {"revoked": revoked}, "revoked token(s): " + ", ".join(revoked))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_connection_options
def whoami(as_json: bool, **kwargs: Any) -> None:
    """Show the principal and role of the token."""
    with _conn(kwargs).client() as client:
        principal, role = client.whoami()
    _emit(as_json, {"principal": principal, "role": role}, f"{principal} ({role})")


# ---------------------------------------------------------------- vendors


def _iter_inputs(
    paths: tuple[Path, ...], jsonl: Path | None, field: str
) -> Iterator[tuple[str, bytes]]:
    """(name, digest) per sample: files and directories hashed as raw bytes; JSONL rows by
    ``field`` (``text`` → utf8-nfc-v1 of row["text"], ``json`` → rfc8785-jcs-v1 of the whole
    row, ``sha256`` → the hex digest row["sha256"] as given)."""
    from anchorlog.ledger.digests import digest_file, digest_json, digest_text, parse_hex_digest

    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            yield str(file), digest_file(file)
    if jsonl is None:
        return
    with jsonl.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{jsonl.name}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(where, f"not JSON: {exc}") from None
            if field == "json":
                yield where, digest_json(row)
                continue
            if not isinstance(row, dict):
                raise InvalidInput(where, f"expected a JSON object with a {field!r} field")
            if field == "sha256":
                yield where, parse_hex_digest(row.get("sha256"), f"{where}.sha256")
                continue
            value = row.get(field)
            if not isinstance(value, str):
                raise InvalidInput(f"{where}.{field}", "must be a string")
            yield where, digest_text(value)


def _progress(total: int | None, desc: str, unit: str, show: bool | None, as_json: bool):  # type: ignore[no-untyped-def]
    """A tqdm bar with a rate on stderr; shown on a terminal unless --no-progress (or forced)."""
    from tqdm import tqdm

    enabled = show if show is not None else (not as_json and sys.stderr.isatty())
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled, file=sys.stderr)


_RULES = {"text": "utf8-nfc-v1", "json": "rfc8785-jcs-v1"}


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="ANCHORLOG_VENDOR_KEY", help="Vendor private key file (from keygen).")
@click.option("--jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL of samples (see --field) instead of files.")
@click.option("--field", default="text", show_default=True, type=click.Choice(["text", "json", "sha256"]),
              help="JSONL rows: text (row['text'] hashed utf8-nfc-v1), json (the whole row hashed "
                   "rfc8785-jcs-v1) or sha256 (row['sha256'], a hex digest taken as given).")
@click.option("--canonicalization", type=click.Choice(["raw-bytes", "utf8-nfc-v1", "rfc8785-jcs-v1"]),
              default=None, help="With --field sha256: the rule the given digests were computed with "
                                 "(required there; implied otherwise).")
@click.option("--claim", required=True,
              type=click.Choice(["human-created", "human-validated", "human-edited", "synthetic"]))
@click.option("--actor", "actor_id", required=True, help="Pseudonymous reviewer/author ID (vendor-scoped).")
@click.option("--method", required=True, help="How the human act was done, e.g. 'two-pass review'.")
@click.option("--performed-at", type=click.DateTime(), default=None, help="Time of the human act (UTC).")
@click.option("--source-type", default=None, help="IPTC digital source type URI (default from the claim).")
@click.option("--evidence", default=None, help="Reference to evidence (URI).")
@click.option("--generator-model", default=None, help="For synthetic samples: the generating model.")
@click.option("--parent", "parents", multiple=True,
              help="For synthetic samples: hex digest of a parent sample (lineage); repeatable.")
@click.option("--batch-root/--direct", "batch", default=None,
              help="One signature over an RFC 6962 batch root of all samples (default above 1000 "
                   "samples), or samples listed as statement subjects.")
@click.option("--per-envelope", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Samples per envelope in --direct mode.")
@click.option("--receipts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory to write one receipt JSON per envelope.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_connection_options
def attest(paths: tuple[Path, ...], key_path: Path, jsonl: Path | None, field: str,
           canonicalization: str | None, claim: str, actor_id: str, method: str,
           performed_at: datetime | None, source_type: str | None, evidence: str | None,
           generator_model: str | None, parents: tuple[str, ...], batch: bool | None,
           per_envelope: int, receipts: Path | None, progress: bool | None, as_json: bool,
           **kwargs: Any) -> None:
    """Hash samples (files, directories or JSONL), sign attestations and submit them.

    Files are hashed as raw bytes. Samples go in direct envelopes of up to
    --per-envelope subjects, or under one batch root (--batch-root). Exits 3 if
    the service rejected any envelope (the others are still logged).
    """
    from anchorlog.client.receipts import save_receipt
    from anchorlog.client.vendor import ClaimDetails, VendorKeyPair, attest_batch, attest_samples
    from anchorlog.ledger.digests import Canonicalization, parse_hex_digest
    from anchorlog.ledger.predicates import Claim

    if bool(paths) == (jsonl is not None):
        _fail("give either files/directories or --jsonl (one canonicalization per attestation)", EXIT_USAGE)
    if paths or field != "sha256":
        implied = "raw-bytes" if paths else _RULES[field]
        if canonicalization not in (None, implied):
            _fail(f"these samples are hashed {implied}; --canonicalization {canonicalization} "
                  "does not apply", EXIT_USAGE)
        canonicalization = implied
    elif canonicalization is None:
        _fail("--field sha256 needs --canonicalization: the rule the digests were computed with",
              EXIT_USAGE)
    key = VendorKeyPair.load(key_path)
    details = ClaimDetails(
        claim=Claim(claim), canonicalization=Canonicalization(canonicalization), actor_id=actor_id,
        method=method, performed_at=performed_at.replace(tzinfo=UTC) if performed_at else None,
        source_type=source_type, evidence=evidence, generator_model=generator_model,
        parent_digests=tuple(parse_hex_digest(p, "--parent") for p in parents),
    )
    details.predicate()  # refuse a bad claim/source type before hashing anything
    samples: list[tuple[str, bytes]] = []
    with _progress(None, "hashing", "sample", progress, as_json) as bar:
        for sample in _iter_inputs(paths, jsonl, field):
            samples.append(sample)
            bar.update(1)
    if not samples:
        _fail("no samples found", EXIT_USAGE)
    unique: dict[bytes, str] = {}
    for name, digest in samples:
        unique.setdefault(digest, name)
    use_batch = batch if batch is not None else len(unique) > 1000
    if use_batch:
        submissions = [attest_batch(key, list(unique), details)]
    else:
        items = list(unique.items())
        submissions = [
            attest_samples(key, [d for d, _ in chunk], details, names=[n for _, n in chunk])
            for chunk in (items[i : i + per_envelope] for i in range(0, len(items), per_envelope))
        ]
    results = []
    with (
        _conn(kwargs).client() as client,
        _progress(len(submissions), "submitting", "envelope", progress, as_json) as bar,
    ):
        for outcome in client.submit_stream(submissions):
            bar.update(1)
            results.append(outcome)
    written = []
    if receipts is not None:
        written = [str(save_receipt(o.receipt, receipts)) for o in results if o.receipt is not None]
    failed = [o for o in results if not o.ok]
    doc = {
        "samples": len(samples),
        "distinct_samples": len(unique),
        "envelopes": len(submissions),
        "mode": "batch-root" if use_batch else "direct",
        "canonicalization": canonicalization,
        "accepted": [{"index": o.receipt.index, "duplicate": o.receipt.duplicate} for o in results if o.receipt],
        "rejected": [{"position": o.position, "error": str(o.error)} for o in failed],
        "receipts": written,
    }
    _emit(as_json, doc, f"attested {len(unique)} samples in {len(submissions)} envelope(s) "
          f"({doc['mode']}); {len(results) - len(failed)} accepted, {len(failed)} rejected"
          + "".join(f"\n  log index {a['index']}" + (" (already logged)" if a["duplicate"] else "")
                    for a in doc["accepted"])
          + "".join(f"\n  item {o.position}: {o.error}" for o in failed)
          + (f"\nreceipts in {receipts}" if written else ""))
    if failed:
        sys.exit(EXIT_SERVICE)


@main.command()
@click.argument("indices", nargs=-1, required=True, type=click.IntRange(0))
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="ANCHORLOG_VENDOR_KEY", help="Vendor private key file (the vendor's own key).")
@click.option("--reason", required=True, help="Why the entries are withdrawn.")
@click.option("--receipts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory to write the revocation's receipt JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_connection_options
def revoke(indices: tuple[int, ...], key_path: Path, reason: str, receipts: Path | None,
           as_json: bool, **kwargs: Any) -> None:
    """Revoke your own earlier attestation entries at log INDICES (a logged revocation entry).

    Each target is fetched and verified first; its leaf hash goes into the
    signed revocation so it can only ever name that exact entry.
    """
    from anchorlog.client.receipts import save_receipt
    from anchorlog.client.vendor import VendorKeyPair, revoke_entries
    from anchorlog.ledger.entry import EntryKind

    key = VendorKeyPair.load(key_path)
    with _conn(kwargs).client() as client:
        targets = []
        for index in dict.fromkeys(indices):
            entry = client.entry(index)
            if entry.entry.kind is not EntryKind.ATTESTATION:
                _fail(f"entry {index} is not an attestation; only attestations can be revoked", EXIT_USAGE)
            targets.append((index, entry.leaf_hash))
        (outcome,) = client.submit([revoke_entries(key, targets, reason)])
    if outcome.receipt is None:
        details = "".join(f"\n  {f}: {d}" for f, d in outcome.error.fields) if outcome.error else ""
        _fail(f"service refused the revocation: {outcome.error}{details}", EXIT_SERVICE)
    written = str(save_receipt(outcome.receipt, receipts)) if receipts is not None else None
    doc = {"revoked": [i for i, _ in targets], "index": outcome.receipt.index,
           "duplicate": outcome.receipt.duplicate, "receipt": written}
    _emit(as_json, doc, f"revoked entries {', '.join(str(i) for i, _ in targets)} by revocation entry "
          f"{outcome.receipt.index}" + (f"; receipt {written}" if written else ""))


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
@click.argument("samples", nargs=-1)
@click.option("--text", is_flag=True, help="SAMPLES are texts to hash (utf8-nfc-v1).")
@click.option("--digests", "digest_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="File of hex digests, one per line, asked in one stream.")
@click.option("--bundle", "bundle_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write an offline bundle (anchorlog-bundle/v1) of all the answers here.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_connection_options
def provenance(samples: tuple[str, ...], text: bool, digest_file: Path | None, bundle_path: Path | None,
               progress: bool | None, as_json: bool, **kwargs: Any) -> None:
    """Verified provenance of SAMPLES: hex SHA-256 digests, files to hash, or texts (--text).

    Every answer is verified (checkpoint, consistency, inclusion, batch paths,
    vendor signatures) and the status derived locally. An unknown sample is
    not an error (exit 0); a failed check exits 1.
    """
    from anchorlog.client.receipts import Bundle, dumps
    from anchorlog.ledger.digests import parse_hex_digest

    digests = [_digest_arg(sample, text) for sample in samples]
    if digest_file is not None:
        with digest_file.open(encoding="utf-8") as handle:
            digests += [
                parse_hex_digest(line.strip(), f"{digest_file.name}:{number}")
                for number, line in enumerate(handle, 1) if line.strip()
            ]
    if not digests:
        _fail("give SAMPLES or --digests", EXIT_USAGE)
    bundles: list[Bundle] = []
    with _conn(kwargs).client() as client:
        if len(digests) == 1 and bundle_path is None:
            results = [client.provenance(digests[0])]
        else:
            results = []
            with _progress(len(digests), "verifying", "sample", progress, as_json) as bar:
                for result in client.provenance_many(digests, bundle=bundles):
                    results.append(result)
                    bar.update(1)
    if bundle_path is not None and bundles:
        bundle_path.write_text(dumps(bundles[0].to_json()))
    docs = [_provenance_doc(r) for r in results]
    lines = []
    for doc in docs:
        lines.append(f"{doc['digest']}: {doc['status']} (verified against checkpoint size "
                     f"{doc['checkpoint_size']})")
        lines += [
            f"  entry {a['index']}: {a['claim']} by {a['vendor']}/{a['actor']} at {a['performed_at']}"
            + (" [revoked]" if a["revoked"] else "") + (" [key compromised]" if a["key_compromised"] else "")
            for a in doc["attestations"]
        ]
    if bundle_path is not None:
        lines.append(f"bundle written to {bundle_path}")
    out: Any = docs[0] if len(docs) == 1 and not digest_file else {"samples": docs}
    if bundle_path is not None:
        out = {"samples": docs, "bundle": str(bundle_path)}
    _emit(as_json, out, "\n".join(lines))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
        except ValueError as exc:  # also numbers beyond the int digit limit, not only JSONDecodeError
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


# The dataset gate (`anchorlog check`), built from the connection helpers above.
from anchorlog.client.gate.cli import build_check_command

main.add_command(build_check_command(_connection_options, _conn))
from anchorlog.client.audit.cli import make_audit_group  # the offline audit

main.add_command(make_audit_group(_connection_options, _conn))


if __name__ == "__main__":
    main()
