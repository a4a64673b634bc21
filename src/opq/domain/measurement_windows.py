"""Which cycles a box measurement covers, its windows, and the min/max/average of their values.

A measurement of N cycles summarizes one value per cycle (rms, trans) and one per window (f over
10 cycles, thd over 12), the windows laid back to back ending at the measurement's end. Cycles are
counted from any origin; `origin` is the first cycle since a box last started (after an outage or
a gap), before which no window reaches. Shared by `opq.box.measuring` (a box's own cycles) and
the fleet's meters (`opq.box.fleet_metrics`).
"""

from __future__ import annotations

import itertools
import math
from typing import Final

import numpy as np
import numpy.typing as npt

from opq.domain.constants import FREQUENCY_WINDOW_CYCLES, THD_WINDOW_CYCLES

Span = tuple[int, int, int]
"""A measurement as (first cycle, stop cycle, first cycle of its segment)."""


def advance_spans(
    rate: int, start: int | None, origin: int, first_cycle: int, count: int, silent: npt.NDArray[np.bool_]
) -> tuple[list[Span], int | None, int]:
    """The measurements that cycles [first_cycle, first_cycle + count) complete, and the new state.

    `start` is the first cycle of the measurement in progress (None while the box is off) and
    `origin` the first cycle since the box was last off. As `MeasurementBuilder` does, a
    measurement ends once it has `rate` cycles (a lowered rate ends the one in progress at the next
    cycle), an outage ends it early, and the first cycle after an outage starts afresh. The
    measurement that the block's last cycle completes ends with the block, not a cycle later: the
    model needs no cycle after it.
    """
    spans: list[Span] = []
    for row in range(count):
        cycle = first_cycle + row
        if silent[row]:
            if start is not None and cycle > start:
                spans.append((start, cycle, origin))
            start = None
        elif start is None:
            start = origin = cycle
        elif cycle - start >= rate:
            spans.append((start, cycle, origin))
            start = cycle
    stop = first_cycle + count
    if start is not None and stop - start >= rate:
        spans.append((start, stop, origin))
        start = stop
    return spans, start, origin


def windows(first: int, stop: int, origin: int, window: int) -> list[tuple[int, int]]:
    """Back-to-back windows of `window` cycles ending at `stop` and covering [first, stop).

    One cut by `origin` (the box's start after an outage) is kept if it still has half its
    cycles, as `MeasurementBuilder` does.
    """
    count = -(-(stop - first) // window)
    spans = [
        (max(origin, stop - (count - j) * window), stop - (count - j - 1) * window) for j in range(count)
    ]
    return [(a, b) for a, b in spans if 2 * (b - a) >= window]


def span_reach(span: Span) -> int:
    """The first cycle whose metrics a measurement needs (its earliest window may reach back)."""
    first, stop, origin = span
    reach = [
        w[0][0]
        for size in (FREQUENCY_WINDOW_CYCLES, THD_WINDOW_CYCLES)
        if (w := windows(first, stop, origin, size))
    ]
    return min([first, *reach])


def nanmean(values: npt.NDArray[np.float64], axis: int) -> npt.NDArray[np.float64]:
    valid = ~np.isnan(values)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / valid.sum(axis=axis), dtype=np.float64)


def window_values(
    per_cycle: npt.NDArray[np.float64], lo: int, spans: list[tuple[int, int]], *, quadratic: bool
) -> npt.NDArray[np.float64]:
    """One value per window from per-cycle values (boxes, cycles from `lo`): their mean, or RMS mean."""
    values = per_cycle * per_cycle if quadratic else per_cycle
    parts = []
    full = list(spans)
    if full and full[0][1] - full[0][0] != full[-1][1] - full[-1][0]:
        a, b = full.pop(0)
        parts.append(nanmean(values[:, a - lo : b - lo], axis=1)[:, np.newaxis])
    if full:
        size = full[0][1] - full[0][0]
        block = values[:, full[0][0] - lo : full[-1][1] - lo]
        parts.append(nanmean(block.reshape(len(values), len(full), size), axis=2))
    if not parts:
        return np.full((len(values), 0), np.nan)
    joined = np.concatenate(parts, axis=1)
    return np.sqrt(joined) if quadratic else joined


def row_summaries(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(boxes, 3): min, max and average of each row, ignoring NaN; NaN where a row has no number."""
    if values.shape[1] == 0:
        return np.full((len(values), 3), np.nan)
    return np.stack(
        [np.fmin.reduce(values, axis=1), np.fmax.reduce(values, axis=1), nanmean(values, 1)], axis=1
    )


def group_starts(groups: list[list[tuple[int, int]]]) -> list[int]:
    """Index of each group's first item in the groups laid end to end."""
    starts, total = [], 0
    for group in groups:
        starts.append(total)
        total += len(group)
    return starts


def summaries_of_groups(
    values: list[npt.NDArray[np.float64]], starts: list[list[int]], stops: list[int]
) -> list[list[tuple[float, float, float]]]:
    """(min, max, average), NaN ignored, of each group of each metric; per span, per metric.

    `values[m][starts[m][i]:starts[m][i + 1]]` (the last group ends at `stops[m]`) is group i of
    metric m; an empty or all-NaN group gives NaN. A measurement has tens of values a metric, so
    plain Python on lists beats numpy's per-call cost here.
    """
    per_metric = []
    for metric_values, metric_starts, stop in zip(values, starts, stops, strict=True):
        listed = metric_values[:stop].tolist()
        bounds = [*metric_starts, stop]
        stats = []
        for start, end in itertools.pairwise(bounds):
            numbers = [v for v in listed[start:end] if v == v]  # NaN is not equal to itself
            stats.append(
                (min(numbers), max(numbers), math.fsum(numbers) / len(numbers)) if numbers else _NO_VALUE
            )
        per_metric.append(stats)
    return [list(span) for span in zip(*per_metric, strict=True)]


_NO_VALUE: Final = (math.nan, math.nan, math.nan)


def period_windows(
    span_firsts: list[int], frequency_windows: list[list[tuple[int, int]]], low: int, high: int
) -> list[int]:
    """For each history cycle in [low, high), the frequency window that sets its RMS period.

    A measurement's cycles take its own windows' frequencies: the window covering them, or its
    first window for cycles before it (a window cut too short at the start of a stream is not
    fitted); −1 (the nominal period) for a measurement without any window and for context cycles.
    """
    period = [-1] * (high - low)
    index = 0
    for span_first, windows in zip(span_firsts, frequency_windows, strict=True):
        if windows:
            period[span_first - low : windows[0][0] - low] = [index] * max(windows[0][0] - span_first, 0)
        for first, stop in windows:
            start = max(first, span_first) - low
            period[start : stop - low] = [index] * (stop - low - start)
            index += 1
    return period
