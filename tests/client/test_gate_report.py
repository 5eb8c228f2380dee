"""Gate reports from a hand-made result: Markdown, self-contained HTML/SVG, SLSA summary."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from anchorlog.client.gate.check import GateResult, InputAttestation, SliceResult, VendorResult
from anchorlog.client.gate.policy import Policy
from anchorlog.client.gate.report import to_html, to_markdown, to_svg, write_reports
from anchorlog.client.gate.slsa import VSA_PREDICATE_TYPE, verification_summary
from anchorlog.client.verify import VerifiedCheckpoint
from anchorlog.ledger.checkpoint import Checkpoint
from anchorlog.ledger.digests import digest_json

HOSTILE = '<script>alert("x")</script>|pipe'


def _result() -> GateResult:
    checkpoint = Checkpoint("example.org/log", 42, bytes(range(32)))
    policy = Policy(
        slice_column="lang", trusted_vendors=frozenset({"acme"}), min_slice_fraction=0.5
    )
    slices = (
        SliceResult(
            "en", 8, 6, 0.75, {"human-created": 2, "human-validated": 4, "unknown": 2}, 0.5, True
        ),
        SliceResult(HOSTILE, 2, 0, 0.0, {"synthetic": 1, "revoked": 1}, 0.5, False),
    )
    return GateResult(
        manifest="train.jsonl",
        policy=policy,
        checkpoint=VerifiedCheckpoint(checkpoint, b"example.org/log\n42\nAAEC\n\n- sig\n"),
        checked_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        total=10,
        grounded=6,
        fraction=0.6,
        statuses={
            "human-created": 2,
            "human-validated": 4,
            "unknown": 2,
            "synthetic": 1,
            "revoked": 1,
        },
        slices=slices,
        vendors=(
            VendorResult("acme", True, 8, 7, 1, {"human-validated": 5}),
            VendorResult("shady", False, 2, 2, 0, {"human-created": 2}),
        ),
        failures=(f"slice {HOSTILE!r}: 0/2 human-grounded (0.00%) is below 50.00%",),
        dataset_digest=bytes(32),
        input_attestations=(InputAttestation(7, b"\x01" * 32, "acme"),),
        elapsed_seconds=1.5,
    )


def test_json_report_states_counts_checkpoint_and_policy(tmp_path: Path) -> None:
    paths = write_reports(_result(), tmp_path / "out")
    doc = json.loads(paths["json"].read_text())
    assert doc["result"] == "FAILED" and doc["passed"] is False
    assert doc["statuses"] == {
        "human-created": 2,
        "human-validated": 4,
        "human-edited": 0,
        "synthetic": 1,
        "revoked": 1,
        "unknown": 2,
    }
    assert (
        doc["checkpoint"]["size"] == 42 and doc["checkpoint"]["root_hash"] == bytes(range(32)).hex()
    )
    assert (
        doc["policy"]["trusted_vendors"] == ["acme"] and doc["policy"]["min_slice_fraction"] == 0.5
    )
    assert [v["vendor"] for v in doc["vendors"] if not v["trusted"]] == ["shady"]
    assert doc["input_attestations"] == [{"index": 7, "leaf_hash": "01" * 32, "vendor": "acme"}]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "report.html",
        "report.json",
        "report.md",
    ]


def test_markdown_escapes_table_cells() -> None:
    text = to_markdown(_result())
    assert text.startswith("# Dataset gate: FAILED")
    assert '| <script>alert("x")</script>\\|pipe | 2 | 0 | 0.00% | **FAIL** |' in text
    assert "| shady | no (ignored) |" in text


def test_html_is_self_contained_and_escapes_slice_names() -> None:
    page = to_html(_result())
    assert "<script" not in page and "&lt;script&gt;" in page
    assert not re.search(r"(src|href)=", page)
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_svg_bars_fill_the_bar_width_per_row() -> None:
    svg = to_svg(_result())
    rows: dict[str, float] = {}
    for width, title in re.findall(
        r'<rect x="[\d.]+" y="\d+" width="([\d.]+)" height="22"[^>]*><title>([^<]*):', svg
    ):
        rows[title] = rows.get(title, 0.0) + float(width)
    assert set(rows) == {
        "all samples",
        "en",
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;|pipe",
    }
    assert all(abs(total - 520) < 0.05 for total in rows.values())
    # One dashed threshold line per row: overall at 20 %, slices at 50 %.
    assert re.findall(r'<line x1="([\d.]+)"', svg) == ["284.00", "440.00", "440.00"]


def test_verification_summary_shape() -> None:
    result = _result()
    vsa = verification_summary(result, resource_uri="file:///data/train.jsonl")
    assert vsa["_type"] == "https://in-toto.io/Statement/v1"
    assert vsa["predicateType"] == VSA_PREDICATE_TYPE
    assert vsa["subject"] == [{"name": "train.jsonl", "digest": {"sha256": "00" * 32}}]
    predicate = vsa["predicate"]
    assert predicate["verificationResult"] == "FAILED" and predicate["verifiedLevels"] == ["FAILED"]
    assert predicate["timeVerified"] == "2026-11-25T12:00:00Z"
    assert predicate["resourceUri"] == "file:///data/train.jsonl"
    assert predicate["policy"]["digest"]["sha256"] == digest_json(result.policy.to_json()).hex()
    assert predicate["inputAttestations"] == [
        {"uri": "anchorlog:example.org/log/entry/7", "digest": {"sha256": "01" * 32}}
    ]
