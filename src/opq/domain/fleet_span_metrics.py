"""`span_metrics` of many boxes' spans at once, and their per-measurement min/max/average.

A simulated fleet (or a replay of many boxes) has every box's cycles of a tick together, with
the same measurement windows when the boxes measure in step. One box's measurement costs a
couple of hundred numpy calls however few its samples; here the calls are made once for a
(boxes, samples) array, so their cost is spread over the boxes and what is left is the
arithmetic. The definitions are those of `span_metrics` (and so of `frequency`, `harmonics`,
`metrics` and `synchronous_rms`): each row's values equal what `span_metrics` gives for that row
alone, to floating-point rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft

from opq.domain.constants import INTERRUPTION_VRMS_V, SAMPLES_PER_CYCLE
from opq.domain.filters import decimate
from opq.domain.frequency import (
    crossings_of_decimated,
    crossings_of_smoothed,
    frequency_of_crossings_per_row,
)
from opq.domain.harmonics import flattop_window, thd_of_spectrum
from opq.domain.metrics import transient_of_decimated
from opq.domain.span_metrics import SpanMetrics, default_period_windows
from opq.domain.synchronous_rms import period_samples, rms_over_periods


@dataclass(frozen=True)
class FilteredRows:
    """The low-rate filters' outputs of (boxes, samples) rows, which a caller keeping history has already.

    A cohort filters each cycle once as it arrives and keeps the outputs with its samples, so a
    span that overlaps the previous one (a tick's windows reach back) is not filtered again.
    """

    decimated: npt.NDArray[np.float64]
    """`filters.decimate` of the rows (boxes, samples / 10 − 8); rows may be strided views."""
    smoothed: npt.NDArray[np.float64]
    """`frequency.smooth_decimated` of `decimated` (boxes, samples / 10 − 28)."""


def fleet_span_metrics(
    samples_v: npt.NDArray[np.float64],
    frequency_windows: Sequence[tuple[int, int]],
    thd_windows: Sequence[tuple[int, int]],
    *,
    period_windows: Sequence[int] | None = None,
    measured_cycles: tuple[int, int] | None = None,
    filtered: FilteredRows | None = None,
    min_vrms_v: float = INTERRUPTION_VRMS_V,
) -> SpanMetrics:
    """`span_metrics` of each row of a (boxes, samples) array [V]; every row has the same windows.

    The results have a leading boxes axis: `rms_v` and `transient_v` (boxes, cycles),
    `frequency_hz` (boxes, frequency windows), `thd_ratio` (boxes, THD windows). With
    `measured_cycles` = (first, stop), the RMS and transient of the cycles outside it (the context
    a span carries) are not computed and read NaN. With `filtered`, the rows' filter outputs are
    taken from it instead of computed. Rows may be strided (a view of a longer history); only
    the samples of a row need to be contiguous, so the span is not copied.
    """
    samples_v = np.asarray(samples_v, dtype=np.float64)
    if samples_v.ndim != 2:
        raise ValueError(f"samples_v has shape {samples_v.shape}; expected (boxes, samples)")
    if samples_v.strides[-1] != samples_v.itemsize:
        samples_v = np.ascontiguousarray(samples_v)
    n_boxes, n_samples = samples_v.shape
    step = max(1, CHUNK_SAMPLES // max(n_samples, 1))
    if n_boxes <= step:
        return _span_metrics_of_rows(
            samples_v, frequency_windows, thd_windows, period_windows, measured_cycles, filtered, min_vrms_v
        )
    parts = [
        _span_metrics_of_rows(
            samples_v[low : low + step],
            frequency_windows,
            thd_windows,
            period_windows,
            measured_cycles,
            None
            if filtered is None
            else FilteredRows(filtered.decimated[low : low + step], filtered.smoothed[low : low + step]),
            min_vrms_v,
        )
        for low in range(0, n_boxes, step)
    ]
    return SpanMetrics(
        rms_v=np.concatenate([part.rms_v for part in parts]),
        transient_v=np.concatenate([part.transient_v for part in parts]),
        frequency_hz=np.concatenate([part.frequency_hz for part in parts]),
        thd_ratio=np.concatenate([part.thd_ratio for part in parts]),
    )


CHUNK_SAMPLES = 1 << 20
"""Most samples computed together (8 MB a float64 array): a bound on memory, not a speed-up; with
the allocator keeping freed memory (`opq.box.signal_meter.retain_freed_memory`), larger batches
cost no more per box, and smaller ones pay the numpy calls more often."""


def _span_metrics_of_rows(
    samples_v: npt.NDArray[np.float64],
    frequency_windows: Sequence[tuple[int, int]],
    thd_windows: Sequence[tuple[int, int]],
    period_windows: Sequence[int] | None,
    measured_cycles: tuple[int, int] | None,
    filtered: FilteredRows | None,
    min_vrms_v: float,
) -> SpanMetrics:
    n_boxes, n_samples = samples_v.shape
    n_cycles = n_samples // SAMPLES_PER_CYCLE
    decimated = decimate(samples_v) if filtered is None else filtered.decimated
    smoothed = None if filtered is None else filtered.smoothed
    frequency_hz = _frequency_per_window(decimated, smoothed, n_boxes, frequency_windows, min_vrms_v)
    if period_windows is None:
        period_windows = default_period_windows(n_cycles, frequency_windows)
    # Each box's windows' periods, then a last column for −1: the nominal period.
    periods = np.full((n_boxes, len(frequency_windows) + 1), float(SAMPLES_PER_CYCLE))
    periods[:, :-1] = period_samples(frequency_hz)
    first, stop = (0, n_cycles) if measured_cycles is None else measured_cycles
    rms_v = np.full((n_boxes, n_cycles), np.nan)
    rms_v[:, first:stop] = rms_over_periods(samples_v, periods[:, period_windows], (first, stop))
    transient_v = np.full((n_boxes, n_cycles), np.nan)
    transient_v[:, first:stop] = transient_of_decimated(samples_v, decimated, (first, stop))
    return SpanMetrics(
        rms_v=rms_v,
        transient_v=transient_v,
        frequency_hz=frequency_hz,
        thd_ratio=_thd_per_window(samples_v, thd_windows, min_vrms_v),
    )


def _frequency_per_window(
    decimated: npt.NDArray[np.float64],
    smoothed: npt.NDArray[np.float64] | None,
    n_boxes: int,
    windows: Sequence[tuple[int, int]],
    min_vrms_v: float,
) -> npt.NDArray[np.float64]:
    if len(windows) == 0:
        return np.empty((n_boxes, 0))
    crossings = (
        crossings_of_decimated(decimated, min_vrms_v)
        if smoothed is None
        else crossings_of_smoothed(smoothed, min_vrms_v)
    )
    if crossings is None:
        return np.full((n_boxes, len(windows)), np.nan)
    row, time, rising = crossings
    starts, stops = np.array(windows, dtype=np.float64).T * SAMPLES_PER_CYCLE
    return frequency_of_crossings_per_row(row, time, rising, n_boxes, starts, stops)


def _thd_per_window(
    samples_v: npt.NDArray[np.float64], windows: Sequence[tuple[int, int]], min_vrms_v: float
) -> npt.NDArray[np.float64]:
    """THD (boxes, windows), each window of every box straight from the samples, a batch of boxes per FFT.

    The frames are weighed from strided views into a buffer reused for every batch (a fleet's
    frames at once would be megabytes of fresh memory, whose page faults cost more than the FFT),
    in float32: scipy's single-precision FFT takes 0.7 of the time of numpy's double one, and
    rounding to 24 bits moves a THD by under 1e-6 (0.0001 percentage point; the harmonics are
    read 50 bins at a time and the flat-top's side lobes are at −90 dB, far above float32's
    −140 dB), so the values match `span_metrics`'s to 1e-6, not to float64's rounding.
    """
    n_boxes = len(samples_v)
    thd = np.full((n_boxes, len(windows)), np.nan)
    for column, (first, stop) in enumerate(windows):
        n_window = (stop - first) * SAMPLES_PER_CYCLE
        frames = samples_v[:, first * SAMPLES_PER_CYCLE : stop * SAMPLES_PER_CYCLE]
        window = _flattop_float32(n_window)
        weighed = np.empty((min(n_boxes, _BOXES_PER_FFT), n_window), dtype=np.float32)
        for low in range(0, n_boxes, _BOXES_PER_FFT):
            high = min(low + _BOXES_PER_FFT, n_boxes)
            batch = weighed[: high - low]
            # Rounded to float32 first, then weighed in float32: half the time of a float64
            # product cast on the way out, and the same 24-bit rounding as far as a THD can tell.
            batch[...] = frames[low:high]
            np.multiply(batch, window, out=batch)
            spectrum = scipy.fft.rfft(batch, axis=-1)
            thd[low:high, column] = thd_of_spectrum(spectrum, n_window, min_vrms_v=min_vrms_v)
    return thd


@functools.cache
def _flattop_float32(n_samples: int) -> npt.NDArray[np.float32]:
    window = flattop_window(n_samples).astype(np.float32)
    window.setflags(write=False)
    return window


_BOXES_PER_FFT = 128
"""Frames per FFT call: 128 weighed frames of 12 cycles are 1.2 MB (float32), reused for every
batch; fewer frames a call pay the calls of `thd_of_spectrum` more often (32: 20 % slower overall)."""


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
