"""Transients: bursts in the high-pass residual, measured against the waveform's fitted steady state."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from opq.domain.constants import NOMINAL_FREQUENCY_HZ, SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE
from opq.domain.metrics import highpass_residual_v
from opq.domain.steady_state import SteadyStateFits

IMPULSIVE_TRANSIENT: Final = "IMPULSIVE_TRANSIENT"
OSCILLATORY_TRANSIENT: Final = "OSCILLATORY_TRANSIENT"
MULTIPLE_ZERO_CROSSING_TRANSIENT: Final = "MULTIPLE_ZERO_CROSSING_TRANSIENT"

NOISE_FLOOR_V: Final = 3.0
"""Default least |residual| [V] that starts a candidate window (OPQ Mauka used 6 V).

0.4-0.5 V rms of white noise on 120 V leaves 0.38-0.48 V rms in the residual, so 3 V is 6.3-7.9 σ:
Gaussian noise passes it about once in 2·10⁹ samples at 0.5 V (2 days of continuous 12 kHz data)
and once in 3·10¹⁴ at 0.4 V; a 3 V transient is 2.5 % of nominal, half what the original could see.
"""
MAX_LULL_MS: Final = 4.0
"""Default longest quiet gap [ms] inside one transient (OPQ Mauka's `max.lull.ms`); ringing at
≥ 300 Hz has half-periods under 1.7 ms, so its lobes never split, while disturbances a quarter
cycle apart stay two."""
LOW_FREQUENCY_OSCILLATORY_MAX_HZ: Final = 5_000.0
"""IEEE 1159 1.2.1 (low) / 1.2.2 (medium, 5-500 kHz) boundary [Hz]. At 12 kHz only < 6 kHz is seen,
so nearly all measured ringing is 1.2.1; 1.2.2 above 6 kHz and all of 1.2.3 alias or vanish."""

MIN_OSCILLATORY_HZ: Final = 2 * NOMINAL_FREQUENCY_HZ
"""Slowest ringing that is an oscillatory transient [Hz]. A bipolar deviation slower than twice the
fundamental is the fundamental itself, missing or added: a sub-cycle dropout leaves out part of the
sine, whose sign changes inside the span and reads as 'ringing' at 60-71 Hz. That is a voltage
variation, the RMS plugins' to report, not a transient."""

_NOISE_MARGIN = 2.0  # the threshold is at least twice the typical per-cycle peak of the residual
_MAX_SPAN_SAMPLES = 50 * SAMPLE_RATE_HZ // 1000  # IEEE 1159 1.2.1 lasts 0.3-50 ms
_GROWTH_SAMPLES = SAMPLES_PER_CYCLE // 4  # a span whose last quarter cycle deviates grows by one


@dataclass(frozen=True)
class Impulse:
    """A unipolar transient (IEEE 1159 1.1): sign, peak [V], rise and decay [ms], category."""

    polarity: Literal["POSITIVE", "NEGATIVE"]
    peak_v: float
    rise_time_ms: float
    """10 % to 90 % of the peak, interpolated; sampling at 12 kHz reads any faster front as ~0.07 ms."""
    decay_time_ms: float | None
    """From the 10 % point of the front to the half value on the tail (IEC 60060-1's T2); None if
    the tail stays above half the peak to the end of what was measured."""
    category: Literal["1.1.2", "1.1.3"]
    """1.1.3 (millisecond) if the decay is over 1 ms, else 1.1.2; 1.1.1 (ns) is not observable."""


@dataclass(frozen=True)
class Oscillation:
    """A bipolar transient (IEEE 1159 1.2): ringing frequency [Hz], decay [ms], peak [V], category."""

    frequency_hz: float
    """From the spacing of the zero crossings between lobes (of lobe peaks, with only two lobes)."""
    decay_time_constant_ms: float | None
    """τ of an exponential envelope fitted to the lobe peaks; None if it does not decay."""
    peak_v: float
    sign_changes: int
    category: Literal["1.2.1", "1.2.2"]


@dataclass(frozen=True)
class Transient:
    """One transient: samples [start_sample, end_sample) where it is above the threshold, and what it is."""

    start_sample: int
    end_sample: int
    peak_v: float
    """The largest deviation from the steady state, signed [V]."""
    threshold_v: float
    impulse: Impulse | None
    oscillation: Oscillation | None
    extra_zero_crossings: int
    """Zero crossings of the waveform beyond those of its steady state, counted with ±threshold
    hysteresis so noise at a crossing adds none."""

    @property
    def classifications(self) -> tuple[str, ...]:
        """The OPQ classification strings this transient carries, possibly several."""
        found = [IMPULSIVE_TRANSIENT] if self.impulse else []
        found += [OSCILLATORY_TRANSIENT] if self.oscillation else []
        found += [MULTIPLE_ZERO_CROSSING_TRANSIENT] if self.extra_zero_crossings > 0 else []
        return tuple(found)


def detection_threshold_v(residual_v: npt.NDArray[np.float64], noise_floor_v: float = NOISE_FLOOR_V) -> float:
    """Least |residual| [V] that starts a candidate: the floor, or twice the median per-cycle peak.

    Steady content in the residual (harmonics above ~500 Hz, periodic notching, a noisy box) is
    in almost every cycle, so it raises the median and never becomes a transient itself; by the
    same token, bursts in more than half the cycles of a waveform (arcing) are not reported.
    """
    whole = residual_v.size // SAMPLES_PER_CYCLE * SAMPLES_PER_CYCLE
    if whole == 0:
        return noise_floor_v
    peaks = np.abs(residual_v[:whole]).reshape(-1, SAMPLES_PER_CYCLE).max(axis=1)
    return max(noise_floor_v, _NOISE_MARGIN * float(np.median(peaks)))


def candidate_windows(
    residual_v: npt.NDArray[np.float64], threshold_v: float, max_lull_samples: int
) -> list[tuple[int, int]]:
    """Sample ranges [first, last + 1) where |residual| > `threshold_v`, merged across short lulls."""
    above = np.flatnonzero(np.abs(residual_v) > threshold_v)
    if above.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(above) > max_lull_samples + 1)
    firsts = np.r_[above[0], above[cuts + 1]]
    lasts = np.r_[above[cuts], above[-1]]
    return list(zip(firsts.tolist(), (lasts + 1).tolist(), strict=True))


