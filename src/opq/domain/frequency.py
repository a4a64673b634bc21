"""Grid frequency [Hz] from interpolated zero crossings of the low-passed waveform."""

from __future__ import annotations

import functools
import math
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal

from opq.domain.constants import (
    FREQUENCY_WINDOW_CYCLES,
    INTERRUPTION_VRMS_V,
    NOMINAL_FREQUENCY_HZ,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
)
from opq.domain.filters import DECIMATED_RATE_HZ, DECIMATION, decimate, lowpass_delay_samples
from opq.domain.waveform import as_blocks

SMOOTHING_TAPS: Final = 21
"""Taps of the frequency path's 80 Hz low-pass at 1.2 kHz (±0.5 cycle): it needs 10 samples each side."""
NEIGHBOUR_STEP_RATIO: Final = 0.8
"""A crossing shallower than this share of a neighbour's step is dropped (filters bend crossings next
to a sudden loss of voltage; even harmonics make rising and falling steps differ by a few %)."""
HALF_PERIOD_SAMPLES: Final = SAMPLE_RATE_HZ / (2 * NOMINAL_FREQUENCY_HZ)
"""The nominal half-period [samples at 12 kHz], the unit of the half-cycle counts."""
OMEGA_RAD: Final = 2 * math.pi * NOMINAL_FREQUENCY_HZ / DECIMATED_RATE_HZ
"""The nominal fundamental's phase step per 1.2 kHz sample [rad]: crossings are timed on that sine."""
_SMOOTHING_CUTOFF_HZ = 80.0


@functools.cache
def smoothing_taps() -> npt.NDArray[np.float64]:
    """Linear-phase low-pass at 1.2 kHz (Hamming, 21 taps, 80 Hz), gain 1 at 60 Hz.

    It leaves a near-pure fundamental: noise and harmonics 3 and up are what bend crossings.
    """
    taps = signal.firwin(SMOOTHING_TAPS, _SMOOTHING_CUTOFF_HZ, fs=DECIMATED_RATE_HZ)
    _, response = signal.freqz(taps, worN=[NOMINAL_FREQUENCY_HZ], fs=DECIMATED_RATE_HZ)
    taps = np.asarray(taps / abs(response[0]), dtype=np.float64)
    taps.setflags(write=False)
    return taps


def frequency_hz(samples_v: npt.ArrayLike, *, min_vrms_v: float = INTERRUPTION_VRMS_V) -> float:
    """Frequency [Hz] of a 1-D waveform of whole cycles [V], as one window; NaN if there is none.

    See `frequency_per_window`; 10 to 12 cycles give Class A accuracy (±10 mHz).
    """
    samples = as_blocks(samples_v)
    if samples.ndim != 1:
        raise ValueError(f"samples_v has shape {samples.shape}; expected a 1-D waveform")
    return float(frequency_of_decimated(decimate(samples), len(samples), 1, min_vrms_v)[0])


def frequency_per_window(
    samples_v: npt.ArrayLike,
    window_cycles: int = FREQUENCY_WINDOW_CYCLES,
    *,
    min_vrms_v: float = INTERRUPTION_VRMS_V,
) -> npt.NDArray[np.float64]:
    """Frequency [Hz] of each consecutive window of `window_cycles` cycles, along the last axis.

    The waveform [V] is low-passed without phase shift (linear-phase FIR filters, 12 kHz → 1.2 kHz
    decimation then an 80 Hz low-pass, whose delays are subtracted) and its zero crossings are
    located between samples on the sine through the two samples either side (exact for a pure
    sine; OPQ's straight line is off by up to 1.4 mHz at 20 samples per cycle). A sample exactly
    0 counts as positive, so the two samples always differ in sign: no division by zero.
    The half-period is the slope of a least-squares fit of crossing time against half-cycle
    count, with separate intercepts for rising and falling crossings (a DC offset or even
    harmonics shift the two apart without biasing the slope). It uses every crossing and is less
    noise-sensitive than OPQ's mean spacing. Crossings too shallow for a fundamental of
    `min_vrms_v` [V rms], or shallower than 80 % of a neighbour (the filters bend crossings next
    to a sudden loss of voltage), are left out, and the half-cycle count bridges the gap; a window
    with fewer than two usable crossings in one direction (an interruption, all zeros) is NaN.

    Accuracy over 10 cycles from 57 to 63 Hz, with harmonics and 0.5 V rms of noise on 120 V:
    within 1.5 mHz (IEC 61000-4-30 Class A asks ±10 mHz, over a 10-s interval). A window cut
    short by an interruption reads within ~0.15 Hz (IEC 61000-4-30 flags such windows). There is
    no warm-up, but the filters need 0.73 cycle of signal on each side, so crossings in the first
    and last 0.73 cycle of the array go unused: pass a cycle of context at each end of a stream.
    """
    samples = as_blocks(samples_v, window_cycles)
    windows = samples.shape[-1] // (window_cycles * SAMPLES_PER_CYCLE)
    return frequency_of_decimated(decimate(samples), samples.shape[-1], windows, min_vrms_v)


