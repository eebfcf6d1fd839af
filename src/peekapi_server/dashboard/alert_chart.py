"""The preview chart of a rule, drawn server-side as SVG: its metric over time, the threshold and recovery lines,
and the spans when the rule would have been firing.

:func:`chart` turns a preview's numbers into geometry (plain numbers and point lists) that ``_alert_preview.html``
writes into an ``<svg>``; nothing here is markup, so nothing here needs escaping. Pure; never raises on any
input of the preview's shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .web import fmt_time

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 10, 26


@dataclass(frozen=True)
class Span:
    """A firing drawn from ``x`` over ``width`` pixels (``open``: still firing at the end)."""

    x: float
    width: float
    start: int
    end: int | None


@dataclass(frozen=True)
class Tick:
    at: float  # pixels along the axis
    label: str


@dataclass(frozen=True)
class Chart:
    """Everything the preview's SVG draws, in pixels of a WIDTH x HEIGHT view box."""

    lines: list[str]  # SVG polyline ``points``, one per run of values without a gap
    dots: list[tuple[float, float]]  # lone values (no neighbour to draw a line to)
    threshold_y: float | None
    recovery_y: float | None
    spans: list[Span]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    values: int  # windows with a value
    total: float  # their sum (for tests and the JSON twin)


def _nice_top(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above ``value`` (1 for nothing above 0)."""
    if not value > 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10.0**exp >= value:
            return m * 10.0**exp
    return 10.0 ** (exp + 1)  # pragma: no cover - the loop ends at 10 x 10^exp


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value.is_integer() else f"{value:,.2g}"


def chart(
    points: Sequence[tuple[int, float | None]],
    firings: Sequence[tuple[int, int | None]],
    threshold: float | None,
    recovery: float | None,
    *,
    start: int,
    end: int,
) -> Chart:
    """The geometry of a preview over ``[start, end)`` (epoch seconds); ``threshold``/``recovery`` are drawn as
    lines in the values' units (``None``: not drawn)."""
    span = max(end - start, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    finite = [v for _, v in points if v is not None and math.isfinite(v)]
    levels = [v for v in (threshold, recovery) if v is not None and math.isfinite(v)]
    top = _nice_top(max([*finite, *levels, 0.0]) * 1.05)
    low = min([*finite, *levels, 0.0])  # a change can be negative
    bottom = -_nice_top(-low * 1.05) if low < 0 else 0.0

    def x_of(t: float) -> float:
        return round(LEFT + min(max((t - start) / span, 0.0), 1.0) * plot_w, 1)

    def y_of(v: float) -> float:
        return round(TOP + plot_h - min(max((v - bottom) / (top - bottom), 0.0), 1.0) * plot_h, 1)

    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in points:
        if v is None or not math.isfinite(v):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((x_of(t), y_of(v)))
    lines = [" ".join(f"{x},{y}" for x, y in run) for run in runs if len(run) > 1]
    dots = [run[0] for run in runs if len(run) == 1]
    spans = []
    for fired, resolved in firings:
        x0, x1 = x_of(fired), x_of(end if resolved is None else resolved)
        spans.append(Span(x0, max(x1 - x0, 2.0), fired, resolved))
    levels_at = [bottom + (top - bottom) * k / 4 for k in range(5)]
    y_ticks = [Tick(y_of(v), _label(v)) for v in levels_at]
    step = 6 * 3600 if span > 12 * 3600 else 3600 if span > 2 * 3600 else 900
    first = -(-start // step) * step
    x_ticks = [Tick(x_of(t), fmt_time(t)[11:]) for t in range(first, end + 1, step)]
    return Chart(
        lines=lines,
        dots=dots,
        threshold_y=None if threshold is None else y_of(threshold),
        recovery_y=None if recovery is None or recovery == threshold else y_of(recovery),
        spans=spans,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        values=len(finite),
        total=sum(finite),
    )
