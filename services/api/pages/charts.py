"""The per-round charts (held-out accuracy, kept labels right) as inline SVG, drawn on the server: no chart library, no build step."""

from __future__ import annotations

from collections import defaultdict
from html import escape

from markupsafe import Markup

from services.api.models import AccuracyPoint, KeptPoint

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 44, 150, 14, 34
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d")


def accuracy_chart(points: list[AccuracyPoint]) -> Markup:
    """Accuracy (0..1) against round, one line per (family, difficulty); an empty-state note without points."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for point in sorted(points, key=lambda p: (p.family, p.difficulty)):
        series[f"{point.family} d{point.difficulty}"][point.round] = point.accuracy
    return line_chart(series, chart_id="accuracy", what="held-out accuracy per round and difficulty",
                      empty="No evaluations yet: the chart appears after the first held-out evaluation.")


def kept_chart(points: list[KeptPoint], bound: float) -> Markup:
    """The share of each round's kept labels that are right (where the truth is known), with the bound drawn and
    the rounds below it marked."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for point in points:
        if point.precision is not None:
            series[f"{point.family} kept right"][point.round] = point.precision
    return line_chart(series, chart_id="kept", what="kept labels right per round", bound=bound,
                      empty="No kept labels with a known answer yet.")


def line_chart(series: dict[str, dict[int, float]], *, chart_id: str, what: str, empty: str,
               bound: float | None = None) -> Markup:
    """Values (0..1) against round, one line per series; with ``bound``, a dashed line there and the points below it
    drawn large and red."""
    if not series:
        return Markup(f'<p class="empty" id="{chart_id}-empty">{escape(empty)}</p>')
    rounds = sorted({r for values in series.values() for r in values})
    low, high = rounds[0], max(rounds[-1], rounds[0] + 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(round_no: int) -> float:
        return LEFT + (round_no - low) / (high - low) * plot_w

    def y(accuracy: float) -> float:
        return TOP + (1.0 - max(0.0, min(1.0, accuracy))) * plot_h

    parts = [
        f'<svg id="{chart_id}-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(what)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    if bound is not None:
        parts.append(f'<line class="bound" stroke="#6b7280" stroke-dasharray="4 3" x1="{LEFT}" x2="{LEFT + plot_w}" '
                     f'y1="{y(bound):.1f}" y2="{y(bound):.1f}"><title>bound {bound:.2f}</title></line>')
    step = max(1, len(rounds) // 12)
    for round_no in rounds[::step]:
        parts.append(
            f'<text class="tick" x="{x(round_no):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{round_no}</text>"
        )
    parts.append(f'<text class="axis" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle">round</text>')
    for index, (name, values) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        coords = " ".join(f"{x(r):.1f},{y(a):.1f}" for r, a in sorted(values.items()))
        label = escape(name)
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}">'
            f"<title>{label}</title></polyline>"
        )
        for r, a in sorted(values.items()):
            below = bound is not None and a < bound
            mark = ' r="5" fill="#dc2626" class="below"' if below else f' r="3" fill="{color}"'
            parts.append(
                f'<circle cx="{x(r):.1f}" cy="{y(a):.1f}"{mark}><title>{label}, round {r}: {a:.3f}'
                f'{" (below the bound)" if below else ""}</title></circle>'
            )
        if index < 14:
            legend_y = TOP + 10 + index * 16
            parts.append(f'<rect x="{WIDTH - RIGHT + 12}" y="{legend_y - 8}" width="10" height="10" fill="{color}"/>')
            parts.append(f'<text class="legend" x="{WIDTH - RIGHT + 28}" y="{legend_y + 1}">{label}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