def frequency_of_decimated(
    decimated: npt.NDArray[np.float64], n_samples: int, n_windows: int, min_vrms_v: float
) -> npt.NDArray[np.float64]:
    """Frequency [Hz], shape (..., n_windows), from `filters.decimate` of `n_samples` samples."""
    lead_shape = decimated.shape[:-1]
    crossings = crossings_of_decimated(decimated, min_vrms_v)
    if crossings is None:
        return np.full((*lead_shape, n_windows), np.nan)
    row, time, rising = crossings
    window_samples = n_samples // n_windows
    window = np.minimum(time // window_samples, n_windows - 1).astype(np.intp)
    slot = 2 * (row * n_windows + window) + rising
    k = _half_cycle_counts(time, rising)
    t = time - window * window_samples  # keeps the sums small however long the array

    size = 2 * math.prod(lead_shape) * n_windows
    safe_count = np.maximum(np.bincount(slot, minlength=size), 1)
    sum_k = np.bincount(slot, k, minlength=size)
    sum_t = np.bincount(slot, t, minlength=size)
    sxx = np.bincount(slot, k * k, minlength=size) - sum_k * sum_k / safe_count
    sxy = np.bincount(slot, k * t, minlength=size) - sum_k * sum_t / safe_count
    sxx = sxx[0::2] + sxx[1::2]
    sxy = sxy[0::2] + sxy[1::2]
    return _frequency_of_sums(sxx, sxy).reshape(*lead_shape, n_windows)


def crossings_of_decimated(
    decimated: npt.NDArray[np.float64], min_vrms_v: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.bool_]] | None:
    """(row, time, rising) of the usable zero crossings of the fundamental, in time order per row.

    `time` is in samples of the 12 kHz input from its first sample; see `frequency_per_window` for
    how crossings are found and which are left out. None if the array is shorter than the filter.
    """
    taps = smoothing_taps()
    if decimated.shape[-1] < len(taps):
        return None
    if decimated.ndim == 1:
        time, rising = _crossings_of_one(np.convolve(decimated, taps, "valid"), min_vrms_v)
        return np.zeros(len(time), dtype=np.intp), time, rising
    rows = np.reshape(decimated, (-1, decimated.shape[-1]))
    return crossings_of_smoothed(smooth_decimated(rows), min_vrms_v)


