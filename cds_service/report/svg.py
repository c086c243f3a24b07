"""Weekly rate charts as inline SVG: no script, no font, no external reference.

A point is drawn only where its rate may be shown (see `publish.rate`); a suppressed week breaks the
line. Colours are told apart by dash pattern too (solid: accepted, dashed: overridden).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 42


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str  # styled by the page's stylesheet (stroke colour, dash)
    values: Sequence[float | None]  # one per week, 0..1


def _x(index: int, count: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span / 2 if count == 1 else span * index / (count - 1))


def _y(value: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value)


def _segments(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for index, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((index, value))
    if current:
        runs.append(current)
    return runs


def rate_chart(title: str, weeks: Sequence[str], series: Sequence[Series]) -> str:
    """An SVG line chart of weekly rates (0-100 %); `weeks` are the x labels (week starts)."""
    count = len(weeks)
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in (0, 25, 50, 75, 100):
        y = _y(tick / 100)
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}%</text>')
    step = max(1, -(-count // 8))  # at most ~8 labels
    for index, week in enumerate(weeks):
        last = index == count - 1
        if index % step == 0 or (last and index % step >= step / 2):  # the last one, unless it would overlap
            anchor = "end" if last and count > 1 else "middle"  # so the last one stays inside
            label = escape(week[5:])  # "MM-DD"
            parts.append(
                f'<text class="axis" x="{_x(index, count):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="{anchor}">{label}</text>'
            )
    drawn = 0
    for one in series:
        for run in _segments(one.values):
            points = " ".join(f"{_x(i, count):.1f},{_y(v):.1f}" for i, v in run)
            if len(run) > 1:
                parts.append(f'<polyline class="line {one.css_class}" points="{points}"/>')
            for i, v in run:
                drawn += 1
                parts.append(
                    f'<circle class="dot {one.css_class}" cx="{_x(i, count):.1f}" cy="{_y(v):.1f}" r="3">'
                    f"<title>week of {escape(weeks[i])}: {escape(one.name)} {v * 100:.0f}%</title></circle>"
                )
    legend_x = LEFT
    for one in series:
        y = HEIGHT - 10
        parts.append(
            f'<line class="line {one.css_class}" x1="{legend_x}" y1="{y - 4}" x2="{legend_x + 22}" y2="{y - 4}"/>'
        )
        parts.append(f'<text class="axis" x="{legend_x + 28}" y="{y}">{escape(one.name)}</text>')
        legend_x += 40 + 7 * len(one.name)
    if drawn == 0:
        parts.append(
            f'<text class="empty" x="{WIDTH / 2:.0f}" y="{_y(0.5):.1f}" text-anchor="middle">'
            "no week with enough cards to show a rate (fewer than 5)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
