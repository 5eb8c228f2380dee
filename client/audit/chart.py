"""A self-contained HTML page with an inline SVG line chart (no scripts, no network)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 900, 360, 60, 180, 30, 70


def activity_svg(
    title: str, buckets: Sequence[str], series: Mapping[str, Mapping[str, int]], *, max_series: int = 8
) -> str:
    """One polyline per series (largest totals first) of counts per time bucket."""
    chosen = sorted(series, key=lambda name: (-sum(series[name].values()), name))[:max_series]
    peak = max((series[n].get(b, 0) for n in chosen for b in buckets), default=0) or 1
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / max(len(buckets) - 1, 1)

    def x(i: int) -> float:
        return _LEFT + (i * step if len(buckets) > 1 else plot_w / 2)

    def y(v: int) -> float:
        return _TOP + plot_h - v / peak * plot_h

    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
            f'aria-label="{escape(title)}">'
        ),
        f'<text x="{_LEFT}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_LEFT + plot_w}" y2="{_TOP + plot_h}" stroke="#333"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" stroke="#333"/>',
    ]
    for frac in (0, 0.5, 1):
        value = round(peak * frac)
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" font-size="11" text-anchor="end">{value}</text>'
        )
    label_every = max(1, len(buckets) // 8)
    for i, bucket in enumerate(buckets):
        if i % label_every == 0 or i == len(buckets) - 1:
            parts.append(
                f'<text x="{x(i):.1f}" y="{_TOP + plot_h + 16}" font-size="10" text-anchor="end" '
                f'transform="rotate(-30 {x(i):.1f} {_TOP + plot_h + 16})">{escape(bucket)}</text>'
            )
    for n, name in enumerate(chosen):
        colour = _COLOURS[n % len(_COLOURS)]
        points = " ".join(f"{x(i):.1f},{y(series[name].get(b, 0)):.1f}" for i, b in enumerate(buckets))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        for i, b in enumerate(buckets):
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(series[name].get(b, 0)):.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(name)} {escape(b)}: {series[name].get(b, 0)}</title></circle>"
            )
        ly = _TOP + 14 * n
        parts.append(f'<rect x="{_W - _RIGHT + 12}" y="{ly}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{_W - _RIGHT + 26}" y="{ly + 9}" font-size="11">{escape(name[:24])}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def html_page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """``sections`` are (heading, trusted SVG/HTML fragment) pairs built by this module."""
    body = "\n".join(f"<h2>{escape(h)}</h2>\n{fragment}" for h, fragment in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px}</style></head>\n"
        f"<body><h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