def smooth_decimated(decimated: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The 80 Hz low-pass of each row of a 2-D `filters.decimate` output, where its taps fit inside.

    Output i is centred on decimated sample i + 10 (as `np.convolve(..., "valid")` of one row),
    so a row of W samples gives W − 20 (none if shorter than the filter); scipy's correlate1d
    filters every row in one compiled pass.
    """
    half = SMOOTHING_TAPS // 2
    if decimated.shape[-1] < SMOOTHING_TAPS:
        return np.zeros((*decimated.shape[:-1], 0))
    filtered = ndimage.correlate1d(decimated, smoothing_taps(), axis=-1, mode="constant")
    return np.asarray(filtered[..., half:-half], dtype=np.float64)


def crossings_of_smoothed(
    smoothed: npt.NDArray[np.float64], min_vrms_v: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.bool_]] | None:
    """`crossings_of_decimated` of decimated rows whose `smooth_decimated` the caller already has.

    `smoothed` is that output; `time` counts 12 kHz samples from the first sample of the waveform
    the decimated rows came from, as `crossings_of_decimated` of them would. None for rows
    without a sample.
    """
    if smoothed.shape[-1] == 0:
        return None
    if smoothed.shape[-1] == 1:  # no pair of samples: no crossing (and no division by 0 below)
        empty = np.zeros(0, dtype=np.intp)
        return empty, np.zeros(0), np.zeros(0, dtype=np.bool_)
    negative = smoothed < 0
    # Sign changes first, then their steepness: the large arrays see three passes, the few
    # candidates the rest.
    candidate = np.flatnonzero(negative[:, 1:] != negative[:, :-1])
    row, index = np.divmod(candidate, smoothed.shape[-1] - 1)
    before, after = smoothed[row, index], smoothed[row, index + 1]
    steep = np.abs(after - before) >= min_crossing_step(min_vrms_v)
    row, index, before, after = row[steep], index[steep], before[steep], after[steep]
    # Where the amplitude collapses or returns (an interruption, a deep sag), the filters smear the
    # edge and bend the nearest crossings; a crossing shallower than 80 % of a neighbour is dropped.
    # Dropping costs nothing: the half-cycle counts bridge gaps.
    step = np.abs(after - before)
    neighbour = np.zeros_like(step)
    same_row = row[1:] == row[:-1]
    neighbour[1:] = np.where(same_row, step[:-1], 0)
    neighbour[:-1] = np.maximum(neighbour[:-1], np.where(same_row, step[1:], 0))
    keep = step >= NEIGHBOUR_STEP_RATIO * neighbour
    row, index, before, after = row[keep], index[keep], before[keep], after[keep]
    return row, _crossing_time(index, before, after), after >= 0


def _crossings_of_one(
    smoothed: npt.NDArray[np.float64], min_vrms_v: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """`crossings_of_decimated` of one smoothed waveform: the same rules in fewer numpy calls."""
    negative = smoothed < 0
    step = np.abs(np.diff(smoothed))
    index = np.flatnonzero((negative[1:] != negative[:-1]) & (step >= min_crossing_step(min_vrms_v)))
    depth = np.zeros(len(index) + 2)
    depth[1:-1] = step[index]
    keep = depth[1:-1] >= NEIGHBOUR_STEP_RATIO * np.maximum(depth[:-2], depth[2:])
    index = index[keep]
    before, after = smoothed[index], smoothed[index + 1]
    return _crossing_time(index, before, after), after >= 0


def min_crossing_step(min_vrms_v: float) -> float:
    """Least step between the samples either side of a crossing of a sine of `min_vrms_v` [V rms]."""
    # A sine of peak A crossing zero between two samples steps by at least A·sin(ω).
    return math.sqrt(2) * min_vrms_v * math.sin(OMEGA_RAD)


def _crossing_time(
    index: npt.NDArray[np.intp], before: npt.NDArray[np.float64], after: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Time [samples at 12 kHz from the first input] of the crossings after smoothed[index]."""
    # On A·sin(ω·n + φ) through `before` at n = 0 and `after` at n = 1, the crossing lies at
    # n = atan(−before·sin ω / (after − before·cos ω)) / ω; that denominator is never 0.
    fraction = np.arctan(before * -math.sin(OMEGA_RAD) / (after - before * math.cos(OMEGA_RAD)))
    # smoothed[..., i] is centred on input sample DECIMATION·i + the filters' delays.
    time: npt.NDArray[np.float64] = (index + fraction / OMEGA_RAD) * DECIMATION + smoothed_offset_samples()
    return time


def smoothed_offset_samples() -> float:
    """Input sample [12 kHz] on which smoothed[..., 0] is centred: both linear-phase filters' delays."""
    return DECIMATION * (SMOOTHING_TAPS - 1) / 2 + lowpass_delay_samples()


def _frequency_of_sums(sxx: npt.NDArray[np.float64], sxy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Frequency [Hz] from the pooled sums of squares of the crossing fit; NaN without a fit."""
    # sxx is 0 without two crossings in one direction, else at least 2 (half-cycle counts²).
    frequency: npt.NDArray[np.float64] = np.divide(
        SAMPLE_RATE_HZ / 2 * sxx, sxy, out=np.full(sxx.shape, np.nan), where=sxx > 1
    )
    return frequency


def _half_cycle_counts(
    time: npt.NDArray[np.float64], rising: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Half-cycle count of each crossing, robust to crossings skipped in a shallow stretch.

    Between neighbours the count advances by the nominal half-periods elapsed, rounded to an odd
    number when their directions differ and to an even one when they agree; that is right for
    gaps of up to 10 half-cycles anywhere in 57–63 Hz.
    """
    counts = np.zeros(len(time))
    if len(time) > 1:
        odd = rising[1:] != rising[:-1]
        # round((Δt / half-period − odd) / 2): the even part of the half-cycles elapsed.
        halves = np.rint((time[1:] - time[:-1]) * (0.5 / HALF_PERIOD_SAMPLES) - 0.5 * odd)
        np.cumsum(np.maximum(2 * halves + odd, 1), out=counts[1:])
    return counts
