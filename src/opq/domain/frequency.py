"""Grid frequency [Hz] from interpolated zero crossings of the low-passed waveform."""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from opq.domain.constants import (
    FREQUENCY_WINDOW_CYCLES,
    INTERRUPTION_VRMS_V,
    NOMINAL_FREQUENCY_HZ,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
)
from opq.domain.filters import DECIMATED_RATE_HZ, DECIMATION, decimate, lowpass_delay_samples
from opq.domain.waveform import as_blocks

_SMOOTHING_TAPS = 21  # ±0.5 cycle at 1.2 kHz
_NEIGHBOUR_STEP_RATIO = 0.8  # even harmonics make rising and falling steps differ by a few %
_SMOOTHING_CUTOFF_HZ = 80.0
_HALF_PERIOD_SAMPLES = SAMPLE_RATE_HZ / (2 * NOMINAL_FREQUENCY_HZ)  # nominal [samples]
_OMEGA_RAD = 2 * math.pi * NOMINAL_FREQUENCY_HZ / DECIMATED_RATE_HZ  # per 1.2 kHz sample


@functools.cache
def _smoothing_taps() -> npt.NDArray[np.float64]:
    """Linear-phase low-pass at 1.2 kHz (Hamming, 21 taps, 80 Hz), gain 1 at 60 Hz.

    It leaves a near-pure fundamental: noise and harmonics 3 and up are what bend crossings.
    """
    taps = signal.firwin(_SMOOTHING_TAPS, _SMOOTHING_CUTOFF_HZ, fs=DECIMATED_RATE_HZ)
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
    taps = _smoothing_taps()
    if decimated.shape[-1] < len(taps):
        return np.full((*lead_shape, n_windows), np.nan)
    if decimated.ndim == 1:
        smoothed = np.convolve(decimated, taps, "valid")[np.newaxis]
    else:
        smoothed = sliding_window_view(decimated, len(taps), axis=-1) @ taps
        smoothed = smoothed.reshape(-1, smoothed.shape[-1])
    # smoothed[..., i] is centred on input sample DECIMATION·i + offset_samples.
    offset_samples = DECIMATION * (len(taps) - 1) / 2 + lowpass_delay_samples()

    negative = smoothed < 0
    # A sine of peak A crossing zero between two samples steps by at least A·sin(ω).
    steep = np.abs(smoothed[:, 1:] - smoothed[:, :-1]) >= (math.sqrt(2) * min_vrms_v * math.sin(_OMEGA_RAD))
    row, index = np.nonzero((negative[:, 1:] != negative[:, :-1]) & steep)
    before = smoothed[row, index]
    after = smoothed[row, index + 1]
    # Where the amplitude collapses or returns (an interruption, a deep sag), the filters smear the
    # edge and bend the nearest crossings; a crossing shallower than 80 % of a neighbour is dropped.
    # Dropping costs nothing: the half-cycle counts bridge gaps.
    step = np.abs(after - before)
    neighbour = np.zeros_like(step)
    same_row = row[1:] == row[:-1]
    neighbour[1:] = np.where(same_row, step[:-1], 0)
    neighbour[:-1] = np.maximum(neighbour[:-1], np.where(same_row, step[1:], 0))
    keep = step >= _NEIGHBOUR_STEP_RATIO * neighbour
    row, index, before, after = row[keep], index[keep], before[keep], after[keep]
    # On A·sin(ω·n + φ) through `before` at n = 0 and `after` at n = 1, the crossing lies at
    # n = atan(−before·sin ω / (after − before·cos ω)) / ω; that denominator is never 0.
    fraction = (
        np.arctan(before * -math.sin(_OMEGA_RAD) / (after - before * math.cos(_OMEGA_RAD))) / _OMEGA_RAD
    )
    time = (index + fraction) * DECIMATION + offset_samples
    rising = after >= 0

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
    # sxx is 0 without two crossings in one direction, else at least 2 (half-cycle counts²).
    frequency: npt.NDArray[np.float64] = np.divide(
        SAMPLE_RATE_HZ / 2 * sxx, sxy, out=np.full(sxx.shape, np.nan), where=sxx > 1
    )
    return frequency.reshape(*lead_shape, n_windows)


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
        halves = np.rint(((time[1:] - time[:-1]) * (1 / _HALF_PERIOD_SAMPLES) - odd) * 0.5)
        np.cumsum(np.maximum(2 * halves + odd, 1), out=counts[1:])
    return counts
