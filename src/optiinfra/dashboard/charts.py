"""Charts as SVG rendered on the server: nothing fetched from elsewhere. Every chart spans the page's width (a
viewBox scaled to 100 %), has a labelled time axis and a value axis with its unit, never leaves the metric's domain
(scores and rates 0..1, latency >= 0), and carries each value in a <title> (the browser's tooltip) and in data-
attributes that /static/charts.js reads to show a hover read-out. Line charts and the change lanes share one
horizontal geometry, so a lane drawn under a chart over the same period lines up with it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

WIDTH = 1200
LEFT, RIGHT, BOTTOM = 100, 20, 46
PLOT_HEIGHT = 200
LABEL_ROW = 14  # height of one row of marker labels above the plot
MAX_LABEL_ROWS = 4
CHAR_WIDTH = 6.2  # the width of one character of a 10 px label (an estimate that errs wide)
LANE_HEIGHT = 24

# Tick spacings for the time axis, the first that gives at most MAX_TICKS ticks wins.
TICK_STEPS = [
    timedelta(seconds=s)
    for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
]
MAX_TICKS = 9


@dataclass
class Marker:
    at: datetime
    label: str
    kind: str  # "regression" or "rollback"
    href: str | None = None


@dataclass
class LineChart:
    title: str
    unit: str  # shown on the value axis and with every value ("ms", "score", "rate")
    points: list[tuple[datetime, float]]
    band: tuple[float, float] | None = None  # the baseline band (low, high)
    baseline: float | None = None
    markers: list[Marker] = field(default_factory=list)
    y_min: float | None = None  # the metric's domain: the value axis never goes beyond it
    y_max: float | None = None
    start: datetime | None = None  # the period shown (the chosen range); the data's extent when not given
    end: datetime | None = None
    bucket: timedelta | None = None  # the points' spacing: a longer gap breaks the line
    from_zero: bool = False  # the value axis starts at 0 (rates: a small rate should look small)


@dataclass
class Span:
    """One bar of a change lane: an optimization or a rollout, from its start to its end (None: still going)."""

    start: datetime
    end: datetime | None
    label: str
    kind: str  # a status, used as the bar's class
    href: str | None = None


@dataclass
class Lane:
    name: str
    spans: list[Span]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _with_unit(value: float, unit: str) -> str:
    return f"{_fmt(value)} {unit}" if unit in {"ms", "%"} else _fmt(value)


@dataclass(frozen=True)
class TimeAxis:
    """The horizontal geometry shared by charts and lanes: `t0`..`t1` (epoch seconds) across the plot."""

    t0: float
    t1: float
    left: int = LEFT

    @classmethod
    def over(cls, start: datetime, end: datetime, left: int = LEFT) -> TimeAxis:
        t0, t1 = start.timestamp(), end.timestamp()
        return cls(t0, t1 if t1 - t0 >= 1 else t0 + 1, left)

    def x(self, at: float) -> float:
        return self.left + (at - self.t0) / (self.t1 - self.t0) * (WIDTH - self.left - RIGHT)

    def ticks(self) -> list[tuple[float, str]]:
        """Evenly spaced, round times (UTC) with their labels: hours within a day, the date at midnight."""
        span = self.t1 - self.t0
        step = next((s for s in TICK_STEPS if span / s.total_seconds() <= MAX_TICKS), TICK_STEPS[-1])
        seconds = step.total_seconds()
        first = (self.t0 // seconds + 1) * seconds
        ticks = []
        at = first
        while at < self.t1:
            moment = datetime.fromtimestamp(at, tz=UTC)
            if seconds >= 86400 or (moment.hour == 0 and moment.minute == 0 and moment.second == 0):
                text = moment.strftime("%b %d")
            elif seconds < 60:
                text = moment.strftime("%H:%M:%S")
            else:
                text = moment.strftime("%H:%M")
            ticks.append((at, text))
            at += seconds
        return ticks

    def draw(self, top: float, bottom: float) -> list[str]:
        """Vertical grid lines, tick labels under `bottom` and the axis title."""
        parts = []
        for at, text in self.ticks():
            x = self.x(at)
            parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{bottom:.1f}"/>')
            parts.append(
                f'<text class="axis tick" x="{x:.1f}" y="{bottom + 14:.1f}" text-anchor="middle">{text}</text>'
            )
        shown = "%Y-%m-%d %H:%M:%S" if self.t1 - self.t0 < 600 else "%Y-%m-%d %H:%M"
        start = datetime.fromtimestamp(self.t0, tz=UTC).strftime(shown)
        end = datetime.fromtimestamp(self.t1, tz=UTC).strftime(shown)
        parts.append(
            f'<text class="axis title" data-role="time-axis" x="{(self.left + WIDTH - RIGHT) / 2:.1f}" '
            f'y="{bottom + 32:.1f}" text-anchor="middle">time (UTC), {start} to {end}</text>'
        )
        return parts


def _fit(text: str, width: float) -> str:
    """`text` shortened with an ellipsis to fit `width` (estimated for an 11 px label)."""
    most = max(int(width / (CHAR_WIDTH + 0.4)), 4)
    return text if len(text) <= most else text[: most - 1] + "…"


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart) between `low` and `high`, at most `most` of them."""
    span = high - low
    if span <= 0:
        return [low]
    power = 10 ** math.floor(math.log10(span / most))
    # The finest round step that gives at most `most` ticks.
    step = next(
        f * power * scale
        for scale in (1, 10, 100)
        for f in (1, 2, 5)
        if math.floor(high / (f * power * scale) + 1e-9) - math.ceil(low / (f * power * scale) - 1e-9) + 1 <= most
    )
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def place_labels(xs: list[float], labels: list[str]) -> list[tuple[int, str]]:
    """(row, anchor) for each marker label so that no two labels overlap and none leaves the plot: a label goes in
    the first row where it clears the previous label, drawn to the right of its line, or to the left near the right
    edge. Labels that find no row within MAX_LABEL_ROWS get row -1 (not drawn: their line's <title> tells)."""
    row_ends: list[float] = []
    placed = []
    for x, label in zip(xs, labels, strict=True):
        width = len(label) * CHAR_WIDTH + 6
        anchor = "start" if x + width <= WIDTH - RIGHT else "end"
        left, right = (x + 3, x + 3 + width) if anchor == "start" else (x - 3 - width, x - 3)
        row = next((i for i, end in enumerate(row_ends) if left > end + 4), None)
        if row is None and len(row_ends) < MAX_LABEL_ROWS:
            row_ends.append(0.0)
            row = len(row_ends) - 1
        if row is None:
            placed.append((-1, anchor))
            continue
        row_ends[row] = right
        placed.append((row, anchor))
    return placed


