"""The four box metrics of a span of cycles, each row in one compiled pass (numba).

`span_metrics` and `fleet_span_metrics` give a box's measurements their values; done with numpy, a
box measuring six times a second paid ~280 numpy calls a measurement, which cost far more than
the arithmetic (a second is 12,000 samples). Here each row of a span goes through one compiled
pass: the low-pass and decimation, the smoothing, zero crossings and fit of the frequency, the
synchronous RMS, the high-pass transient, and each THD window's flat-top weighing, FFT (numpy's
FFT compiled, from rocket-fft) and harmonics. The filters and rules are those of the numpy
definitions (`filters`, `frequency`, `synchronous_rms`, `metrics`, `harmonics`), and the values
theirs to floating-point rounding (`tests/test_compiled_span.py`).

numba caches the machine code beside this file (`cache=True`): the first process on a machine
compiles it (about 4 s), later ones load it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

from opq.domain.constants import NOMINAL_FREQUENCY_HZ, SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE, THD_MAX_HARMONIC
from opq.domain.filters import DECIMATION, EDGE_SAMPLES, lowpass_taps
from opq.domain.frequency import (
    HALF_PERIOD_SAMPLES,
    NEIGHBOUR_STEP_RATIO,
    OMEGA_RAD,
    SMOOTHING_TAPS,
    min_crossing_step,
    smoothed_offset_samples,
    smoothing_taps,
)
from opq.domain.harmonics import CENTROID_HALF_WIDTH_BINS, flattop_gain, flattop_window
from opq.domain.synchronous_rms import PERIOD_FREQUENCY_RANGE_HZ

_Function = TypeVar("_Function", bound=Callable[..., Any])


def _compiled(function: _Function) -> _Function:
    # Reassociation lets the compiler vectorize the filters' sums; NaN and infinities keep their meaning.
    return cast(_Function, numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})(function))


_SIN_OMEGA: Final = math.sin(OMEGA_RAD)
_COS_OMEGA: Final = math.cos(OMEGA_RAD)
_SMOOTHED_OFFSET_SAMPLES: Final = smoothed_offset_samples()
_LOWEST_HZ, _HIGHEST_HZ = PERIOD_FREQUENCY_RANGE_HZ
_TAPS_PER_PHASE: Final = len(lowpass_taps()) // DECIMATION


@functools.cache
def _filters() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(low-pass taps, interpolation phases (9, 10), smoothing taps), contiguous for the loops."""
    taps = np.ascontiguousarray(lowpass_taps())
    # phases[q, r] = 10·taps[10·(8 − q) + r]: interpolated sample 10·k + r = Σ_q phases[q, r]·d[k + q].
    phases = np.ascontiguousarray(DECIMATION * taps.reshape(_TAPS_PER_PHASE, DECIMATION)[::-1])
    return taps, phases, np.ascontiguousarray(smoothing_taps())


class SpanMetrics(NamedTuple):
    """Per-cycle RMS and transient of a span, and the frequency and THD of each window asked for.

    A leading rows axis for many waveforms (`span_rows`, `fleet_span_metrics`), none for one.
    """

    rms_v: npt.NDArray[np.float64]
    """RMS over one period of the fundamental centred on each cycle [V] (NaN outside the measured cycles)."""
    transient_v: npt.NDArray[np.float64]
    """Largest high-passed excursion in each cycle [V]; the first and last 80 samples are not seen."""
    frequency_hz: npt.NDArray[np.float64]
    """Frequency of each frequency window [Hz] (NaN without two crossings in one direction)."""
    thd_ratio: npt.NDArray[np.float64]
    """THD of each THD window [ratio] (NaN in an interruption)."""


