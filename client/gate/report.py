"""Reports of a gate decision: JSON, a Markdown summary and a self-contained HTML chart.

The HTML file has the status mix of every slice as inline SVG: no script, no
stylesheet or font from the network, so it opens anywhere and can be archived
with the model it vetted.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from anchorlog.client.gate.check import GateResult
from anchorlog.ledger.status import Status

STATUS_COLOURS = {
    Status.HUMAN_CREATED: "#1b7837",
    Status.HUMAN_EDITED: "#5aae61",
    Status.HUMAN_VALIDATED: "#a6dba0",
    Status.SYNTHETIC: "#c2a5cf",
    Status.REVOKED: "#d6604d",
    Status.UNKNOWN: "#bababa",
}


# Dark to light green from the strongest human claim to a validation only.
CHART_ORDER = (
    Status.HUMAN_CREATED,
    Status.HUMAN_EDITED,
    Status.HUMAN_VALIDATED,
    Status.SYNTHETIC,
    Status.REVOKED,
    Status.UNKNOWN,
)


def _pct(value: float) -> str:
    return f"{value:.2%}"


def _order(result: GateResult) -> list[Status]:
    """Counted statuses first, so the grounded share is the left part of every bar."""
    counted = [s for s in CHART_ORDER if s in result.policy.counted_statuses]
    return counted + [s for s in CHART_ORDER if s not in result.policy.counted_statuses]


def to_markdown(result: GateResult) -> str:
    cp = result.checkpoint
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"# Dataset gate: {verdict}",
        "",
        (
            f"- Manifest: `{result.manifest}` ({result.total} samples, dataset digest "
            f"`{result.dataset_digest.hex()}`)"
        ),
        (
            f"- Human-grounded: **{result.grounded} / {result.total} ({_pct(result.fraction)})**, "
            f"required {_pct(result.policy.min_fraction)}"
        ),
        f"- Verified against checkpoint `{cp.checkpoint.origin}` size {cp.size}, root `{cp.root_hash.hex()}`",
        f"- Checked at {result.checked_at.isoformat()} in {result.elapsed_seconds:.1f} s",
        f"- Policy: {result.policy.describe()}",
        "",
    ]
    if result.failures:
        lines += ["## Failures", ""] + [f"- {f}" for f in result.failures] + [""]
    order = _order(result)
    lines += ["## Status mix", "", "| status | samples | share |", "| --- | ---: | ---: |"]
    for status in order:
        n = result.statuses.get(status.value, 0)
        lines.append(f"| {status.value} | {n} | {_pct(n / result.total)} |")
    lines.append("")
    if result.slices:
        lines += [
            f"## Slices by `{result.policy.slice_column}` (threshold {_pct(result.policy.slice_threshold)})",
            "",
            "| slice | samples | human-grounded | share | result | "
            + " | ".join(s.value for s in order)
            + " |",
            "| --- | ---: | ---: | ---: | --- | " + " | ".join("---:" for _ in order) + " |",
        ]
        for s in result.slices:
            cells = " | ".join(str(s.statuses.get(st.value, 0)) for st in order)
            name = s.name.replace("|", "\\|")
            lines.append(
                f"| {name} | {s.total} | {s.grounded} | {_pct(s.fraction)} | "
                f"{'pass' if s.passed else '**FAIL**'} | {cells} |"
            )
        lines.append("")
    if result.vendors:
        lines += [
            "## Vendors",
            "",
            "| vendor | trusted | samples attested | unrevoked | all revoked | claims |",
            "| --- | --- | ---: | ---: | ---: | --- |",
        ]
        for v in result.vendors:
            claims = ", ".join(f"{c}: {n}" for c, n in v.claims.items())
            lines.append(
                f"| {v.vendor} | {'yes' if v.trusted else 'no (ignored)'} | {v.samples} | {v.effective} | "
                f"{v.revoked} | {claims} |"
            )
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class _Row:
    label: str
    total: int
    statuses: dict[str, int]
    fraction: float
    threshold: float
    passed: bool


def _chart_rows(result: GateResult) -> list[_Row]:
    rows = [
        _Row(
            "all samples",
            result.total,
            result.statuses,
            result.fraction,
            result.policy.min_fraction,
            result.fraction >= result.policy.min_fraction,
        )
    ]
    rows += [
        _Row(s.name, s.total, s.statuses, s.fraction, s.threshold, s.passed) for s in result.slices
    ]
    return rows


def to_svg(result: GateResult) -> str:
    order = _order(result)
    label_w, bar_w, info_w, row_h, bar_h, top = 180, 520, 170, 34, 22, 40
    rows = _chart_rows(result)
    width = label_w + bar_w + info_w
    height = top + row_h * len(rows) + 40
    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="12">'
        ),
        "<title>Provenance status mix per slice</title>",
    ]
    x = label_w
    for status in order:  # legend
        out.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{STATUS_COLOURS[status]}"/>')
        out.append(f'<text x="{x + 16}" y="18">{status.value}</text>')
        x += 16 + 7 * len(status.value) + 14
    for i, row in enumerate(rows):
        y = top + i * row_h
        label = row.label if len(row.label) <= 24 else row.label[:23] + "…"
        out.append(
            f'<text x="{label_w - 8}" y="{y + bar_h * 0.7:.1f}" text-anchor="end">{html.escape(label)}'
            f"<title>{html.escape(row.label)}</title></text>"
        )
        x0 = float(label_w)
        for status in order:
            n = row.statuses.get(status.value, 0)
            if not n:
                continue
            w = bar_w * n / row.total
            out.append(
                f'<rect x="{x0:.2f}" y="{y}" width="{w:.2f}" height="{bar_h}" fill="{STATUS_COLOURS[status]}">'
                f"<title>{html.escape(row.label)}: {status.value} {n} ({_pct(n / row.total)})</title></rect>"
            )
            x0 += w
        tx = label_w + bar_w * row.threshold
        out.append(
            f'<line x1="{tx:.2f}" y1="{y - 3}" x2="{tx:.2f}" y2="{y + bar_h + 3}" stroke="#000" '
            f'stroke-width="2" stroke-dasharray="3,2"><title>threshold {_pct(row.threshold)}</title></line>'
        )
        colour = "#1b7837" if row.passed else "#b2182b"
        verdict = "pass" if row.passed else "FAIL"
        out.append(
            f'<text x="{label_w + bar_w + 8}" y="{y + bar_h * 0.7:.1f}" fill="{colour}">'
            f"{_pct(row.fraction)} of {row.total} · {verdict}</text>"
        )
    out.append(
        f'<text x="{label_w}" y="{height - 12}" fill="#444">dashed line: required human-grounded share</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


def to_html(result: GateResult) -> str:
    verdict = "PASSED" if result.passed else "FAILED"
    cp = result.checkpoint
    failures = "".join(f"<li>{html.escape(f)}</li>" for f in result.failures)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Dataset gate {verdict}: {html.escape(result.manifest)}</title>",
            (
                "<style>body{font-family:sans-serif;margin:2em;max-width:60em}"
                ".pass{color:#1b7837}.fail{color:#b2182b}code{font-size:90%}</style>"
            ),
            "</head><body>",
            f'<h1>Dataset gate: <span class="{"pass" if result.passed else "fail"}">{verdict}</span></h1>',
            (
                f"<p>{result.grounded} of {result.total} samples human-grounded ({_pct(result.fraction)}); "
                f"required {_pct(result.policy.min_fraction)}.</p>"
            ),
            f"<p>Policy: {html.escape(result.policy.describe())}.</p>",
            (
                f"<p>Verified against checkpoint <code>{html.escape(cp.checkpoint.origin)}</code> size {cp.size}, "
                f"root <code>{cp.root_hash.hex()}</code>, at {result.checked_at.isoformat()}.</p>"
            ),
            f'<ul class="fail">{failures}</ul>' if failures else "",
            to_svg(result),
            "</body></html>",
            "",
        ]
    )


def write_reports(result: GateResult, directory: Path) -> dict[str, Path]:
    """report.json, report.md and report.html in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "report.json",
        "markdown": directory / "report.md",
        "html": directory / "report.html",
    }
    paths["json"].write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(to_markdown(result), encoding="utf-8")
    paths["html"].write_text(to_html(result), encoding="utf-8")
    return paths
