"""Features of a captured waveform that several plugins need, computed from the domain's metrics."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from opq.domain import (
    SAMPLES_PER_CYCLE,
    THD_WINDOW_CYCLES,
    frequency_per_window,
    highpass_residual_v,
    rms_per_cycle,
    thd_per_window,
)

_HALF_CYCLE = SAMPLES_PER_CYCLE // 2


def cycle_rms_v(samples_v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """RMS of each 200-sample cycle [V] (OPQ's per-cycle RMS)."""
    return rms_per_cycle(samples_v)


def half_cycle_rms_v(samples_v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Urms(1/2) [V] (IEC 61000-4-30 5.4.2): RMS over one cycle, refreshed every half cycle.

    Value k is the RMS of samples [100k, 100k + 200): 2·cycles − 1 values. The cycle is the box's
    200-sample block (one nominal 60 Hz period), not a zero-crossing-synchronised period.
    """
    squares = np.square(samples_v)
    halves = squares[: len(squares) // _HALF_CYCLE * _HALF_CYCLE].reshape(-1, _HALF_CYCLE).sum(axis=1)
    if halves.size < 2:
        return np.empty(0)
    return np.asarray(np.sqrt((halves[:-1] + halves[1:]) / SAMPLES_PER_CYCLE), dtype=np.float64)


def cycle_frequency_hz(samples_v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Frequency [Hz] refreshed every cycle, over two cycles: value k covers cycles [k, k + 2).

    One cycle holds too few zero crossings for the domain's least-squares estimate, so each value
    spans two cycles; windows starting at even and odd cycles are interleaved. There are
    cycles − 1 values; NaN where there is too little voltage to measure (and in the first one or
    two, which lack filter context).
    """
    cycles = len(samples_v) // SAMPLES_PER_CYCLE
    if cycles < 2:
        return np.empty(0)
    even = frequency_per_window(samples_v[: cycles // 2 * 2 * SAMPLES_PER_CYCLE], window_cycles=2)
    odd_cycles = (cycles - 1) // 2 * 2
    odd = frequency_per_window(
        samples_v[SAMPLES_PER_CYCLE : SAMPLES_PER_CYCLE + odd_cycles * SAMPLES_PER_CYCLE], window_cycles=2
    )
    result = np.empty(cycles - 1)
    result[0::2] = even
    result[1::2] = odd
    return result


def window_thd_ratio(samples_v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """THD of each 12-cycle (≈200 ms) window [ratio]; a trailing part window is left out."""
    window = THD_WINDOW_CYCLES * SAMPLES_PER_CYCLE
    whole = len(samples_v) // window * window
    if whole == 0:
        return np.empty(0)
    return thd_per_window(samples_v[:whole], THD_WINDOW_CYCLES)


def residual_v(samples_v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The waveform minus its fundamental [V] (0 in the first and last 80 samples)."""
    return highpass_residual_v(samples_v)


def flagged(
    half_cycle_rms_v: npt.NDArray[np.float64],
    start_samples: npt.NDArray[np.int64],
    length_samples: int,
    low_v: float,
    high_v: float,
) -> npt.NDArray[np.bool_]:
    """Which spans [start, start + length) [samples] overlap a Urms(1/2) value outside [low_v, high_v].

    IEC 61000-4-30 4.7 flags every value measured over an interval holding a dip, swell or
    interruption: the edges of a sag smear broadband energy into THD and bend zero crossings,
    so such values describe the dip, not the harmonics or the frequency.
    """
    outside = (half_cycle_rms_v < low_v) | (half_cycle_rms_v > high_v)
    count = np.concatenate([[0], np.cumsum(outside)])
    n = len(outside)
    # Value j covers samples [100j, 100j + 200): it overlaps the span when j > (start - 200)/100
    # and j < (start + length)/100.
    first = np.clip(np.floor_divide(start_samples - 2 * _HALF_CYCLE, _HALF_CYCLE) + 1, 0, n)
    stop = np.clip(-np.floor_divide(-(start_samples + length_samples), _HALF_CYCLE), 0, n)
    return np.asarray(count[np.maximum(stop, first)] - count[first] > 0)
