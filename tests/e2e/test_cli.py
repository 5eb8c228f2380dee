"""The `anchorlog` command line as subprocesses against a real server, including the
README walkthrough exactly as written (only the address, data dir and program path
are substituted), so the README is proven copy-pasteable."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from anchorlog.client.cli import main
from anchorlog.client.ledger import LedgerClient
from anchorlog.client.vendor import VendorKeyPair
from anchorlog.ledger.digests import digest_text
from click.testing import CliRunner

from tests.conftest import ServerProcess, start_server

README = Path(__file__).resolve().parents[2] / "README.md"
ANCHORLOG = Path(sys.executable).parent / "anchorlog"


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANCHORLOG_")}
    return {**env, "XDG_STATE_HOME": str(tmp / "state"), **extra}


@dataclass
class Cli:
    server: ServerProcess
    tmp: Path

    def run(self, *args: str, token: str | None = None, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        base = {"ANCHORLOG_SERVER": self.server.address, "ANCHORLOG_LOG_KEY": self.server.log_key,
                "ANCHORLOG_TOKEN": token or self.server.admin_token}
        return subprocess.run(
            [sys.executable, "-m", "anchorlog.client.cli", *args], capture_output=True, text=True,
            cwd=self.tmp, env=_clean_env(self.tmp, **{**base, **(env or {})}), input=stdin,
            timeout=120, check=False,
        )

    def json(self, *args: str, token: str | None = None, code: int = 0, **kw: Any) -> Any:
        done = self.run(*args, "--json", token=token, **kw)
        assert done.returncode == code, (done.stdout, done.stderr)
        return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("cli") / "data", "--auth-failures-per-minute", "10000")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def cli(shared_server: ServerProcess, tmp_path: Path) -> Cli:
    return Cli(shared_server, tmp_path)


# ---------------------------------------------------------------- the README walkthrough


def _walkthrough() -> str:
    text = README.read_text()
    section = text[text.index("## Walkthrough") :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README walkthrough has no sh block"
    return match.group(1)


def test_readme_walkthrough_runs_as_written(shared_server: ServerProcess, tmp_path: Path) -> None:
    server = shared_server
    script = _walkthrough()
    substitutions = {
        "127.0.0.1:7370": server.address,
        "./anchorlog-data": str(server.data_dir),
        ".venv/bin/anchorlog": str(ANCHORLOG),
    }
    for placeholder, value in substitutions.items():
        assert placeholder in script, f"the walkthrough no longer mentions {placeholder}"
        script = script.replace(placeholder, value)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                          cwd=work, env=_clean_env(tmp_path), timeout=300, check=False)
    assert done.returncode == 0, (done.stdout, done.stderr)
    thames = digest_text("The Thames flows through London.").hex()
    assert f"{thames}: human-validated (verified against checkpoint size" in done.stdout
    assert re.search(r": unknown \(verified", done.stdout)
    receipts = sorted((work / "receipts").glob("*.json"))
    assert receipts and all(f"receipts/{r.name}: receipt valid" in done.stdout for r in receipts)
    assert "bundle.json: bundle valid: 3 samples verified" in done.stdout
    assert stat.S_IMODE((work / "vendor.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((work / "vendor.token").stat().st_mode) == 0o600


# ---------------------------------------------------------------- help and exit codes


def _commands(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, click.Context(command, parent=ctx), (*prefix, name))


def test_every_command_has_help(cli: Cli) -> None:
    with click.Context(main) as ctx:
        commands = list(_commands(main, ctx))
    expected = {("keygen",), ("public-key",), ("whoami",), ("attest",), ("revoke",), ("provenance",),
                ("verify",), ("checkpoint",), ("serve",), ("log-key",), ("admin", "add-vendor"),
                ("admin", "register-key"), ("admin", "rotate-key"), ("admin", "revoke-key"),
                ("admin", "issue-token"), ("admin", "revoke-token")}
    assert expected <= set(commands)
    top = cli.run("--help")
    assert top.returncode == 0 and "Exit codes" in top.stdout
    # Each command's help in-process (the same click objects the subprocess runs).
    runner = CliRunner()
    for command in sorted(commands):
        done = runner.invoke(main, [*command, "--help"])
        assert done.exit_code == 0, (command, done.output)
        assert "Usage: " in done.output
        if command in expected - {("serve",)}:
            assert "--json" in done.output, command


def test_usage_errors_exit_2_and_service_errors_exit_3(cli: Cli, tmp_path: Path) -> None:
    no_key = cli.run("checkpoint", env={"ANCHORLOG_LOG_KEY": ""})
    assert no_key.returncode == 2 and "verifier key is required" in no_key.stderr
    bad_digest = cli.run("provenance", "not-a-digest")
    assert bad_digest.returncode == 2 and "digest" in bad_digest.stderr
    reader = cli.json("admin", "issue-token", "r-1", "--role", "reader")["token"]
    refused = cli.run("admin", "add-vendor", "nope", token=reader)
    assert refused.returncode == 3 and "PERMISSION_DENIED" in refused.stderr
    unauthenticated = cli.run("whoami", token="wrong")
    assert unauthenticated.returncode == 3 and "UNAUTHENTICATED" in unauthenticated.stderr
    unreachable = cli.run("checkpoint", env={"ANCHORLOG_SERVER": "127.0.0.1:1"})
    assert unreachable.returncode == 3 and "UNAVAILABLE" in unreachable.stderr


# ---------------------------------------------------------------- vendors and readers


@pytest.fixture
def vendor(cli: Cli) -> dict[str, str]:
    """A vendor with a key file, set up through the library (the CLI's admin commands
    are exercised by the README walkthrough and test_admin_commands)."""
    name = f"v-{hashlib.sha256(str(cli.tmp).encode()).hexdigest()[:10]}"
    key = VendorKeyPair.generate()
    key.save(cli.tmp / "vendor.key")
    with LedgerClient(cli.server.address, token=cli.server.admin_token, log_key=cli.server.log_key,
                      state_path=cli.tmp / "admin-state.json") as admin:
        admin.create_vendor(name)
        admin.register_key(name, key.public_key)
        token = admin.issue_token(name, "vendor")
    return {"name": name, "token": token, "key_id": key.key_id}


def test_attest_files_and_directory_then_provenance_and_revoke(cli: Cli, vendor: dict[str, str]) -> None:
    (cli.tmp / "data").mkdir()
    for i in range(3):
        (cli.tmp / "data" / f"s{i}.txt").write_bytes(f"file {vendor['name']} {i}".encode())
    (cli.tmp / "one.bin").write_bytes(b"\x00\x01" + vendor["name"].encode())
    out = cli.json("attest", "--key", "vendor.key", "data", "one.bin", "--claim", "human-created",
                   "--actor", "author-1", "--method", "photographed", "--performed-at", "2026-01-02T03:04:05",
                   "--receipts", "receipts", token=vendor["token"])
    assert out["samples"] == 4 and out["mode"] == "direct" and out["canonicalization"] == "raw-bytes"
    (accepted,) = out["accepted"]
    assert out["receipts"] == [f"receipts/receipt-{accepted['index']}.json"]

    result = cli.json("provenance", "data/s1.txt", token=vendor["token"])
    assert result["status"] == "human-created"
    (att,) = result["attestations"]
    assert att["index"] == accepted["index"] and att["vendor"] == vendor["name"] and att["actor"] == "author-1"
    assert att["performed_at"].startswith("2026-01-02T03:04:05")
    by_digest = cli.json("provenance", hashlib.sha256((cli.tmp / "one.bin").read_bytes()).hexdigest(),
                         token=vendor["token"])
    assert by_digest["status"] == "human-created"

    revoked = cli.json("revoke", str(accepted["index"]), "--key", "vendor.key", "--reason", "wrong batch",
                       token=vendor["token"])
    assert revoked["revoked"] == [accepted["index"]] and revoked["index"] > accepted["index"]
    assert cli.json("provenance", "data/s1.txt", token=vendor["token"])["status"] == "revoked"
    again = cli.json("provenance", "data/s1.txt", token=vendor["token"])["attestations"][0]
    assert again["revoked"] is True

    verified = cli.json("verify", out["receipts"][0])
    assert verified["valid"] is True and verified["index"] == accepted["index"]


def test_attest_jsonl_of_digests_in_batch_root_mode_with_progress(cli: Cli, vendor: dict[str, str]) -> None:
    digests = [hashlib.sha256(f"{vendor['name']} row {i}".encode()).hexdigest() for i in range(1500)]
    (cli.tmp / "digests.jsonl").write_text("".join(json.dumps({"sha256": d}) + "\n" for d in digests))
    missing_rule = cli.run("attest", "--key", "vendor.key", "--jsonl", "digests.jsonl", "--field", "sha256",
                           "--claim", "synthetic", "--actor", "gen", "--method", "generated", token=vendor["token"])
    assert missing_rule.returncode == 2 and "--canonicalization" in missing_rule.stderr
    done = cli.run("attest", "--key", "vendor.key", "--jsonl", "digests.jsonl", "--field", "sha256",
                   "--canonicalization", "raw-bytes", "--claim", "synthetic", "--actor", "gen",
                   "--method", "generated", "--generator-model", "m-7", "--progress", token=vendor["token"])
    assert done.returncode == 0, done.stderr
    assert "batch-root" in done.stdout and "1500 samples in 1 envelope" in done.stdout
    # tqdm's bars with their rates, on stderr.
    assert re.search(r"hashing: .*sample/s", done.stderr) and re.search(r"submitting: .*envelope/s", done.stderr)

    (cli.tmp / "asked.txt").write_text("\n".join([digests[0], digests[1499], "ab" * 32]) + "\n")
    answer = cli.json("provenance", "--digests", "asked.txt", "--bundle", "bundle.json", token=vendor["token"])
    assert [s["status"] for s in answer["samples"]] == ["synthetic", "synthetic", "unknown"]
    checked = cli.json("verify", "bundle.json")
    assert checked["kind"] == "bundle" and checked["statuses"] == {"synthetic": 2, "unknown": 1}


def test_attest_jsonl_texts_and_json_rows(cli: Cli, vendor: dict[str, str]) -> None:
    rows = [{"text": f"Caf\u00e9 {vendor['name']}", "lang": "fr"}, {"text": f"second {vendor['name']}"}]
    (cli.tmp / "rows.jsonl").write_text("".join(json.dumps(r) + "\n\n" for r in rows))
    common = ["--key", "vendor.key", "--jsonl", "rows.jsonl", "--claim", "human-edited",
              "--actor", "ed-2", "--method", "copy edit"]
    texts = cli.json("attest", *common, "--direct", token=vendor["token"])
    assert texts["canonicalization"] == "utf8-nfc-v1" and texts["samples"] == 2
    whole = cli.json("attest", *common, "--field", "json", token=vendor["token"])
    assert whole["canonicalization"] == "rfc8785-jcs-v1"
    # NFC: the decomposed spelling of the same text is the same sample.
    decomposed = f"Cafe\u0301 {vendor['name']}"
    assert cli.json("provenance", "--text", decomposed, token=vendor["token"])["status"] == "human-edited"
    (cli.tmp / "broken.jsonl").write_text('{"text": "ok"}\n{not json\n')
    broken = cli.run("attest", *common[:2], "--jsonl", "broken.jsonl", *common[4:], token=vendor["token"])
    assert broken.returncode == 2 and "broken.jsonl:2" in broken.stderr
    mixed = cli.run("attest", "rows.jsonl", *common, token=vendor["token"])
    assert mixed.returncode == 2 and "either files" in mixed.stderr


def test_admin_commands(cli: Cli, vendor: dict[str, str]) -> None:
    # (add-vendor, register-key and issue-token run in the README walkthrough.)
    again = cli.run("keygen", "vendor.key")
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert cli.json("public-key", "vendor.key")["key_id"] == vendor["key_id"]
    assert cli.json("whoami", token=vendor["token"]) == {"principal": vendor["name"], "role": "vendor"}
    new = cli.json("keygen", "next.key")
    assert stat.S_IMODE((cli.tmp / "next.key").stat().st_mode) == 0o600
    rotated = cli.json("admin", "rotate-key", vendor["name"], vendor["key_id"], new["public_key"])
    assert rotated["key_id"] == new["key_id"] and rotated["old_key_id"] == vendor["key_id"]
    (cli.tmp / "x.txt").write_text(vendor["name"])
    args = ["attest", "x.txt", "--claim", "human-created", "--actor", "a", "--method", "m"]
    old = cli.run(*args, "--key", "vendor.key", token=vendor["token"])
    assert old.returncode == 3 and "PERMISSION_DENIED" in old.stdout
    assert cli.json(*args, "--key", "next.key", token=vendor["token"])["accepted"]
    revoked = cli.json("admin", "revoke-key", vendor["name"], new["key_id"], "--compromised", "--reason", "leak")
    assert revoked["compromised"] is True
    assert cli.json("provenance", "x.txt", token=vendor["token"])["status"] == "revoked"


def test_issue_and_revoke_tokens(cli: Cli, vendor: dict[str, str]) -> None:
    reader = f"{vendor['name']}-r"
    plain = cli.run("admin", "issue-token", reader, "--role", "reader")
    assert plain.returncode == 0, plain.stderr
    token = plain.stdout.strip()  # stdout is the bare token, for scripts; the id goes to stderr
    token_id = hashlib.sha256(token.encode()).hexdigest()[:16]
    assert f"token id: {token_id}" in plain.stderr and token_id not in plain.stdout
    to_file = cli.json("admin", "issue-token", reader, "--role", "reader", "--out", "r.token")
    file_token = (cli.tmp / "r.token").read_text().strip()
    assert to_file["token_id"] == hashlib.sha256(file_token.encode()).hexdigest()[:16]
    as_json = cli.json("admin", "issue-token", reader, "--role", "reader")
    assert as_json["token_id"] == hashlib.sha256(as_json["token"].encode()).hexdigest()[:16]

    assert cli.json("admin", "revoke-token", token_id) == {"revoked": [token_id]}
    refused = cli.run("whoami", token=token)
    assert refused.returncode == 3 and "UNAUTHENTICATED" in refused.stderr
    assert cli.json("whoami", token=file_token)["principal"] == reader
    assert cli.json("admin", "revoke-token", "--revoke-file", "r.token") == {"revoked": [to_file["token_id"]]}
    assert cli.run("whoami", token=file_token).returncode == 3
    assert cli.json("admin", "revoke-token", "--principal", reader) == {"revoked": [as_json["token_id"]]}
    vendor_id = hashlib.sha256(vendor["token"].encode()).hexdigest()[:16]
    assert cli.json("admin", "revoke-token", "--principal", vendor["name"]) == {"revoked": [vendor_id]}
    assert cli.run("whoami", token=vendor["token"]).returncode == 3

    for usage in ((), (token_id, "--principal", reader)):
        done = cli.run("admin", "revoke-token", *usage)
        assert done.returncode == 2 and "exactly one of" in done.stderr, usage
    gone = cli.run("admin", "revoke-token", token_id)
    assert gone.returncode == 3 and "NOT_FOUND" in gone.stderr
    last = cli.run("admin", "revoke-token", "--principal", "admin")
    assert last.returncode == 3 and "FAILED_PRECONDITION" in last.stderr and "last live admin" in last.stderr
    assert cli.json("whoami") == {"principal": "admin", "role": "admin"}


def test_verify_refuses_tampered_documents_with_exit_1(cli: Cli, vendor: dict[str, str]) -> None:
    (cli.tmp / "s.txt").write_text(vendor["name"])
    cli.json("attest", "s.txt", "--key", "vendor.key", "--claim", "human-created", "--actor", "a",
             "--method", "m", "--receipts", "r", token=vendor["token"])
    (receipt,) = (cli.tmp / "r").glob("*.json")
    doc = json.loads(receipt.read_text())
    doc["entry"]["index"] += 1
    (cli.tmp / "bad.json").write_text(json.dumps(doc))
    done = cli.run("verify", str(receipt), "bad.json", "--json")
    assert done.returncode == 1
    reports = json.loads(done.stdout)
    assert [r["valid"] for r in reports] == [True, False]
    assert "not included in the checkpoint" in reports[1]["error"]
    (cli.tmp / "junk.json").write_text("{")
    assert cli.run("verify", "junk.json").returncode == 2


def test_checkpoint_and_trust_on_first_use(cli: Cli) -> None:
    first = cli.json("checkpoint")
    assert first["origin"] == "anchorlog.local/log" and first["size"] >= 1
    assert first["note"].startswith("anchorlog.local/log\n")
    second = cli.json("checkpoint")
    assert second["previously_trusted_size"] == first["size"]
    tofu = cli.run("checkpoint", "--tofu", "--json", env={"ANCHORLOG_LOG_KEY": ""})
    assert tofu.returncode == 0, tofu.stderr
    assert "log key pinned in" in tofu.stderr and cli.server.log_key in tofu.stderr
    pinned = json.loads(next((cli.tmp / "state" / "anchorlog").glob("tofu-*.json")).read_text())
    assert pinned["vkey"] == cli.server.log_key