def span_rows(
    samples_v: npt.NDArray[np.float64],
    span_cycles: tuple[int, int],
    frequency_windows: Sequence[tuple[int, int]],
    thd_windows: Sequence[tuple[int, int]],
    period_windows: Sequence[int],
    measured_cycles: tuple[int, int],
    min_vrms_v: float,
) -> SpanMetrics:
    """The box metrics of cycles `span_cycles` = (first, stop) of each row of `samples_v` [V].

    The definitions of `span_metrics`: windows are (first, stop) cycles from the span's start,
    cycle c's RMS is over one period of frequency window `period_windows[c]`'s frequency (−1:
    the nominal period), and only cycles in `measured_cycles` = (first, stop) get an RMS and a
    transient (the others read NaN). Shapes: (rows, cycles) for rms and trans, (rows, windows)
    for f and thd. `samples_v` is C-contiguous (a cohort's whole history): the loops then run on
    contiguous memory, which they need to be quick, and the span is not copied.
    """
    low, high = span_cycles
    n_rows = len(samples_v)
    metrics = SpanMetrics(
        rms_v=np.empty((n_rows, high - low)),
        transient_v=np.empty((n_rows, high - low)),
        frequency_hz=np.empty((n_rows, len(frequency_windows))),
        thd_ratio=np.empty((n_rows, len(thd_windows))),
    )
    weights, weight_starts, least_powers = _thd_weights(tuple(b - a for a, b in thd_windows), min_vrms_v)
    _span_rows(
        np.ascontiguousarray(samples_v, dtype=np.float64),
        low * SAMPLES_PER_CYCLE,
        high * SAMPLES_PER_CYCLE,
        np.array(frequency_windows, dtype=np.int64).reshape(-1, 2),
        np.array(thd_windows, dtype=np.int64).reshape(-1, 2),
        np.asarray(period_windows, dtype=np.int64),
        measured_cycles[0],
        measured_cycles[1],
        min_crossing_step(min_vrms_v),
        (*_filters(), weights, weight_starts, least_powers),
        metrics,
    )
    return metrics