def label_extent(x: float, label: str, anchor: str) -> tuple[float, float]:
    """The horizontal extent of a marker label drawn at line `x` (as `place_labels` estimates it)."""
    width = len(label) * CHAR_WIDTH + 6
    return (x + 3, x + 3 + width) if anchor == "start" else (x - 3 - width, x - 3)


def _empty(label: str, text: str = "No data in this period") -> str:
    return (
        f'<svg class="chart" role="img" aria-label={quoteattr(label)} viewBox="0 0 {WIDTH} 60" '
        'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="10" y="35" class="empty">{escape(text)}</text></svg>'
    )


def render(chart: LineChart) -> str:
    """The chart as an inline SVG fragment (safe to embed: every text is escaped)."""
    label = chart.title
    if not chart.points:
        return _empty(label)
    times = [t.timestamp() for t, _ in chart.points]
    values = [v for _, v in chart.points]
    extra = [
        *values,
        *(chart.band or ()),
        *([chart.baseline] if chart.baseline is not None else []),
        *([0.0] if chart.from_zero else []),
    ]
    data_low, data_high = min(extra), max(extra)
    if data_high - data_low < 1e-9:
        data_low, data_high = data_low - max(abs(data_low) * 0.1, 0.05), data_high + max(abs(data_high) * 0.1, 0.05)
    pad = (data_high - data_low) * 0.08
    low: float = data_low - pad
    high: float = data_high + pad
    if chart.y_min is not None:
        low = max(low, chart.y_min)
    if chart.y_max is not None:
        high = min(high, chart.y_max)
    start = chart.start or min(t for t, _ in chart.points)
    end = chart.end or max(t for t, _ in chart.points)
    axis = TimeAxis.over(start, end)
    markers = sorted(
        (m for m in chart.markers if axis.t0 <= m.at.timestamp() <= axis.t1), key=lambda m: m.at.timestamp()
    )
    marker_xs = [axis.x(m.at.timestamp()) for m in markers]
    placement = place_labels(marker_xs, [m.label for m in markers])
    rows = max((row + 1 for row, _ in placement), default=0)
    top = 10 + rows * LABEL_ROW
    bottom = top + PLOT_HEIGHT
    height = bottom + BOTTOM

    def y(v: float) -> float:
        return top + (high - v) / (high - low) * PLOT_HEIGHT

    unit = escape(chart.unit)
    parts = [
        f'<svg class="chart" role="img" aria-label={quoteattr(label)} viewBox="0 0 {WIDTH} {height}" '
        f'preserveAspectRatio="xMinYMin meet" data-unit={quoteattr(chart.unit)} data-low="{low:.6g}" '
        f'data-high="{high:.6g}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    for value in nice_ticks(low, high):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>')
        parts.append(
            f'<text class="axis value" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{_fmt(value)}</text>'
        )
    middle = top + PLOT_HEIGHT / 2
    parts.append(
        f'<text class="axis title" data-role="value-axis" x="14" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {middle:.1f})">{unit}</text>'
    )
    parts.extend(axis.draw(top, bottom))
    if chart.band is not None:
        band_top, band_bottom = y(min(chart.band[1], high)), y(max(chart.band[0], low))
        parts.append(
            f'<rect class="band" data-role="baseline-band" x="{LEFT}" y="{band_top:.1f}" '
            f'width="{WIDTH - LEFT - RIGHT}" height="{max(band_bottom - band_top, 1):.1f}"><title>baseline band '
            f"{_with_unit(chart.band[0], chart.unit)} to {_with_unit(chart.band[1], chart.unit)}</title></rect>"
        )
    if chart.baseline is not None and low <= chart.baseline <= high:
        parts.append(
            f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(chart.baseline):.1f}" '
            f'y2="{y(chart.baseline):.1f}"><title>baseline {_with_unit(chart.baseline, chart.unit)}</title></line>'
        )
    gap = chart.bucket.total_seconds() * 1.5 if chart.bucket else None
    segments = []
    previous: float | None = None
    for t, v in zip(times, values, strict=True):
        move = previous is None or (gap is not None and t - previous > gap)
        segments.append(f"{'M' if move else 'L'}{axis.x(t):.1f},{y(v):.1f}")
        previous = t
    parts.append(f'<path class="series" d="{" ".join(segments)}"/>')
    for t, v in zip(times, values, strict=True):
        stamp = datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M")
        parts.append(
            f'<circle class="point" cx="{axis.x(t):.1f}" cy="{y(v):.1f}" r="2.5" data-at="{stamp}" '
            f'data-value="{_with_unit(v, chart.unit)}"><title>{stamp} UTC: {_with_unit(v, chart.unit)}</title></circle>'
        )
    for marker, mx, (row, anchor) in zip(markers, marker_xs, placement, strict=True):
        title = f"{escape(marker.label)} at {marker.at.strftime('%Y-%m-%d %H:%M')} UTC"
        text = ""
        if row >= 0:
            label_y = 10 + row * LABEL_ROW + 10
            label_x = mx + 3 if anchor == "start" else mx - 3
            text = (
                f'<text x="{label_x:.1f}" y="{label_y}" text-anchor="{anchor}" data-row="{row}">'
                f"{escape(marker.label)}</text>"
            )
        body = (
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{10 + max(row, 0) * LABEL_ROW:.1f}" y2="{bottom:.1f}"/>'
            f"{text}<title>{title}</title>"
        )
        if marker.href:
            body = f"<a href={quoteattr(marker.href)}>{body}</a>"
        kind = escape(marker.kind)
        parts.append(f'<g class="marker {kind}" data-role="{kind}-marker">{body}</g>')
    parts.append("</svg>")
    return "".join(parts)


