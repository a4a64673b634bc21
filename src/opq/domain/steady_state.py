"""The steady state of a waveform around a disturbance: fundamental and harmonics fitted either side."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import optimize

from opq.domain.constants import SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE

_CONTEXT_SAMPLES = 2 * SAMPLES_PER_CYCLE
_HARMONICS = 15  # steady harmonics to 900 Hz are part of the steady state, not of a disturbance
_FIT_RANGE_HZ = (57.0, 63.0)
_STEP_RATIO = 2.0  # a joint fit this much worse (rms) than one per side: the steady state changed


def steady_state_v(
    samples_v: npt.NDArray[np.float64],
    lo: int,
    hi: int,
    *,
    excluded: npt.NDArray[np.bool_] | None = None,
    tolerance_v: float,
) -> npt.NDArray[np.float64] | None:
    """The steady state [V] of samples [lo, hi), fitted on up to two cycles either side of them.

    The model is DC plus the fundamental and harmonics 2-15 at the frequency in 57-63 Hz that fits
    best (least squares); samples marked `excluded` (other disturbances) are left out of the fit.
    If one fit across both sides is more than twice as bad as a fit to each side, the steady
    state changed inside the span (a sag, a swell, a switching step): the earlier side's fit holds
    until the waveform first departs from it by more than `tolerance_v` [V], the later side's
    from there on. None if neither side has a whole cycle to fit.
    """
    samples = np.asarray(samples_v, dtype=np.float64)
    if excluded is None:
        excluded = np.zeros(samples.size, dtype=bool)
    start = max(lo - _CONTEXT_SAMPLES, 0)
    before = np.flatnonzero(~excluded[start:lo]) + start
    after = np.flatnonzero(~excluded[hi : hi + _CONTEXT_SAMPLES]) + hi
    sides = [side for side in (before, after) if side.size >= SAMPLES_PER_CYCLE]
    span = np.arange(lo, hi)
    if not sides:
        return None
    if len(sides) == 1:
        return _fit(samples, sides[0], span, lo, _best_frequency_hz(samples, sides[0], lo))[0]
    frequency_hz = _best_frequency_hz(samples, np.r_[before, after], lo)
    joint, joint_rms = _fit(samples, np.r_[before, after], span, lo, frequency_hz)
    early_rms = _fit(samples, before, span, lo, frequency_hz)[1]
    late_rms = _fit(samples, after, span, lo, frequency_hz)[1]
    if joint_rms <= _STEP_RATIO * math.hypot(early_rms, late_rms) / math.sqrt(2):
        return joint
    # The steady state changed inside the span (a sag or switching edge): each side's own fit (the
    # joint fit's frequency is biased by the step, so each side searches its own).
    early = _fit(samples, before, span, lo, _best_frequency_hz(samples, before, lo))[0]
    late = _fit(samples, after, span, lo, _best_frequency_hz(samples, after, lo))[0]
    # The new steady state holds from the moment the waveform leaves the old one (a switching
    # instant), so whatever rings after it is measured against the new one.
    span_v = samples[lo:hi]
    left = np.flatnonzero(np.abs(span_v - early) > tolerance_v)
    split = int(left[0]) if left.size else hi - lo
    steady = np.concatenate([early[:split], late[split:]])
    # A ramp from one steady state to the other (a recovery over a few ms) lies between the two
    # fits: that is the switching edge itself, not a deviation from either.
    low, high = np.minimum(early, late) - tolerance_v, np.maximum(early, late) + tolerance_v
    between = (span_v >= low) & (span_v <= high)
    outside = np.flatnonzero(~between[split:])
    edge_end = split + (int(outside[0]) if outside.size else hi - lo - split)
    steady[split:edge_end] = span_v[split:edge_end]
    return steady


def _best_frequency_hz(samples: npt.NDArray[np.float64], fitted: npt.NDArray[np.intp], origin: int) -> float:
    """The frequency in 57-63 Hz [Hz] at which the steady-state model best fits samples `fitted`."""
    values = samples[fitted]

    def error(frequency_hz: float) -> float:
        design = _design(fitted - origin, frequency_hz)
        projection = design.T @ values
        return float(values @ values - projection @ np.linalg.solve(design.T @ design, projection))

    # A cycle of context resolves ±60 Hz, so the error has one minimum in 57-63 Hz. 1 mHz is plenty:
    # over the few cycles fitted it shifts the phase by under 0.001 rad (0.1 V at 120 V).
    best = optimize.minimize_scalar(error, bounds=_FIT_RANGE_HZ, method="bounded", options={"xatol": 1e-3})
    return float(best.x)


def _fit(
    samples: npt.NDArray[np.float64],
    fitted: npt.NDArray[np.intp],
    wanted: npt.NDArray[np.intp],
    origin: int,
    frequency_hz: float,
) -> tuple[npt.NDArray[np.float64], float]:
    """Least-squares fundamental + harmonics + DC at `frequency_hz` on samples `fitted`: its values
    at samples `wanted` [V] and its rms error [V]."""
    design = _design(fitted - origin, frequency_hz)
    coefficients = np.linalg.solve(design.T @ design, design.T @ samples[fitted])
    rms_v = float(np.sqrt(np.mean((design @ coefficients - samples[fitted]) ** 2)))
    return _design(wanted - origin, frequency_hz) @ coefficients, rms_v


def _design(offsets: npt.NDArray[np.intp], frequency_hz: float) -> npt.NDArray[np.float64]:
    """Columns 1, cos(hωt), sin(hωt) for h = 1.._HARMONICS at sample offsets `offsets`."""
    # e^{ihωt} as successive powers of e^{iωt}: one complex exponential a sample instead of 30
    # cosines and sines (this runs ~10 times per fit, inside the frequency search).
    fundamental = np.exp(1j * offsets * (2 * math.pi * frequency_hz / SAMPLE_RATE_HZ))
    harmonics = np.cumprod(np.repeat(fundamental[:, None], _HARMONICS, axis=1), axis=1)
    return np.column_stack([np.ones(offsets.size), harmonics.real, harmonics.imag])