@functools.lru_cache(maxsize=64)
def _thd_weights(
    lengths: tuple[int, ...], min_vrms_v: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """For THD windows of these lengths [cycles]: their flat-top windows laid end to end, where each
    starts, and the least fundamental power of a live window (a sine of `min_vrms_v` through it)."""
    windows = [flattop_window(n * SAMPLES_PER_CYCLE) for n in lengths]
    starts = np.cumsum([0, *[len(w) for w in windows]])
    least_powers = [(math.sqrt(2) * min_vrms_v * flattop_gain(len(w)) / 2) ** 2 for w in windows]
    return np.concatenate([np.empty(0), *windows]), starts, np.array(least_powers, dtype=np.float64)


@_compiled
def _span_rows(
    samples: Any,
    start: int,
    stop: int,
    frequency_windows: Any,
    thd_windows: Any,
    period_windows: Any,
    first: int,
    last: int,
    min_step: float,
    tables: Any,
    out: Any,
) -> None:
    taps, phases, smoothing, weights, weight_starts, least_powers = tables
    rms_out, transient_out, frequency_out, thd_out = out
    n_decimated = max((stop - start) // DECIMATION - _TAPS_PER_PHASE + 1, 0)
    decimated = np.empty(n_decimated)
    smoothed = np.empty(max(n_decimated - SMOOTHING_TAPS + 1, 0))
    crossing_time = np.empty(len(smoothed))
    crossing_rising = np.empty(len(smoothed), dtype=np.bool_)
    periods = np.empty(len(frequency_windows) + 1)
    periods[-1] = SAMPLES_PER_CYCLE  # period_windows −1: the nominal period
    rms_out[:] = np.nan  # the cycles outside [first, last) keep NaN
    transient_out[:] = np.nan
    for row in range(len(samples)):
        x = samples[row, start:stop]
        _decimate(x, taps, decimated)
        _smooth(decimated, smoothing, smoothed)
        n_crossings = _crossings(smoothed, min_step, crossing_time, crossing_rising)
        _frequency_of_windows(
            crossing_time[:n_crossings], crossing_rising[:n_crossings], frequency_windows, frequency_out[row]
        )
        for w in range(len(frequency_windows)):
            periods[w] = _period(frequency_out[row, w])
        _rms_of_cycles(x, periods, period_windows, first, last, rms_out[row])
        _transient_of_cycles(x, decimated, phases, first, last, transient_out[row])
        for w in range(len(thd_windows)):
            window = weights[weight_starts[w] : weight_starts[w + 1]]
            frame_start = thd_windows[w, 0] * SAMPLES_PER_CYCLE
            frame = window * x[frame_start : frame_start + len(window)]
            thd_out[row, w] = _thd_of_spectrum(np.fft.rfft(frame), len(window), least_powers[w])


@_compiled
def _decimate(x: Any, taps: Any, out: Any) -> None:
    """`filters.decimate`: output j is the low-pass over input samples [10·j, 10·j + 90)."""
    for j in range(len(out)):
        base = DECIMATION * j
        total = 0.0
        for i in range(_TAPS_PER_PHASE * DECIMATION):
            total += taps[i] * x[base + i]
        out[j] = total


@_compiled
def _smooth(decimated: Any, smoothing: Any, out: Any) -> None:
    """`frequency.smooth_decimated` of one row: output i is centred on decimated sample i + 10."""
    n_taps = len(smoothing)
    for i in range(len(out)):
        total = 0.0
        for t in range(n_taps):
            total += smoothing[t] * decimated[i + t]
        out[i] = total


@_compiled
def _crossings(smoothed: Any, min_step: float, time_out: Any, rising_out: Any) -> int:
    """`frequency.crossings_of_smoothed` of one row: how many, their times [samples] and directions."""
    n_candidates = 0
    # First the steep sign changes (their index parked in time_out, their step in steps)...
    steps = np.empty(len(time_out))
    for i in range(len(smoothed) - 1):
        before, after = smoothed[i], smoothed[i + 1]
        if (before < 0) != (after < 0) and abs(after - before) >= min_step:
            time_out[n_candidates] = i
            steps[n_candidates] = abs(after - before)
            n_candidates += 1
    # ...then those at least 80 % as steep as their steep neighbours, timed on the sine through both samples.
    n_kept = 0
    for c in range(n_candidates):
        neighbour = 0.0
        if c > 0:
            neighbour = steps[c - 1]
        if c + 1 < n_candidates:
            neighbour = max(neighbour, steps[c + 1])
        if steps[c] < NEIGHBOUR_STEP_RATIO * neighbour:
            continue
        index = int(time_out[c])
        before, after = smoothed[index], smoothed[index + 1]
        fraction = math.atan(before * -_SIN_OMEGA / (after - before * _COS_OMEGA))
        time_out[n_kept] = (index + fraction / OMEGA_RAD) * DECIMATION + _SMOOTHED_OFFSET_SAMPLES
        rising_out[n_kept] = after >= 0
        n_kept += 1
    return n_kept


@_compiled
def _frequency_of_windows(time: Any, rising: Any, windows: Any, out: Any) -> None:
    """`frequency.frequency_of_crossings`: per window, the slope of crossing time against half-cycle count."""
    counts = np.zeros(len(time))  # half-cycle counts (`frequency._half_cycle_counts`)
    for m in range(1, len(time)):
        odd = 1.0 if rising[m] != rising[m - 1] else 0.0
        halves = np.rint((time[m] - time[m - 1]) * (0.5 / HALF_PERIOD_SAMPLES) - 0.5 * odd)
        counts[m] = counts[m - 1] + max(2 * halves + odd, 1.0)
    sums = np.empty((2, 5))  # per direction: n, Σk, Σt, Σk², Σk·t
    for w in range(len(windows)):
        start, stop = windows[w, 0] * SAMPLES_PER_CYCLE, windows[w, 1] * SAMPLES_PER_CYCLE
        sums[:] = 0.0
        origin = math.nan  # times from the window's first crossing keep the sums small
        for m in range(len(time)):
            if time[m] < start or time[m] >= stop:
                continue
            if origin != origin:
                origin = time[m]
            d = 0 if rising[m] else 1
            k, t = counts[m], time[m] - origin
            sums[d, 0] += 1.0
            sums[d, 1] += k
            sums[d, 2] += t
            sums[d, 3] += k * k
            sums[d, 4] += k * t
        sxx = sxy = 0.0
        for d in range(2):
            n = max(sums[d, 0], 1.0)
            sxx += sums[d, 3] - sums[d, 1] * sums[d, 1] / n
            sxy += sums[d, 4] - sums[d, 1] * sums[d, 2] / n
        # sxx is 0 without two crossings in one direction, else at least 2 (half-cycle counts²).
        out[w] = SAMPLE_RATE_HZ / 2 * sxx / sxy if sxx > 1 else math.nan


@_compiled
def _period(frequency_hz: float) -> float:
    """`synchronous_rms.period_samples`: NaN gives the nominal 200 samples."""
    if frequency_hz != frequency_hz:
        return float(SAMPLES_PER_CYCLE)
    return SAMPLE_RATE_HZ / min(max(frequency_hz, _LOWEST_HZ), _HIGHEST_HZ)


@_compiled
def _rms_of_cycles(x: Any, periods: Any, period_windows: Any, first: int, stop: int, out: Any) -> None:
    """`synchronous_rms.rms_over_periods` of cycles [first, stop): one period centred on each cycle.

    A period reaching before sample 0 moves right, one past the end moves left, and one longer
    than the array is cut to it; the fractional samples at its edges weigh what lies inside.
    """
    n_cycles = len(x) // SAMPLES_PER_CYCLE
    for c in range(first, stop):
        left = 0.5 * (SAMPLES_PER_CYCLE - periods[period_windows[c]])  # after the cycle's start
        right = -left  # after the cycle's end
        if c == 0 and left < 0:
            right -= left
            left = 0.0
        if c == n_cycles - 1 and right > 0:
            left -= right
            right = 0.0
        if c == 0:
            left = max(left, 0.0)
        start = c * SAMPLES_PER_CYCLE
        total = 0.0
        for n in range(start, start + SAMPLES_PER_CYCLE):
            total += x[n] * x[n]
        total += _signed_square_sum(x, start + SAMPLES_PER_CYCLE, right) - _signed_square_sum(x, start, left)
        out[c] = math.sqrt(max(total / (SAMPLES_PER_CYCLE - left + right), 0.0))


@_compiled
def _signed_square_sum(x: Any, boundary: int, edge: float) -> float:
    """Σ v² from `boundary` to `boundary + edge` [samples, fractional]; negative when edge < 0.

    Sample n stands for [n, n + 1), so an edge inside it takes that fraction of it.
    """
    total = 0.0
    if edge >= 0:
        for o in range(math.ceil(edge)):
            total += x[boundary + o] ** 2 * min(edge - o, 1.0)
    else:
        for o in range(math.floor(edge), 0):
            total -= x[boundary + o] ** 2 * min(o + 1 - edge, 1.0)
    return total


@_compiled
def _transient_of_cycles(x: Any, decimated: Any, phases: Any, first: int, stop: int, out: Any) -> None:
    """`metrics.transient_of_decimated` of cycles [first, stop): largest |x − low-pass| in each.

    The low-pass round trip (`filters.interpolate` of the decimation) reaches input samples
    [80, n − 80); a cycle outside that reach reads NaN.
    """
    covered_stop = (len(decimated) - _TAPS_PER_PHASE + 1) * DECIMATION + EDGE_SAMPLES
    for c in range(first, stop):
        low = max(c * SAMPLES_PER_CYCLE, EDGE_SAMPLES)
        high = min((c + 1) * SAMPLES_PER_CYCLE, covered_stop)
        if high <= low:
            continue
        largest = 0.0
        # Input sample n = 80 + 10·k + r is Σ_q phases[q, r]·decimated[k + q]; a cycle is whole blocks of k.
        for k in range((low - EDGE_SAMPLES) // DECIMATION, (high - EDGE_SAMPLES) // DECIMATION):
            base = EDGE_SAMPLES + DECIMATION * k
            for r in range(DECIMATION):
                lowpassed = 0.0
                for q in range(_TAPS_PER_PHASE):
                    lowpassed += phases[q, r] * decimated[k + q]
                largest = max(largest, abs(x[base + r] - lowpassed))
        out[c] = largest


@_compiled
def _thd_of_spectrum(bins: Any, n_window: int, least_power: float) -> float:
    """`harmonics.thd_of_spectrum` of one frame's rfft, the fundamental at the power centroid near 60 Hz."""
    nominal_bin = round(NOMINAL_FREQUENCY_HZ * n_window / SAMPLE_RATE_HZ)
    total = moment = 0.0
    for b in range(
        max(nominal_bin - CENTROID_HALF_WIDTH_BINS, 0),
        min(nominal_bin + CENTROID_HALF_WIDTH_BINS + 1, len(bins)),
    ):
        power = abs(bins[b]) ** 2
        total += power
        moment += power * b
    if not total > 0:
        return math.nan
    fundamental_bin = moment / total
    fundamental = harmonics = 0.0
    for order in range(1, THD_MAX_HARMONIC + 1):
        centre = fundamental_bin * order
        if not centre < len(bins) - 0.5:
            break
        power = abs(bins[int(np.rint(centre))]) ** 2
        if order == 1:
            fundamental = power
        else:
            harmonics += power
    if fundamental >= least_power and fundamental > 0:
        return math.sqrt(harmonics / fundamental)
    return math.nan