def transients(
    samples_v: npt.ArrayLike,
    residual_v: npt.ArrayLike | None = None,
    *,
    noise_floor_v: float = NOISE_FLOOR_V,
    max_lull_ms: float = MAX_LULL_MS,
) -> list[Transient]:
    """The transients in a waveform [V] (IEEE 1159 categories 1.1 and 1.2 as seen at 12 kHz), by start.

    Candidates are windows where the high-pass residual (`highpass_residual_v`, computed if not
    given) exceeds `detection_threshold_v`, merged across lulls up to `max_lull_ms`. The residual
    is only for finding them: a high-pass takes the slow part of an impulse with the fundamental
    and adds an opposite lobe (a 0.1/1 ms impulse of 120 V reads +53/−51 V). So each window is
    measured as the waveform minus its fitted steady state (`steady_state_v`, which also takes
    a sag or switching edge out, so a mere step is no transient). After shrinking the deviation
    by the threshold (OPQ's noise cancelling), one polarity is an impulse and any sign change an
    oscillation; extra zero crossings are counted besides.
    """
    samples = np.asarray(samples_v, dtype=np.float64)
    residual = (
        highpass_residual_v(samples) if residual_v is None else np.asarray(residual_v, dtype=np.float64)
    )
    if samples.ndim != 1 or residual.shape != samples.shape:
        raise ValueError(
            f"samples_v {samples.shape} and residual_v {residual.shape} must be equal 1-D arrays"
        )
    if not (noise_floor_v > 0 and max_lull_ms >= 0):
        raise ValueError(
            f"need noise_floor_v > 0 and max_lull_ms >= 0, not {noise_floor_v} and {max_lull_ms}"
        )
    threshold_v = detection_threshold_v(residual, noise_floor_v)
    pad = max(round(max_lull_ms * SAMPLE_RATE_HZ / 1000), 1)
    spans = [
        (max(first - pad, 0), min(last + pad, samples.size))
        for first, last in candidate_windows(residual, threshold_v, pad)
    ]
    excluded = np.zeros(samples.size, dtype=bool)
    for lo, hi in spans:
        excluded[lo:hi] = True
    fits = SteadyStateFits(samples)
    found = []
    reached = 0
    for start, end in spans:
        lo = max(start, reached)  # a span grown over the next candidate already holds its start
        if lo >= end:
            continue
        deviation, hi = _deviation(fits, residual, lo, end, excluded, threshold_v)
        reached = hi
        transient = _characterise(samples[lo:hi], deviation, lo, threshold_v)
        if transient is not None:
            found.append(transient)
    return found


