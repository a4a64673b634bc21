"""`span_metrics` of many boxes' spans at once, and their per-measurement min/max/average.

A simulated fleet (or a replay of many boxes) has every box's cycles of a tick together, with
the same measurement windows when the boxes measure in step: one compiled call (`compiled_span`)
measures all of them, and the summaries of a tick's measurements are a few numpy calls for every
box. Each row's values equal what `span_metrics` gives for that row alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from opq.domain.compiled_span import SpanMetrics, span_rows
from opq.domain.constants import INTERRUPTION_VRMS_V, SAMPLES_PER_CYCLE
from opq.domain.span_metrics import default_period_windows


def fleet_span_metrics(
    samples_v: npt.NDArray[np.float64],
    frequency_windows: Sequence[tuple[int, int]],
    thd_windows: Sequence[tuple[int, int]],
    *,
    period_windows: Sequence[int] | None = None,
    measured_cycles: tuple[int, int] | None = None,
    span_cycles: tuple[int, int] | None = None,
    min_vrms_v: float = INTERRUPTION_VRMS_V,
) -> SpanMetrics:
    """`span_metrics` of each row of a (boxes, samples) array [V]; every row has the same windows.

    The results have a leading boxes axis: `rms_v` and `transient_v` (boxes, cycles),
    `frequency_hz` (boxes, frequency windows), `thd_ratio` (boxes, THD windows). With
    `measured_cycles` = (first, stop), the RMS and transient of the cycles outside it (the context
    a span carries) are not computed and read NaN. With `span_cycles` = (first, stop), the span is
    those cycles of each row (a cohort's history holds more), and every other cycle number counts
    from its first; a C-contiguous `samples_v` is then not copied.
    """
    samples_v = np.ascontiguousarray(samples_v, dtype=np.float64)
    if samples_v.ndim != 2:
        raise ValueError(f"samples_v has shape {samples_v.shape}; expected (boxes, samples)")
    low, high = span_cycles or (0, samples_v.shape[-1] // SAMPLES_PER_CYCLE)
    if period_windows is None:
        period_windows = default_period_windows(high - low, frequency_windows)
    return span_rows(
        samples_v,
        (low, high),
        frequency_windows,
        thd_windows,
        period_windows,
        measured_cycles or (0, high - low),
        min_vrms_v,
    )


def group_summaries(
    values: npt.NDArray[np.float64], starts: Sequence[int], stop: int
) -> npt.NDArray[np.float64]:
    """(boxes, groups, min/max/average) of consecutive groups of columns, NaN ignored.

    Group i is `values[:, starts[i]:starts[i + 1]]`, the last one ending at `stop`; a group that
    is empty or all NaN gives NaN. How a fleet's measurements summarize their cycles or windows.
    """
    n_boxes = values.shape[0]
    n_groups = len(starts)
    out = np.full((n_boxes, n_groups, 3), np.nan)
    if n_groups == 0 or stop == 0:
        return out
    if n_groups == 1:  # a tick's one measurement: five calls instead of reduceat's dozen
        part = values[:, starts[0] : stop]
        count = np.count_nonzero(~np.isnan(part), axis=1)
        if part.shape[1]:
            out[:, 0, 0] = np.fmin.reduce(part, axis=1)
            out[:, 0, 1] = np.fmax.reduce(part, axis=1)
            np.divide(np.nansum(part, axis=1), count, out=out[:, 0, 2], where=count > 0)
        return out
    # A NaN column past the end lets an empty last group start at `stop` (reduceat's index < length).
    padded = np.full((n_boxes, stop + 1), np.nan)
    padded[:, :stop] = values[:, :stop]
    at = np.asarray(starts, dtype=np.intp)
    numbers = ~np.isnan(padded)
    count = np.add.reduceat(numbers, at, axis=1)
    total = np.add.reduceat(np.where(numbers, padded, 0.0), at, axis=1)
    sizes = np.diff(np.append(at, stop))
    has = (count > 0) & (sizes > 0)
    # fmin/fmax skip NaN; an empty group's reduceat is one element of the next, masked by `has`.
    np.copyto(out[..., 0], np.fmin.reduceat(padded, at, axis=1), where=has)
    np.copyto(out[..., 1], np.fmax.reduceat(padded, at, axis=1), where=has)
    np.divide(total, count, out=out[..., 2], where=has)
    return out


def metric_summaries(
    values: Sequence[npt.NDArray[np.float64]], starts: Sequence[Sequence[int]], stops: Sequence[int]
) -> npt.NDArray[np.float64]:
    """(spans, boxes, metrics, min/max/average): `group_summaries` of each metric, laid out per span.

    Metric m's groups start at `starts[m]` and its last ends at `stops[m]`. A tick usually
    completes one measurement; then the metrics' values are padded with NaN into one array and
    summarized in a handful of numpy calls for all of them, instead of a handful each.
    """
    n_boxes = len(values[0])
    if len(starts[0]) != 1:
        out = np.empty((len(starts[0]), n_boxes, len(values), 3))
        for m, (metric, metric_starts, stop) in enumerate(zip(values, starts, stops, strict=True)):
            out[:, :, m] = group_summaries(metric, metric_starts, stop).transpose(1, 0, 2)
        return out
    widths = [stop - metric_starts[0] for metric_starts, stop in zip(starts, stops, strict=True)]
    padded = np.full((n_boxes, len(values), max(1, *widths)), np.nan)
    for m, (metric, metric_starts, stop) in enumerate(zip(values, starts, stops, strict=True)):
        padded[:, m, : widths[m]] = metric[:, metric_starts[0] : stop]
    numbers = ~np.isnan(padded)
    count = np.count_nonzero(numbers, axis=-1)
    out = np.empty((1, n_boxes, len(values), 3))
    np.fmin.reduce(padded, axis=-1, out=out[0, ..., 0])  # fmin/fmax skip NaN; all NaN gives NaN
    np.fmax.reduce(padded, axis=-1, out=out[0, ..., 1])
    total = np.where(numbers, padded, 0.0).sum(axis=-1)
    out[0, ..., 2] = np.nan
    np.divide(total, count, out=out[0, ..., 2], where=count > 0)
    return out
