"""The SVG charts: the page's width, labelled axes with units, the metric's domain, markers that never collide,
hover values, and change lanes on the same time axis."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from optiinfra.dashboard.charts import (
    LEFT,
    RIGHT,
    WIDTH,
    Lane,
    LineChart,
    Marker,
    Span,
    TimeAxis,
    label_extent,
    nice_ticks,
    place_labels,
    render,
    render_lanes,
)

END = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
START = END - timedelta(hours=24)


def _points(values: list[float]) -> list[tuple[datetime, float]]:
    return [(START + timedelta(minutes=30 * i), value) for i, value in enumerate(values)]


def _attribute(svg: str, name: str) -> float:
    found = re.search(rf'{name}="([^"]+)"', svg)
    assert found is not None, name
    return float(found.group(1))


def test_a_chart_scales_to_the_page_width_with_a_labelled_time_axis_and_its_unit() -> None:
    svg = render(LineChart("p95 latency", "ms", _points([800, 900, 850, 1200]), start=START, end=END))
    assert f'viewBox="0 0 {WIDTH} ' in svg
    assert 'preserveAspectRatio="xMinYMin meet"' in svg
    assert "width=" not in svg.split(">", 1)[0]  # no fixed width: the stylesheet makes it 100 %
    assert 'data-role="value-axis"' in svg
    assert ">ms</text>" in svg
    assert "time (UTC), 2026-11-30 12:00 to 2026-12-01 12:00" in svg
    ticks = re.findall(r'class="axis tick"[^>]*>([^<]+)<', svg)
    assert len(ticks) >= 4
    assert "Dec 01" in ticks  # midnight reads as the date, other ticks as hours
    assert any(re.fullmatch(r"\d\d:00", tick) for tick in ticks)


def test_every_point_carries_its_value_with_the_unit_for_hover() -> None:
    svg = render(LineChart("p95 latency", "ms", _points([812.0, 905.5]), start=START, end=END))
    titles = re.findall(r"<circle[^>]*data-value=\"([^\"]+)\"[^>]*><title>([^<]+)</title>", svg)
    assert [value for value, _ in titles] == ["812 ms", "906 ms"]
    assert titles[0][1] == "2026-11-30 12:00 UTC: 812 ms"


def test_the_value_axis_stays_within_the_metrics_domain() -> None:
    rate = render(LineChart("rate", "rate", _points([0.0, 0.01, 0.0, 0.02]), y_min=0.0, y_max=1.0))
    assert _attribute(rate, "data-low") == 0.0
    assert not re.search(r'class="axis value"[^>]*>-', rate)  # no negative tick
    score = render(LineChart("score", "score", _points([0.97, 0.99, 1.0]), band=(0.95, 1.02), y_min=0.0, y_max=1.0))
    assert _attribute(score, "data-high") == 1.0
    latency = render(LineChart("latency", "ms", _points([3.0, 2.0, 2.5]), y_min=0.0))
    assert _attribute(latency, "data-low") >= 0.0
    small = render(LineChart("rate", "rate", _points([0.05, 0.08]), y_min=0.0, y_max=1.0, from_zero=True))
    assert _attribute(small, "data-low") == 0.0
    flat = render(LineChart("rate", "rate", _points([0.0, 0.0]), y_min=0.0, y_max=1.0))
    assert _attribute(flat, "data-low") == 0.0
    assert _attribute(flat, "data-high") > 0.0


def test_marker_labels_never_overlap_and_never_leave_the_plot() -> None:
    at = END - timedelta(minutes=20)
    markers = [Marker(at + timedelta(minutes=i), f"metric_{i} (critical)", "regression") for i in range(4)]
    markers += [Marker(at, "rollback: vllm tuning", "rollback"), Marker(START, "early one", "regression")]
    svg = render(LineChart("score", "score", _points([0.9, 0.8]), markers=markers, start=START, end=END))
    labels = re.findall(
        r'<line x1="([\d.]+)"[^>]*/><text x="[\d.]+" y="\d+" text-anchor="(\w+)" data-row="(\d)">([^<]+)<', svg
    )
    # Five labels fit (four rows near the end, the early one alone); the sixth is told by its line's <title>.
    assert len(labels) == 5
    assert svg.count('data-role="regression-marker"') + svg.count('data-role="rollback-marker"') == 6
    boxes = []
    for x, anchor, row, text in labels:
        left, right = label_extent(float(x), text, anchor)
        assert left >= LEFT - 1, text
        assert right <= WIDTH - RIGHT + 1, text
        boxes.append((int(row), left, right))
    for i, (row, left, right) in enumerate(boxes):
        for other_row, other_left, other_right in boxes[i + 1 :]:
            assert row != other_row or right < other_left or other_right < left


def test_labels_beyond_the_rows_are_left_to_their_title() -> None:
    placed = place_labels([500.0] * 6, ["a long marker label"] * 6)
    assert [row for row, _ in placed] == [0, 1, 2, 3, -1, -1]


def test_markers_link_to_their_subject_and_are_escaped() -> None:
    marker = Marker(END - timedelta(hours=1), "<b>x</b>", "regression", "/incidents/1?a=1&b=2")
    svg = render(LineChart("score", "score", _points([0.9]), markers=[marker], start=START, end=END))
    assert "<b>" not in svg
    assert "&lt;b&gt;x&lt;/b&gt;" in svg
    assert '<a href="/incidents/1?a=1&amp;b=2">' in svg


def test_a_gap_in_the_data_breaks_the_line() -> None:
    points = [*_points([0.9, 0.9]), (START + timedelta(hours=10), 0.8)]
    svg = render(LineChart("score", "score", points, bucket=timedelta(minutes=30), start=START, end=END))
    path = re.search(r'class="series" d="([^"]+)"', svg)
    assert path is not None
    assert path.group(1).count("M") == 2


def test_lanes_share_the_charts_time_axis() -> None:
    at = END - timedelta(hours=6)
    lanes = render_lanes("changes", [Lane("spot migration", [Span(at, None, "spot", "executing", "/x")])], START, END)
    chart = render(LineChart("score", "score", [(at, 0.9)], start=START, end=END))
    bar = re.search(r'<rect x="([\d.]+)"', lanes)
    point = re.search(r'<circle class="point" cx="([\d.]+)"', chart)
    assert bar is not None
    assert point is not None
    assert abs(float(bar.group(1)) - float(point.group(1))) < 0.2
    assert abs(TimeAxis.over(START, END).x(at.timestamp()) - float(point.group(1))) < 0.1
    assert re.search(r'width="([\d.]+)"', lanes.split("<rect", 1)[1])  # a running change reaches the end
    assert "still going" in lanes


def test_nice_ticks_are_round() -> None:
    assert nice_ticks(0.883, 0.934) == [0.89, 0.9, 0.91, 0.92, 0.93]
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(522, 1590) == [600, 800, 1000, 1200, 1400]