def _deviation(
    fits: SteadyStateFits,
    residual: npt.NDArray[np.float64],
    lo: int,
    hi: int,
    excluded: npt.NDArray[np.bool_],
    threshold_v: float,
) -> tuple[npt.NDArray[np.float64], int]:
    """The waveform minus its steady state [V] over [lo, hi'), and hi', the end it grew to.

    Ringing below ~500 Hz hardly shows in the residual, so the span grows while its tail still
    deviates, up to IEEE 1159's longest oscillatory transient (50 ms, 1.2.1).
    """
    samples = fits.samples_v
    while True:
        steady = fits.around(lo, hi, excluded=excluded, tolerance_v=threshold_v)
        if steady is None:
            return residual[lo:hi], hi
        deviation = samples[lo:hi] - steady
        tail_active = bool(np.any(np.abs(deviation[-_GROWTH_SAMPLES:]) > threshold_v))
        if not tail_active or hi == samples.size or hi - lo + _GROWTH_SAMPLES > _MAX_SPAN_SAMPLES:
            return deviation, hi
        excluded[hi : hi + _GROWTH_SAMPLES] = True
        hi = min(hi + _GROWTH_SAMPLES, samples.size)


def _characterise(
    samples: npt.NDArray[np.float64], deviation: npt.NDArray[np.float64], offset: int, threshold_v: float
) -> Transient | None:
    support = np.flatnonzero(np.abs(deviation) > threshold_v)
    if support.size == 0:
        return None
    peak = int(np.argmax(np.abs(deviation)))
    shrunk = np.sign(deviation) * np.maximum(np.abs(deviation) - threshold_v, 0.0)
    signs = np.sign(shrunk[support])
    sign_changes = int(np.count_nonzero(signs[1:] != signs[:-1]))
    oscillation = _oscillation(deviation, support, signs, sign_changes, threshold_v) if sign_changes else None
    if oscillation is not None and oscillation.frequency_hz < MIN_OSCILLATORY_HZ:
        return None
    band = np.sign(samples) * (np.abs(samples) > threshold_v)
    steady_band = np.sign(samples - deviation) * (np.abs(samples - deviation) > threshold_v)
    return Transient(
        start_sample=offset + int(support[0]),
        end_sample=offset + int(support[-1]) + 1,
        peak_v=float(deviation[peak]),
        threshold_v=threshold_v,
        impulse=_impulse(deviation, peak) if sign_changes == 0 else None,
        oscillation=oscillation,
        extra_zero_crossings=max(_crossings(band) - _crossings(steady_band), 0),
    )


def _impulse(deviation: npt.NDArray[np.float64], peak: int) -> Impulse:
    pulse = deviation * np.sign(deviation[peak])  # positive-going whatever the polarity
    height = float(pulse[peak])
    start = _level_before(pulse, peak, 0.1 * height)
    rise = _level_before(pulse, peak, 0.9 * height) - start
    half = _level_after(pulse, peak, 0.5 * height)
    decay_ms = None if half is None else (half - start) * 1000 / SAMPLE_RATE_HZ
    return Impulse(
        polarity="POSITIVE" if deviation[peak] > 0 else "NEGATIVE",
        peak_v=float(deviation[peak]),
        rise_time_ms=rise * 1000 / SAMPLE_RATE_HZ,
        decay_time_ms=decay_ms,
        category="1.1.3" if decay_ms is not None and decay_ms > 1.0 else "1.1.2",
    )


