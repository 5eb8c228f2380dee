"""The dataset gate end to end: a real server, real attestations, every manifest format.

One server is populated once per module with a dataset of 150 texts in three
slices (en 100, fr 40, yo 10) by two vendors, ``acme`` (trusted) and ``shady``
(not on the allow-list), including a revoked attestation, a synthetic claim, old
human acts and unknown samples. With only acme trusted the overall share is
51/150 and passes 0.20 while the rare slice ``yo`` (1/10) fails.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from anchorlog.client.cli import main
from anchorlog.client.gate import (
    Policy,
    check_dataset,
    filter_rows,
    label_rows,
    read_manifest,
    samples_from_hf,
    verify_gate_bundle,
)
from anchorlog.client.ledger import LedgerClient, Submission
from anchorlog.client.vendor import (
    ClaimDetails,
    VendorKeyPair,
    attest_batch,
    attest_samples,
    revoke_entries,
)
from anchorlog.ledger.digests import Canonicalization, digest_bytes, digest_text
from anchorlog.ledger.merkle import leaf_hash
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import Claim
from click.testing import CliRunner

from tests.conftest import ServerProcess, start_server

TEXT = Canonicalization.UTF8_NFC_V1
OLD = datetime(2020, 1, 1, tzinfo=UTC)


def _details(
    claim: Claim, *, performed_at: datetime | None = None, rule: Canonicalization = TEXT
) -> ClaimDetails:
    return ClaimDetails(
        claim=claim,
        canonicalization=rule,
        actor_id="reviewer-1",
        method="two-pass review",
        performed_at=performed_at,
        generator_model="example-llm" if claim is Claim.SYNTHETIC else None,
    )


def _rows() -> list[dict[str, str]]:
    langs = ["en"] * 100 + ["fr"] * 40 + ["yo"] * 10
    return [
        {"id": str(i), "text": f"sample {i}: some human sentence", "lang": lang}
        for i, lang in enumerate(langs)
    ]


@dataclass
class World:
    server: ServerProcess
    reader_token: str
    rows: list[dict[str, str]]
    acme_entries: list[int]  # batch, created, synthetic, old, fr, yo, files
    revoked_index: int
    files: Path
    tmp: Path

    def client(self, state: str = "reader") -> LedgerClient:
        return LedgerClient(
            self.server.address,
            token=self.reader_token,
            log_key=self.server.log_key,
            state_path=self.tmp / f"{state}.json",
        )

    def env(self) -> dict[str, str]:
        return {
            "ANCHORLOG_SERVER": self.server.address,
            "ANCHORLOG_LOG_KEY": self.server.log_key,
            "ANCHORLOG_TOKEN": self.reader_token,
            "ANCHORLOG_STATE": str(self.tmp / "cli-state.json"),
        }


def _submit(client: LedgerClient, items: list[Submission]) -> list[int]:
    outcomes = client.submit(items)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return [o.receipt.index for o in outcomes if o.receipt is not None]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("gate")
    server = start_server(tmp / "data", "--auth-failures-per-minute", "10000")
    try:
        yield _populate(server, tmp)
    finally:
        server.stop()


def _populate(server: ServerProcess, tmp: Path) -> World:
    acme, shady = VendorKeyPair.generate(), VendorKeyPair.generate()
    with LedgerClient(
        server.address,
        token=server.admin_token,
        log_key=server.log_key,
        state_path=tmp / "admin.json",
    ) as admin:
        tokens = {}
        for vendor, key in (("acme", acme), ("shady", shady)):
            admin.create_vendor(vendor, vendor.title())
            admin.register_key(vendor, key.public_key)
            tokens[vendor] = admin.issue_token(vendor, "vendor")
        reader_token = admin.issue_token("builder-1", "reader")
    rows = _rows()
    d = [digest_text(r["text"]) for r in rows]
    files = tmp / "files"
    for lang, names in (("en", ["a", "b", "c", "d"]), ("rare", ["e", "f"])):
        (files / lang).mkdir(parents=True)
        for name in names:
            (files / lang / f"{name}.txt").write_bytes(f"file {lang}/{name}\n".encode())
    file_digests = [digest_bytes(f"file en/{n}\n".encode()) for n in ("a", "b")]
    with LedgerClient(
        server.address, token=tokens["acme"], log_key=server.log_key, state_path=tmp / "acme.json"
    ) as client:
        acme_entries = _submit(
            client,
            [
                attest_batch(acme, d[0:30], _details(Claim.HUMAN_VALIDATED)),
                attest_samples(acme, d[30:35], _details(Claim.HUMAN_CREATED)),
                attest_samples(acme, d[35:55], _details(Claim.SYNTHETIC)),
                attest_samples(acme, d[55:60], _details(Claim.HUMAN_CREATED, performed_at=OLD)),
                attest_samples(acme, d[100:110], _details(Claim.HUMAN_VALIDATED)),
                attest_samples(acme, d[140:141], _details(Claim.HUMAN_VALIDATED)),
                attest_samples(
                    acme,
                    file_digests,
                    _details(Claim.HUMAN_CREATED, rule=Canonicalization.RAW_BYTES),
                ),
            ],
        )
        (withdrawn,) = _submit(
            client, [attest_samples(acme, d[110:115], _details(Claim.HUMAN_VALIDATED))]
        )
        data = client.entry(withdrawn).data
        _submit(client, [revoke_entries(acme, [(withdrawn, leaf_hash(data))], "reviewer error")])
    with LedgerClient(
        server.address, token=tokens["shady"], log_key=server.log_key, state_path=tmp / "shady.json"
    ) as client:
        _submit(
            client, [attest_samples(shady, d[141:146] + d[60:65], _details(Claim.HUMAN_CREATED))]
        )
    return World(server, reader_token, rows, acme_entries, withdrawn, files, tmp)


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "lang"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _run(world: World, *args: str) -> Any:
    return CliRunner().invoke(main, ["check", *args], env=world.env(), catch_exceptions=False)


ACME_ONLY = {
    "human-created": 10,
    "human-validated": 41,
    "human-edited": 0,
    "synthetic": 20,
    "revoked": 5,
    "unknown": 74,
}


# ---------------------------------------------------------------- library


def test_rare_slice_fails_while_overall_passes(world: World, tmp_path: Path) -> None:
    manifest = _write_jsonl(tmp_path / "train.jsonl", world.rows)
    policy = Policy(slice_column="lang", trusted_vendors=frozenset({"acme"}))
    with world.client() as client:
        result = check_dataset(
            client, read_manifest(manifest, slice_column="lang"), policy, manifest="train.jsonl"
        )
        latest = client.checkpoint()
    assert (result.total, result.grounded) == (150, 51)
    assert result.fraction == pytest.approx(51 / 150)
    assert result.to_json()["statuses"] == ACME_ONLY
    slices = {s.name: (s.total, s.grounded, s.passed) for s in result.slices}
    assert slices == {"en": (100, 40, True), "fr": (40, 10, True), "yo": (10, 1, False)}
    assert not result.passed
    assert [s.name for s in result.failing_slices] == ["yo"]
    assert result.failures == ("slice 'yo': 1/10 human-grounded (10.00%) is below 20.00%",)
    assert result.slices[1].statuses == {"human-validated": 10, "revoked": 5, "unknown": 25}
    # Everything was verified against one checkpoint, the one the client now trusts.
    assert result.checkpoint.size == latest.size and result.checkpoint.root_hash == latest.root_hash
    vendors = {v.vendor: v for v in result.vendors}
    assert vendors["acme"].trusted and (vendors["acme"].samples, vendors["acme"].revoked) == (76, 5)
    assert not vendors["shady"].trusted and vendors["shady"].samples == 10
    # The decision rests on acme's entries only, never on the revoked one.
    inputs = {a.index for a in result.input_attestations}
    assert inputs <= set(world.acme_entries) and world.revoked_index not in inputs
    # Everything acme said that made a counted sample human, but not its synthetic claim.
    assert inputs == set(world.acme_entries[:2] + world.acme_entries[3:6])
    assert {a.vendor for a in result.input_attestations} == {"acme"}


def test_untrusted_vendor_counts_only_when_trusted(world: World, tmp_path: Path) -> None:
    manifest = _write_jsonl(tmp_path / "train.jsonl", world.rows)
    with world.client() as client:
        everyone = check_dataset(
            client, read_manifest(manifest, slice_column="lang"), Policy(slice_column="lang")
        )
    assert everyone.passed
    assert (everyone.total, everyone.grounded) == (150, 61)
    assert {s.name: s.grounded for s in everyone.slices} == {"en": 45, "fr": 10, "yo": 6}


def test_max_age_and_counted_statuses(world: World, tmp_path: Path) -> None:
    manifest = _write_jsonl(tmp_path / "train.jsonl", world.rows)
    acme = frozenset({"acme"})
    with world.client() as client:
        fresh = check_dataset(
            client, read_manifest(manifest), Policy(trusted_vendors=acme, max_age=timedelta(days=365))
        )
        created = check_dataset(
            client,
            read_manifest(manifest),
            Policy(trusted_vendors=acme, counted_statuses=frozenset({Claim.HUMAN_CREATED.value})),
        )
    # The five human acts from 2020 no longer count: they are unknown, not human.
    assert (
        fresh.grounded == 46
        and fresh.statuses["unknown"] == 79
        and fresh.statuses["human-created"] == 5
    )
    old_entry = world.acme_entries[3]
    assert old_entry not in {a.index for a in fresh.input_attestations}
    assert created.grounded == 10 and not created.passed and created.slices == ()
    assert old_entry in {a.index for a in created.input_attestations}


def test_hf_dataset_check_label_and_filter(world: World) -> None:
    datasets = pytest.importorskip("datasets")
    from anchorlog.client.gate import filter_hf, label_hf

    dataset = datasets.Dataset.from_list(world.rows)
    policy = Policy(slice_column="lang", trusted_vendors=frozenset({"acme"}))
    with world.client() as client:
        result = check_dataset(
            client, samples_from_hf(dataset, slice_column="lang", batch_size=64), policy
        )
        labelled = label_hf(client, dataset, field="text", policy=policy, batch_size=32)
        kept = filter_hf(client, dataset, policy=policy, batch_size=32)
    assert (result.total, result.grounded) == (150, 51)
    assert [s.name for s in result.failing_slices] == ["yo"]
    statuses = labelled["provenance_status"]
    assert labelled.column_names == ["id", "text", "lang", "provenance_status"]
    assert (
        statuses[0] == "human-validated"
        and statuses[30] == "human-created"
        and statuses[35] == "synthetic"
    )
    assert statuses[110] == "revoked" and statuses[141] == "unknown" and statuses[149] == "unknown"
    assert len(kept) == 51 and set(kept["id"]) == {
        r["id"] for r, s in zip(world.rows, statuses, strict=True) if s.startswith("human-")
    }


def test_label_and_filter_plain_rows(world: World) -> None:
    policy = Policy(trusted_vendors=frozenset({"acme"}))
    with world.client() as client:
        labelled = list(label_rows(client, iter(world.rows), field="text", policy=policy, chunk=16))
        kept = list(filter_rows(client, iter(world.rows), policy=policy, chunk=16))
    assert [r["id"] for r in labelled] == [r["id"] for r in world.rows]
    assert labelled[100]["provenance_status"] == "human-validated"
    assert labelled[112]["provenance_status"] == "revoked"
    assert labelled[62]["provenance_status"] == "unknown"  # shady's claim is ignored
    assert len(kept) == 51 and all(r in world.rows for r in kept)
    assert "provenance_status" not in kept[0]


# ---------------------------------------------------------------- command line


def test_cli_csv_fails_on_rare_slice_with_reports_bundle_and_vsa(
    world: World, tmp_path: Path
) -> None:
    manifest = _write_csv(tmp_path / "train.csv", world.rows)
    reports, bundle, vsa = tmp_path / "reports", tmp_path / "bundle.json", tmp_path / "vsa.json"
    result = _run(
        world,
        str(manifest),
        "--slice-column",
        "lang",
        "--vendor",
        "acme",
        "--report-dir",
        str(reports),
        "--bundle",
        str(bundle),
        "--vsa",
        str(vsa),
    )
    assert result.exit_code == 1, result.output
    assert "FAILED: 51/150 samples human-grounded (34.00%)" in result.output
    assert "FAIL yo: 1/10" in result.output and "ignored untrusted vendors: shady" in result.output
    report = json.loads((reports / "report.json").read_text())
    assert report["result"] == "FAILED" and report["statuses"] == ACME_ONLY
    assert (
        report["policy"]["trusted_vendors"] == ["acme"] and report["policy"]["min_fraction"] == 0.2
    )
    assert [s["slice"] for s in report["slices"] if not s["passed"]] == ["yo"]
    markdown = (reports / "report.md").read_text()
    assert (
        "# Dataset gate: FAILED" in markdown and "| yo | 10 | 1 | 10.00% | **FAIL** |" in markdown
    )
    page = (reports / "report.html").read_text()
    assert "<svg" in page and "<script" not in page and "<link" not in page
    assert "src=" not in page and "yo: human-validated 1 (10.00%)" in page

    # The bundle verifies offline with the log key alone, through the ordinary verify command.
    verified = CliRunner().invoke(
        main, ["verify", "--json", "--log-key", world.server.log_key, str(bundle)]
    )
    assert verified.exit_code == 0, verified.output
    summary = json.loads(verified.output)
    assert summary["valid"] and summary["samples"] == 51
    doc = json.loads(bundle.read_text())
    verifier = NoteVerifier.from_vkey(world.server.log_key)
    assert verify_gate_bundle(doc, verifier)["samples"] == 51
    assert doc["gate"]["result"] == "FAILED" and doc["gate"]["grounded"] == 51
    assert world.revoked_index not in {e["index"] for e in doc["entries"]}

    statement = json.loads(vsa.read_text())
    assert statement["predicateType"] == "https://slsa.dev/verification_summary/v1"
    assert statement["predicate"]["verificationResult"] == "FAILED"
    assert statement["subject"][0]["digest"]["sha256"] == report["dataset_digest"]["sha256"]
    indices = {int(a["uri"].rsplit("/", 1)[1]) for a in statement["predicate"]["inputAttestations"]}
    assert (
        indices == {a["index"] for a in report["input_attestations"]}
        and indices <= set(world.acme_entries)
    )


def test_tampered_bundle_is_refused(world: World, tmp_path: Path) -> None:
    manifest = _write_jsonl(tmp_path / "train.jsonl", world.rows)
    bundle = tmp_path / "bundle.json"
    assert _run(world, str(manifest), "--vendor", "acme", "--bundle", str(bundle)).exit_code == 0
    doc = json.loads(bundle.read_text())
    verifier = NoteVerifier.from_vkey(world.server.log_key)
    relabelled = json.loads(json.dumps(doc))
    relabelled["samples"][0]["policyStatus"] = "human-created"
    with pytest.raises(Exception, match="bundle states policy status"):
        verify_gate_bundle(relabelled, verifier)
    # Dropping the entry a sample rests on makes the ordinary verifier refuse the bundle.
    stripped = json.loads(json.dumps(doc))
    stripped["entries"] = [
        e for e in stripped["entries"] if e["index"] != doc["samples"][0]["hits"][0]["entryIndex"]
    ]
    (tmp_path / "stripped.json").write_text(json.dumps(stripped))
    refused = CliRunner().invoke(
        main, ["verify", "--log-key", world.server.log_key, str(tmp_path / "stripped.json")]
    )
    assert refused.exit_code == 1 and "INVALID" in refused.output


def test_cli_parquet_sha256_passes_when_every_vendor_is_trusted(
    world: World, tmp_path: Path
) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "sha256": [digest_text(r["text"]).hex() for r in world.rows],
            "lang": [r["lang"] for r in world.rows],
        }
    )
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=40)
    policy = tmp_path / "policy.toml"
    policy.write_text('slice_column = "lang"\nmin_fraction = 0.25\n')
    result = _run(
        world, str(tmp_path / "train.parquet"), "--policy", str(policy), "--json", "--chunk", "7"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (
        report["passed"] and report["grounded"] == 61 and report["policy"]["min_fraction"] == 0.25
    )
    assert {s["slice"]: s["grounded"] for s in report["slices"]} == {"en": 45, "fr": 10, "yo": 6}
    # A flag overrides the file: a stricter overall threshold fails.
    stricter = _run(
        world, str(tmp_path / "train.parquet"), "--policy", str(policy), "--min-fraction", "0.5"
    )
    assert stricter.exit_code == 1 and "overall: 61/150" in stricter.output


def test_cli_directory_manifest(world: World, tmp_path: Path) -> None:
    result = _run(world, str(world.files), "--slice-column", "dir", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert (report["total"], report["grounded"]) == (6, 2)
    assert {s["slice"]: (s["grounded"], s["passed"]) for s in report["slices"]} == {
        "en": (2, True),
        "rare": (0, False),
    }
    assert _run(world, str(world.files), "--min-slice-fraction", "0").exit_code == 0


def test_cli_errors_exit_2_and_change_nothing(world: World, tmp_path: Path) -> None:
    manifest = _write_jsonl(tmp_path / "train.jsonl", world.rows)
    bad_row = tmp_path / "bad.jsonl"
    bad_row.write_text('{"text": "fine"}\n{"text": 3}\n')
    bad_policy = tmp_path / "policy.toml"
    bad_policy.write_text('counted_statuses = ["synthetic"]\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cases = [
        ([str(bad_row)], "bad.jsonl:2: 'text' must be text"),
        ([str(manifest), "--field", "prompt"], "'prompt' is not one of"),
        ([str(manifest), "--policy", str(bad_policy)], "'synthetic' can never count"),
        ([str(manifest), "--min-fraction", "2"], "min_fraction: must be between 0 and 1"),
        ([str(manifest), "--max-age", "forever"], "'forever' is not a duration"),
        ([str(empty)], "has no samples"),
        (
            [str(manifest), "--report-dir", str(tmp_path / "r"), "--server", "127.0.0.1:1"],
            "service refused",
        ),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, ["check", *args], env=world.env())
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert not (tmp_path / "r").exists()


def test_cli_exit_codes_in_a_real_process(world: World, tmp_path: Path) -> None:
    manifest = _write_jsonl(tmp_path / "train.jsonl", world.rows)
    command = [
        sys.executable,
        "-m",
        "anchorlog.client.cli",
        "check",
        str(manifest),
        "--slice-column",
        "lang",
    ]
    env = {**os.environ, **world.env()}
    failed = subprocess.run(
        [*command, "--vendor", "acme"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1, failed.stderr
    passed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert passed.returncode == 0, passed.stderr
    assert "PASSED: 61/150" in passed.stdout
