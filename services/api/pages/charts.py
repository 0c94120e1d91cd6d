"""The accuracy-per-round chart as inline SVG, drawn on the server: no chart library, no build step."""

from __future__ import annotations

from collections import defaultdict
from html import escape

from markupsafe import Markup

from services.api.models import AccuracyPoint

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 44, 150, 14, 34
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d")


def accuracy_chart(points: list[AccuracyPoint]) -> Markup:
    """Accuracy (0..1) against round, one line per (family, difficulty); an empty-state note without points."""
    if not points:
        return Markup(
            '<p class="empty" id="accuracy-empty">No evaluations yet: the chart appears after the first '
            "held-out evaluation.</p>"
        )
    series: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    for point in points:
        series[(point.family, point.difficulty)][point.round] = point.accuracy
    rounds = sorted({p.round for p in points})
    low, high = rounds[0], max(rounds[-1], rounds[0] + 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(round_no: int) -> float:
        return LEFT + (round_no - low) / (high - low) * plot_w

    def y(accuracy: float) -> float:
        return TOP + (1.0 - max(0.0, min(1.0, accuracy))) * plot_h

    parts = [
        f'<svg id="accuracy-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-label="held-out accuracy per round and difficulty" xmlns="http://www.w3.org/2000/svg">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    step = max(1, len(rounds) // 12)
    for round_no in rounds[::step]:
        parts.append(
            f'<text class="tick" x="{x(round_no):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{round_no}</text>"
        )
    parts.append(f'<text class="axis" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle">round</text>')
    for index, ((family, difficulty), values) in enumerate(sorted(series.items())):
        color = COLORS[index % len(COLORS)]
        coords = " ".join(f"{x(r):.1f},{y(a):.1f}" for r, a in sorted(values.items()))
        label = escape(f"{family} d{difficulty}")
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}">'
            f"<title>{label}</title></polyline>"
        )
        for r, a in sorted(values.items()):
            parts.append(
                f'<circle cx="{x(r):.1f}" cy="{y(a):.1f}" r="3" fill="{color}"><title>{label}, round {r}: '
                f"{a:.3f}</title></circle>"
            )
        if index < 14:
            legend_y = TOP + 10 + index * 16
            parts.append(f'<rect x="{WIDTH - RIGHT + 12}" y="{legend_y - 8}" width="10" height="10" fill="{color}"/>')
            parts.append(f'<text class="legend" x="{WIDTH - RIGHT + 28}" y="{legend_y + 1}">{label}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
