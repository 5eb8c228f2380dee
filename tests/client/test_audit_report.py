"""`audit report` on real log files with controlled times: each anomaly at its threshold."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from anchorlog.client.audit import report as report_module
from anchorlog.client.audit.chart import activity_svg
from anchorlog.client.audit.report import Thresholds, build_report, write_report
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import Claim

from tests.client.audit_log import T0, LogBuilder


@pytest.fixture
def log(tmp_path: Path) -> Iterator[LogBuilder]:
    builder = LogBuilder(tmp_path / "log.db")
    try:
        yield builder
    finally:
        builder.close()


def _kinds(log: LogBuilder, **limits: object) -> set[tuple[str, int, str]]:
    report = build_report(log.path, NoteVerifier.from_vkey(log.log_key), Thresholds(**limits))  # type: ignore[arg-type]
    return {(str(a.kind), a.index, a.actor) for a in report.anomalies}


def test_clean_log_counts_and_no_anomalies(log: LogBuilder, tmp_path: Path) -> None:
    acme, beta = log.vendor("acme"), log.vendor("beta")
    a1 = log.attest("acme", acme, ["a", "b"], Claim.HUMAN_VALIDATED, "r1", T0)
    log.attest_batch("acme", acme, [f"x{i}" for i in range(50)], Claim.SYNTHETIC, "gen", T0)
    log.attest("acme", acme, ["c"], Claim.HUMAN_CREATED, "r2", T0)
    log.attest("beta", beta, ["a"], Claim.HUMAN_VALIDATED, "q1", T0 + timedelta(minutes=8))
    log.revoke("acme", acme, [a1])
    report = build_report(log.path, NoteVerifier.from_vkey(log.log_key))
    assert report.anomalies == ()
    acme_doc = report.to_json()["vendors"]["acme"]
    assert acme_doc["attestations"] == 3 and acme_doc["samples"] == 53
    assert acme_doc["claim_samples"] == {"human-created": 1, "human-validated": 2, "synthetic": 50}
    assert (acme_doc["revocations_issued"], acme_doc["attestations_revoked"]) == (1, 1)
    assert report.reviewers[("acme", "r1")].attestations_revoked == 1
    assert report.reviewers[("acme", "r2")].attestations_revoked == 0
    assert report.bucket == "hour"
    assert sum(acme_doc["activity"].values()) == 3
    paths = write_report(report, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["clean"] is True
    html = paths["html"].read_text()
    svgs = [html[i : html.index("</svg>", i) + 6] for i in range(len(html)) if html.startswith("<svg", i)]
    assert len(svgs) == 2
    vendors_chart = ET.fromstring(svgs[0])
    polylines = vendors_chart.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(polylines) == 2  # acme and beta


def test_reviewer_rate_counts_samples_in_any_one_hour(log: LogBuilder) -> None:
    acme = log.vendor("acme")
    log.now = T0 + timedelta(hours=3)  # submitted later than the work it records
    log.attest("acme", acme, [f"a{i}" for i in range(10)], Claim.HUMAN_VALIDATED, "fast", T0)
    peak = log.attest("acme", acme, [f"b{i}" for i in range(10)], Claim.HUMAN_VALIDATED, "fast",
                      T0 + timedelta(minutes=59))
    # Exactly an hour after the first: the first falls out of the window.
    log.attest("acme", acme, [f"c{i}" for i in range(5)], Claim.HUMAN_VALIDATED, "fast", T0 + timedelta(minutes=60))
    # Synthetic output is no human act and does not count.
    log.attest("acme", acme, [f"d{i}" for i in range(50)], Claim.SYNTHETIC, "fast", T0)
    assert _kinds(log, max_per_hour=20) == set()
    assert _kinds(log, max_per_hour=19) == {("reviewer-rate", peak, "fast")}


def test_performed_in_future_allows_clock_skew(log: LogBuilder) -> None:
    acme = log.vendor("acme")
    # The builder integrates each entry one minute after the previous one.
    integrated = log.now + timedelta(minutes=1)
    ahead = log.attest("acme", acme, ["a"], Claim.HUMAN_VALIDATED, "r", integrated + timedelta(minutes=4))
    assert _kinds(log, future_skew=timedelta(minutes=5)) == set()
    assert _kinds(log, future_skew=timedelta(minutes=3)) == {("performed-in-future", ahead, "r")}


def test_validation_before_the_sample_first_appeared(log: LogBuilder) -> None:
    acme, beta = log.vendor("acme"), log.vendor("beta")
    created_at = log.now + timedelta(minutes=1)
    log.attest("beta", beta, ["s"], Claim.HUMAN_CREATED, "author", created_at - timedelta(minutes=30))
    # After the creation act (30 minutes before integration): fine.
    log.attest("acme", acme, ["s"], Claim.HUMAN_VALIDATED, "ok", created_at - timedelta(minutes=20))
    early = log.attest("acme", acme, ["s", "t"], Claim.HUMAN_VALIDATED, "early", created_at - timedelta(hours=2))
    # The first entry naming "t" is the validation itself: nothing earlier to contradict.
    assert _kinds(log) == {("validated-before-first-appearance", early, "early")}


def test_repeated_validation_reported_once_past_the_limit(log: LogBuilder) -> None:
    acme = log.vendor("acme")
    entries = [
        log.attest("acme", acme, ["same"], Claim.HUMAN_VALIDATED, "loop", T0 + timedelta(seconds=s))
        for s in range(4)
    ]
    # Another reviewer validating the same sample is not a repeat.
    log.attest("acme", acme, ["same"], Claim.HUMAN_VALIDATED, "other", T0)
    assert _kinds(log, max_repeats=4) == set()
    assert _kinds(log, max_repeats=2) == {("repeated-validation", entries[2], "loop")}


def test_signature_under_a_revoked_key(log: LogBuilder) -> None:
    acme = log.vendor("acme")
    log.attest("acme", acme, ["before"], Claim.HUMAN_VALIDATED, "r", T0)
    log.revoke_key("acme", acme)
    after = log.attest("acme", acme, ["after"], Claim.HUMAN_VALIDATED, "r", T0)
    assert _kinds(log) == {("revoked-key-signature", after, "")}


def test_long_logs_are_bucketed_by_day(log: LogBuilder) -> None:
    acme = log.vendor("acme")
    log.attest("acme", acme, ["a"], Claim.HUMAN_VALIDATED, "r", T0)
    log.attest("acme", acme, ["b"], Claim.HUMAN_VALIDATED, "r", T0, advance=timedelta(days=3))
    report = build_report(log.path, NoteVerifier.from_vkey(log.log_key))
    assert report.bucket == "day"
    assert len(report.buckets) == 4  # quiet days in between are shown as zero
    assert sum(report.vendors["acme"].by_time.values()) == 2


def test_thresholds_are_checked() -> None:
    with pytest.raises(InvalidInput, match="max_per_hour"):
        Thresholds(max_per_hour=0)
    with pytest.raises(InvalidInput, match="max_repeats"):
        Thresholds(max_repeats=0)
    with pytest.raises(InvalidInput, match="future_skew"):
        Thresholds(future_skew=timedelta(seconds=-1))


def test_chart_escapes_names_and_handles_a_single_bucket() -> None:
    svg = activity_svg("t <1>", ["2026-11-02"], {"<script>": {"2026-11-02": 3}})
    root = ET.fromstring(svg)
    assert "<script>" not in svg and root.tag.endswith("svg")
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 1


def test_every_anomaly_is_counted_but_listing_is_capped(log: LogBuilder, monkeypatch: pytest.MonkeyPatch) -> None:
    acme = log.vendor("acme")
    names = [f"s{i}" for i in range(5)]
    for second in range(3):
        log.attest("acme", acme, names, Claim.HUMAN_VALIDATED, "loop", T0 + timedelta(seconds=second))
    monkeypatch.setattr(report_module, "MAX_LISTED", 2)
    report = build_report(log.path, NoteVerifier.from_vkey(log.log_key), Thresholds(max_repeats=2))
    assert report.anomaly_counts == {"repeated-validation": 5}
    assert len(report.anomalies) == 2
    assert report.to_json()["anomaly_counts"] == {"repeated-validation": 5}