def render_lanes(
    title: str,
    lanes: list[Lane],
    start: datetime,
    end: datetime,
    left: int = LEFT,
    empty: str = "No changes in this period",
) -> str:
    """Change lanes (one per kind of change) over the period `start`..`end`, on the same time axis as `render`'s
    charts of that period: each span a bar from its start to its end (or to the period's end if still going)."""
    if not any(lane.spans for lane in lanes):
        return _empty(title, empty)
    axis = TimeAxis.over(start, end, left)
    top = 8
    bottom = top + LANE_HEIGHT * len(lanes)
    parts = [
        f'<svg class="chart lanes" role="img" aria-label={quoteattr(title)} viewBox="0 0 {WIDTH} {bottom + BOTTOM}" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    parts.extend(axis.draw(top, bottom))
    for index, lane in enumerate(lanes):
        lane_top = top + index * LANE_HEIGHT
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{lane_top + LANE_HEIGHT / 2 + 4:.1f}" text-anchor="end">'
            f"{escape(_fit(lane.name, left - 10))}<title>{escape(lane.name)}</title></text>"
        )
        for span in lane.spans:
            begin = max(axis.x(span.start.timestamp()), left)
            right = min(axis.x((span.end or end).timestamp()), WIDTH - RIGHT)
            if right < left or begin > WIDTH - RIGHT:
                continue
            ended = span.end.strftime("%Y-%m-%d %H:%M") if span.end else "still going"
            body = (
                f'<rect x="{begin:.1f}" y="{lane_top + 4:.1f}" width="{max(right - begin, 3):.1f}" '
                f'height="{LANE_HEIGHT - 8}"/><title>{escape(span.label)}: {span.start.strftime("%Y-%m-%d %H:%M")} '
                f"to {ended} ({escape(span.kind)})</title>"
            )
            if span.href:
                body = f"<a href={quoteattr(span.href)}>{body}</a>"
            parts.append(f'<g class="span {escape(span.kind)}" data-role="change-span">{body}</g>')
    parts.append("</svg>")
    return "".join(parts)
