"""Charts as SVG rendered on the server: no JavaScript, nothing fetched from elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 36


@dataclass
class Marker:
    at: datetime
    label: str
    kind: str  # "regression" or "rollback"


@dataclass
class LineChart:
    title: str
    unit: str
    points: list[tuple[datetime, float]]
    band: tuple[float, float] | None = None  # the baseline band (low, high)
    baseline: float | None = None
    markers: list[Marker] = field(default_factory=list)
    y_min: float | None = None
    y_max: float | None = None


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def render(chart: LineChart) -> str:
    """The chart as an inline SVG document fragment (safe to embed: every text is escaped)."""
    label = escape(chart.title)
    if not chart.points:
        return (
            f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {WIDTH} 60" '
            f'xmlns="http://www.w3.org/2000/svg"><text x="10" y="35" class="empty">No data in this period</text></svg>'
        )
    times = [t.timestamp() for t, _ in chart.points]
    values = [v for _, v in chart.points]
    extra = [*values, *(chart.band or ()), *([chart.baseline] if chart.baseline is not None else [])]
    low = chart.y_min if chart.y_min is not None else min(extra)
    high = chart.y_max if chart.y_max is not None else max(extra)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    t0 = min([*times, *(m.at.timestamp() for m in chart.markers)])
    t1 = max([*times, *(m.at.timestamp() for m in chart.markers)])
    if t1 - t0 < 1:
        t1 = t0 + 1

    def x(t: float) -> float:
        return LEFT + (t - t0) / (t1 - t0) * (WIDTH - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * (HEIGHT - TOP - BOTTOM)

    parts = [
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{label}</title>",
    ]
    for i in range(5):
        value = low + (high - low) * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
    for t, anchor in ((t0, "start"), (t1, "end")):
        stamp = datetime.fromtimestamp(t, tz=UTC).strftime("%m-%d %H:%M")
        parts.append(f'<text class="axis" x="{x(t):.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}">{stamp}</text>')
    if chart.band is not None:
        top, bottom = y(chart.band[1]), y(chart.band[0])
        parts.append(
            f'<rect class="band" data-role="baseline-band" x="{LEFT}" y="{top:.1f}" '
            f'width="{WIDTH - LEFT - RIGHT}" height="{max(bottom - top, 1):.1f}"><title>baseline band '
            f"{_fmt(chart.band[0])} to {_fmt(chart.band[1])} {escape(chart.unit)}</title></rect>"
        )
    if chart.baseline is not None:
        parts.append(
            f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(chart.baseline):.1f}" '
            f'y2="{y(chart.baseline):.1f}"/>'
        )
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for i, (t, v) in enumerate(zip(times, values, strict=True))
    )
    parts.append(f'<path class="series" d="{path}"/>')
    for t, v in zip(times, values, strict=True):
        parts.append(f'<circle class="point" cx="{x(t):.1f}" cy="{y(v):.1f}" r="2"/>')
    for marker in chart.markers:
        mx = x(marker.at.timestamp())
        label_y = TOP + (22 if marker.kind == "rollback" else 10)  # two markers at one time stay readable
        parts.append(
            f'<g class="marker {escape(marker.kind)}" data-role="{escape(marker.kind)}-marker">'
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>'
            f'<text x="{mx + 3:.1f}" y="{label_y}">{escape(marker.label)}</text>'
            f"<title>{escape(marker.label)} at {marker.at.isoformat(timespec='minutes')}</title></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
