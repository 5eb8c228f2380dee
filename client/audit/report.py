"""``audit report``: who attested what, when, and patterns that suggest gaming.

Per vendor and per reviewer (the predicate's ``actorId``, scoped to its vendor):
attestations and samples over time, claim mix, revocations. Anomalies:

* ``reviewer-rate``: a reviewer's human claims cover more samples within one
  hour (by ``performedAt``) than a person plausibly can (``max_per_hour``);
* ``validated-before-first-appearance``: a validation whose ``performedAt`` is
  before the sample first appeared in the log (the earliest integration or
  ``performedAt`` time of the earlier entries naming it);
* ``performed-in-future``: ``performedAt`` later than the entry's integration
  time (beyond a clock-skew allowance);
* ``repeated-validation``: one reviewer validated the same sample more than
  ``max_repeats`` times;
* ``revoked-key-signature``: an entry carries a signature by a key of its vendor
  that was revoked (or rotated out) before that entry.

The report reads a mirror; it does not re-verify it (``audit verify`` does),
and skips entries whose statements do not parse (verify reports those).
"""

from __future__ import annotations

import enum
import json
import sqlite3
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from anchorlog.client.audit.chart import activity_svg, html_page, html_table
from anchorlog.client.audit.mirror_db import iter_entries, open_readonly
from anchorlog.ledger.attestation import check_attestation
from anchorlog.ledger.dsse import verify_envelope
from anchorlog.ledger.entry import MAX_ENVELOPE_BYTES, EntryKind, LogEntry, decode_entry
from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.keys import KeyRegistry, open_key_event
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import Claim, ProvenancePredicate, parse_revocation_targets

_NO_LIMIT = 1 << 40
MAX_LISTED = 1000
HUMAN_CLAIMS = frozenset({Claim.HUMAN_CREATED, Claim.HUMAN_VALIDATED, Claim.HUMAN_EDITED})


class AnomalyKind(enum.StrEnum):
    REVIEWER_RATE = "reviewer-rate"
    BEFORE_FIRST_APPEARANCE = "validated-before-first-appearance"
    PERFORMED_IN_FUTURE = "performed-in-future"
    REPEATED_VALIDATION = "repeated-validation"
    REVOKED_KEY_SIGNATURE = "revoked-key-signature"


@dataclass(frozen=True)
class Thresholds:
    max_per_hour: int = 600
    max_repeats: int = 2
    future_skew: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_per_hour < 1:
            raise InvalidInput("max_per_hour", "must be at least 1")
        if self.max_repeats < 1:
            raise InvalidInput("max_repeats", "must be at least 1")
        if self.future_skew < timedelta(0):
            raise InvalidInput("future_skew", "must not be negative")


@dataclass(frozen=True)
class Anomaly:
    kind: AnomalyKind
    index: int
    vendor: str
    actor: str
    message: str
    details: tuple[tuple[str, str | int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind), "index": self.index, "vendor": self.vendor, "actor": self.actor,
            "message": self.message, "details": dict(self.details),
        }


@dataclass
class Activity:
    """Counts for one vendor or one reviewer. Mutable: filled during one pass."""

    attestations: int = 0
    samples: int = 0
    claims: Counter[str] = field(default_factory=Counter)
    claim_samples: Counter[str] = field(default_factory=Counter)
    revocations_issued: int = 0
    attestations_revoked: int = 0
    by_time: Counter[str] = field(default_factory=Counter)
    times_ms: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "attestations": self.attestations,
            "samples": self.samples,
            "claims": dict(sorted(self.claims.items())),
            "claim_samples": dict(sorted(self.claim_samples.items())),
            "revocations_issued": self.revocations_issued,
            "attestations_revoked": self.attestations_revoked,
            "activity": dict(sorted(self.by_time.items())),
        }


@dataclass(frozen=True)
class Report:
    entries: int
    bucket: str
    buckets: tuple[str, ...]
    vendors: dict[str, Activity]
    reviewers: dict[tuple[str, str], Activity]
    anomalies: tuple[Anomaly, ...]
    thresholds: Thresholds
    # Every anomaly is counted; at most ``MAX_LISTED`` of each kind are listed.
    anomaly_counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "thresholds": {
                "max_per_hour": self.thresholds.max_per_hour,
                "max_repeats": self.thresholds.max_repeats,
                "future_skew_seconds": int(self.thresholds.future_skew.total_seconds()),
            },
            "bucket": self.bucket,
            "vendors": {v: a.to_json() for v, a in sorted(self.vendors.items())},
            "reviewers": [
                {"vendor": v, "actor": r, **a.to_json()} for (v, r), a in sorted(self.reviewers.items())
            ],
            "anomaly_counts": dict(sorted(self.anomaly_counts.items())),
            "anomalies": [a.to_json() for a in self.anomalies],
            "clean": not self.anomalies,
        }