def _level_before(pulse: npt.NDArray[np.float64], peak: int, level: float) -> float:
    """Where the front last rises through `level` before the peak [fractional sample]."""
    below = np.flatnonzero(pulse[:peak] < level)
    if below.size == 0:
        return 0.0
    i = int(below[-1])
    return float(i + (level - pulse[i]) / (pulse[i + 1] - pulse[i]))


def _level_after(pulse: npt.NDArray[np.float64], peak: int, level: float) -> float | None:
    """Where the tail first falls through `level` after the peak [fractional sample]; None if never."""
    below = np.flatnonzero(pulse[peak:] < level)
    if below.size == 0:
        return None
    i = peak + int(below[0])
    return float(i - 1 + (pulse[i - 1] - level) / (pulse[i - 1] - pulse[i]))


def _oscillation(
    deviation: npt.NDArray[np.float64],
    support: npt.NDArray[np.intp],
    signs: npt.NDArray[np.float64],
    sign_changes: int,
    threshold_v: float,
) -> Oscillation:
    # A lobe is a stretch of one sign above the threshold; lobes alternate in sign.
    bounds = np.r_[0, np.flatnonzero(signs[1:] != signs[:-1]) + 1, signs.size]
    lobes = [(int(support[a]), int(support[b - 1]) + 1) for a, b in itertools.pairwise(bounds)]
    peaks = [
        _lobe_peak(np.abs(deviation), first + int(np.argmax(np.abs(deviation[first:end]))))
        for first, end in lobes
    ]
    crossings = [_zero_crossing(deviation, end - 1, nxt) for (_, end), (nxt, _) in itertools.pairwise(lobes)]
    if len(crossings) >= 2:
        half_period = (crossings[-1] - crossings[0]) / (len(crossings) - 1)
    else:
        half_period = peaks[1][0] - peaks[0][0]
    # Lobes just above the threshold are the ones noise lifted over it: leave them out of the fit.
    strong = [(t, h) for t, h in peaks if h >= 2 * threshold_v]
    fitted = strong if len(strong) >= 2 else peaks
    slope = float(np.polyfit([t for t, _ in fitted], np.log([h for _, h in fitted]), 1)[0])
    frequency_hz = SAMPLE_RATE_HZ / (2 * half_period)
    peak = int(np.argmax(np.abs(deviation)))
    return Oscillation(
        frequency_hz=frequency_hz,
        decay_time_constant_ms=-1000 / (slope * SAMPLE_RATE_HZ) if slope < 0 else None,
        peak_v=float(deviation[peak]),
        sign_changes=sign_changes,
        category="1.2.1" if frequency_hz < LOW_FREQUENCY_OSCILLATORY_MAX_HZ else "1.2.2",
    )


def _lobe_peak(magnitude: npt.NDArray[np.float64], i: int) -> tuple[float, float]:
    """(position [fractional sample], height [V]) of the parabola through a lobe's top three samples."""
    if not 0 < i < magnitude.size - 1:
        return float(i), float(magnitude[i])
    before, top, after = magnitude[i - 1], magnitude[i], magnitude[i + 1]
    curvature = before - 2 * top + after
    if curvature >= 0:
        return float(i), float(top)
    shift = 0.5 * (before - after) / curvature
    return i + shift, float(top - 0.25 * (before - after) * shift)


def _zero_crossing(deviation: npt.NDArray[np.float64], first: int, last: int) -> float:
    """Mean position of the sign changes of `deviation` between two samples [fractional sample]."""
    stretch = deviation[first : last + 1]
    changes = np.flatnonzero(np.signbit(stretch[1:]) != np.signbit(stretch[:-1]))
    if changes.size == 0:
        return (first + last) / 2
    before, after = stretch[changes], stretch[changes + 1]
    return first + float(np.mean(changes + before / (before - after)))


def _crossings(band: npt.NDArray[np.float64]) -> int:
    """Sign changes in a series of −1 / 0 / +1, ignoring the zeros (the hysteresis band)."""
    signs = band[band != 0]
    return int(np.count_nonzero(signs[1:] != signs[:-1]))
