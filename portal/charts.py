"""Geometry of the dashboard's two charts, drawn as inline SVG by the templates (no chart library).

Pure functions over counts: the templates only place what these compute.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime


def nice_ceiling(value: int) -> int:
    """The axis maximum: ``value`` rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** int(math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # unreachable: 10 * power >= value by construction


@dataclass(frozen=True)
class Column:
    x: float
    width: float
    ok_y: float
    ok_height: float
    failed_y: float
    failed_height: float
    total: int
    failed: int
    start: datetime
    tick: str  # the hour label under every third column, else ""


@dataclass(frozen=True)
class Gridline:
    y: float
    label: str


@dataclass(frozen=True)
class ColumnChart:
    width: int
    height: int
    plot_left: int
    plot_bottom: float
    columns: list[Column]
    gridlines: list[Gridline]


def hourly_columns(buckets: list, *, width: int = 720, height: int = 200, left: int = 36, bottom: int = 22,
                   top: int = 8) -> ColumnChart:
    """Stacked columns (succeeded below, failed on top), one per hour bucket (``start``, ``total``,
    ``failed``), with three gridlines."""
    plot_height = height - top - bottom
    plot_width = width - left - 4
    maximum = nice_ceiling(max((b.total for b in buckets), default=0))
    slot = plot_width / max(1, len(buckets))
    bar = max(1.0, slot * 0.72)
    columns = []
    for i, bucket in enumerate(buckets):
        total_h = plot_height * bucket.total / maximum
        failed_h = plot_height * bucket.failed / maximum
        base = top + plot_height
        columns.append(Column(
            x=round(left + i * slot + (slot - bar) / 2, 2), width=round(bar, 2),
            ok_y=round(base - total_h + failed_h, 2), ok_height=round(total_h - failed_h, 2),
            failed_y=round(base - total_h, 2), failed_height=round(failed_h, 2),
            total=bucket.total, failed=bucket.failed, start=bucket.start,
            tick=f"{bucket.start:%H}:00" if i % 3 == 0 else "",
        ))
    gridlines = [Gridline(y=round(top + plot_height * (1 - k / 2), 2), label=_count_label(maximum * k // 2))
                 for k in (0, 1, 2)]
    return ColumnChart(width=width, height=height, plot_left=left, plot_bottom=top + plot_height,
                       columns=columns, gridlines=gridlines)


def _count_label(n: int) -> str:
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    y: float
    width: float


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bar_height: int
    bars: list[Bar]


def horizontal_bars(items: list[tuple[str, int]], *, width: int = 560, row: int = 40,
                    bar_height: int = 14, label_room: int = 48) -> BarChart:
    """One bar per (label, count), the longest filling the width less ``label_room`` (for the count
    written after it); labels sit above their bars so long error codes fit."""
    maximum = max((count for _, count in items), default=0) or 1
    usable = width - label_room
    bars = [Bar(label=label, count=count, y=i * row + 18, width=round(max(2.0, usable * count / maximum), 2))
            for i, (label, count) in enumerate(items)]
    return BarChart(width=width, height=max(row, len(items) * row), bar_height=bar_height, bars=bars)