@dataclass(frozen=True)
class _Validation:
    performed_ms: int
    samples: int
    index: int


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _when(ms: int) -> datetime:
    """A time from the log; one beyond the calendar (a forged entry) reads as the end of time."""
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.max.replace(tzinfo=UTC)


def _iso(ms: int) -> str:
    return _when(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Builder:
    """One pass over the log in index order. Mutable working state of ``build_report``."""

    def __init__(self, conn: sqlite3.Connection, verifier: NoteVerifier, thresholds: Thresholds) -> None:
        self.conn = conn
        self.verifier = verifier
        self.t = thresholds
        self.registry = KeyRegistry()
        self.vendors: dict[str, Activity] = defaultdict(Activity)
        self.reviewers: dict[tuple[str, str], Activity] = defaultdict(Activity)
        self.anomalies: list[Anomaly] = []
        self.first_seen: dict[bytes, int] = {}
        self.validations: dict[tuple[str, str, bytes], int] = Counter()
        self.human_acts: dict[tuple[str, str], list[_Validation]] = defaultdict(list)
        self.author: dict[int, tuple[str, str]] = {}
        self.entries = 0

    def run(self) -> None:
        for index, _, data in iter_entries(self.conn):
            self.entries += 1
            try:
                entry = decode_entry(data)
            except InvalidInput:
                continue
            if entry.kind is EntryKind.KEY_EVENT:
                try:
                    self.registry.apply(open_key_event(entry.envelope, self.verifier.public_key), index)
                except (InvalidInput, VerificationError):
                    pass
                continue
            self._entry(index, entry)
        for (vendor, actor), acts in self.human_acts.items():
            self._rate(vendor, actor, acts)

    def _digests(self, index: int) -> bytes:
        row = self.conn.execute("SELECT digests FROM batches WHERE idx = ?", (index,)).fetchone()
        return row[0] if row else b""

    def _entry(self, index: int, entry: LogEntry) -> None:
        batch = self._digests(index) if entry.kind is EntryKind.ATTESTATION else b""
        try:
            att = check_attestation(
                entry.envelope, batch, max_subjects=_NO_LIMIT, max_batch=_NO_LIMIT,
                max_envelope_bytes=MAX_ENVELOPE_BYTES,
            )
        except InvalidInput:
            return
        vendor = entry.submitter
        self._revoked_key(index, entry, att.envelope)
        if not isinstance(att.predicate, ProvenancePredicate):
            self.vendors[vendor].revocations_issued += 1
            for target, _ in parse_revocation_targets(att.statement):
                author = self.author.get(target)
                if author is not None and author[0] == vendor:
                    self.vendors[vendor].attestations_revoked += 1
                    self.reviewers[author].attestations_revoked += 1
            return
        pred = att.predicate
        actor = pred.actor_id
        blob = att.batch_digests
        digests = [blob[i : i + 32] for i in range(0, len(blob), 32)] if blob else list(att.sample_digests)
        count = len(digests)
        claim = str(pred.claim)
        for activity in (self.vendors[vendor], self.reviewers[(vendor, actor)]):
            activity.attestations += 1
            activity.samples += count
            activity.claims[claim] += 1
            activity.claim_samples[claim] += count
            activity.times_ms.append(entry.integrated_ms)
        self.author[index] = (vendor, actor)
        performed = _ms(pred.performed_at)
        if performed > entry.integrated_ms + int(self.t.future_skew.total_seconds() * 1000):
            self.anomalies.append(Anomaly(
                AnomalyKind.PERFORMED_IN_FUTURE, index, vendor, actor,
                f"performedAt {_iso(performed)} is after the entry was integrated at "
                f"{_iso(entry.integrated_ms)}",
                (("performed_at", _iso(performed)), ("integrated_at", _iso(entry.integrated_ms))),
            ))
        if pred.claim in HUMAN_CLAIMS:
            self.human_acts[(vendor, actor)].append(_Validation(performed, count, index))
        if pred.claim is Claim.HUMAN_VALIDATED:
            self._validation(index, entry, vendor, actor, performed, digests)
        # First appearance: the earliest time any entry shows the sample existed,
        # its integration or the act it records, whichever is earlier.
        seen = min(entry.integrated_ms, performed)
        for digest in digests:
            if seen < self.first_seen.get(digest, seen + 1):
                self.first_seen[digest] = seen

    def _validation(
        self, index: int, entry: LogEntry, vendor: str, actor: str, performed: int, digests: list[bytes]
    ) -> None:
        early = [d for d in digests if d in self.first_seen and performed < self.first_seen[d]]
        if early:
            first = min(self.first_seen[d] for d in early)
            self.anomalies.append(Anomaly(
                AnomalyKind.BEFORE_FIRST_APPEARANCE, index, vendor, actor,
                f"{len(early)} sample(s) validated at {_iso(performed)}, before they first "
                f"appeared in the log at {_iso(first)}",
                (("samples", len(early)), ("example_digest", early[0].hex()),
                 ("performed_at", _iso(performed)), ("first_appearance", _iso(first))),
            ))
        for digest in digests:
            key = (vendor, actor, digest)
            self.validations[key] += 1
            if self.validations[key] == self.t.max_repeats + 1:
                self.anomalies.append(Anomaly(
                    AnomalyKind.REPEATED_VALIDATION, index, vendor, actor,
                    f"sample {digest.hex()[:16]}… validated {self.t.max_repeats + 1} times by the "
                    f"same reviewer (limit {self.t.max_repeats})",
                    (("digest", digest.hex()), ("count", self.t.max_repeats + 1)),
                ))

    def _revoked_key(self, index: int, entry: LogEntry, envelope: Any) -> None:
        for key in self.registry.vendor_keys(entry.submitter):
            if key.revoked_index is None or key.revoked_index >= index:
                continue
            try:
                verify_envelope(envelope, key.public_key)
            except VerificationError:
                continue
            self.anomalies.append(Anomaly(
                AnomalyKind.REVOKED_KEY_SIGNATURE, index, entry.submitter, "",
                f"signed with key {key.key_id[:16]}…, revoked at entry {key.revoked_index}",
                (("key_id", key.key_id), ("revoked_index", key.revoked_index)),
            ))

    def _rate(self, vendor: str, actor: str, acts: list[_Validation]) -> None:
        """Peak samples within any one-hour window of performedAt, if over the limit."""
        ordered = sorted(acts, key=lambda a: (a.performed_ms, a.index))
        window: deque[_Validation] = deque()
        total = 0
        peak, peak_end, peak_start = 0, ordered[0], ordered[0]
        for act in ordered:
            window.append(act)
            total += act.samples
            while act.performed_ms - window[0].performed_ms >= 3_600_000:
                total -= window.popleft().samples
            if total > peak:
                peak, peak_end, peak_start = total, act, window[0]
        if peak > self.t.max_per_hour:
            self.anomalies.append(Anomaly(
                AnomalyKind.REVIEWER_RATE, peak_end.index, vendor, actor,
                f"{peak} samples attested as human work within one hour "
                f"({_iso(peak_start.performed_ms)} to {_iso(peak_end.performed_ms)}); "
                f"limit {self.t.max_per_hour}/hour",
                (("samples", peak), ("from", _iso(peak_start.performed_ms)),
                 ("to", _iso(peak_end.performed_ms)), ("first_index", peak_start.index)),
            ))


def _bucketing(times: list[int]) -> tuple[str, str]:
    """Hourly buckets for a log spanning under two days, else daily."""
    if times and max(times) - min(times) < 2 * 86_400_000:
        return "hour", "%Y-%m-%dT%H:00Z"
    return "day", "%Y-%m-%d"


def build_report(path: Path, verifier: NoteVerifier, thresholds: Thresholds = Thresholds()) -> Report:
    conn = open_readonly(path)
    try:
        builder = _Builder(conn, verifier, thresholds)
        builder.run()
    finally:
        conn.close()
    all_times = [t for a in builder.vendors.values() for t in a.times_ms]
    bucket, fmt = _bucketing(all_times)
    labels: set[str] = set()
    for activity in [*builder.vendors.values(), *builder.reviewers.values()]:
        for ms in activity.times_ms:
            label = _when(ms).strftime(fmt)
            activity.by_time[label] += 1
            labels.add(label)
        activity.times_ms = []
    buckets = _fill(sorted(labels), bucket, fmt)
    counts = Counter(str(a.kind) for a in builder.anomalies)
    listed: Counter[str] = Counter()
    anomalies = []
    for anomaly in sorted(builder.anomalies, key=lambda a: (a.index, str(a.kind))):
        listed[str(anomaly.kind)] += 1
        if listed[str(anomaly.kind)] <= MAX_LISTED:
            anomalies.append(anomaly)
    return Report(
        builder.entries, bucket, buckets, dict(builder.vendors), dict(builder.reviewers), tuple(anomalies),
        thresholds, dict(counts),
    )


def _fill(labels: list[str], bucket: str, fmt: str) -> tuple[str, ...]:
    """Every bucket from the first to the last, so quiet periods show as zero."""
    if not labels:
        return ()
    parse = "%Y-%m-%dT%H:00Z" if bucket == "hour" else "%Y-%m-%d"
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    current, last = datetime.strptime(labels[0], parse), datetime.strptime(labels[-1], parse)
    out = []
    while current <= last and len(out) < 10_000:
        out.append(current.strftime(fmt))
        current += step
    return tuple(out)


def _cell(text: str) -> str:
    """Reviewer IDs are free text: keep them from breaking Markdown tables or emphasis."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def render_markdown(report: Report) -> str:
    lines = [
        "# anchorlog audit report", "",
        f"Entries: {report.entries}. Activity bucketed by {report.bucket} of integration time (UTC).", "",
        "## Vendors", "",
        "| vendor | attestations | samples | claims | revocations issued | attestations revoked |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for vendor, a in sorted(report.vendors.items()):
        claims = ", ".join(f"{c}: {n}" for c, n in sorted(a.claims.items()))
        lines.append(
            f"| {vendor} | {a.attestations} | {a.samples} | {claims} | {a.revocations_issued} | "
            f"{a.attestations_revoked} |"
        )
    lines += ["", "## Reviewers", "", "| vendor | reviewer | attestations | samples | claims | revoked |",
              "| --- | --- | ---: | ---: | --- | ---: |"]
    for (vendor, actor), a in sorted(report.reviewers.items()):
        claims = ", ".join(f"{c}: {n}" for c, n in sorted(a.claims.items()))
        lines.append(
            f"| {vendor} | {_cell(actor)} | {a.attestations} | {a.samples} | {claims} | {a.attestations_revoked} |"
        )
    lines += ["", "## Anomalies", ""]
    if not report.anomalies:
        lines.append("None found.")
    else:
        lines.append("Counts: " + ", ".join(f"{k}: {n}" for k, n in sorted(report.anomaly_counts.items())))
        lines.append("")
    for anomaly in report.anomalies:
        who = anomaly.vendor + (f"/{_cell(anomaly.actor)}" if anomaly.actor else "")
        lines.append(f"- **{anomaly.kind}** at entry {anomaly.index} ({who}): {anomaly.message}")
    return "\n".join(lines) + "\n"


def render_html(report: Report) -> str:
    vendor_series = {v: dict(a.by_time) for v, a in report.vendors.items()}
    reviewer_series = {f"{v}/{r}": dict(a.by_time) for (v, r), a in report.reviewers.items()}
    sections = [
        ("Attestations per vendor", activity_svg(
            f"Attestations per {report.bucket}, by vendor", report.buckets, vendor_series)),
        ("Attestations per reviewer", activity_svg(
            f"Attestations per {report.bucket}, by reviewer (top 8)", report.buckets, reviewer_series)),
        ("Anomalies", html_table(
            ["kind", "entry", "vendor", "reviewer", "message"],
            [[str(a.kind), a.index, a.vendor, a.actor, a.message] for a in report.anomalies],
        ) if report.anomalies else "<p>None found.</p>"),
    ]
    return html_page("anchorlog audit report", sections)


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "html": out_dir / "activity.html",
    }
    paths["json"].write_text(json.dumps(report.to_json(), indent=2) + "\n")
    paths["markdown"].write_text(render_markdown(report))
    paths["html"].write_text(render_html(report))
    return paths
