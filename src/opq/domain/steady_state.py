"""The steady state of a waveform around a disturbance: fundamental and harmonics fitted either side."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import optimize

from opq.domain.constants import NOMINAL_FREQUENCY_HZ, SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE

_CONTEXT_SAMPLES = 2 * SAMPLES_PER_CYCLE
_HARMONICS = 15  # steady harmonics to 900 Hz are part of the steady state, not of a disturbance
_FIT_RANGE_HZ = (57.0, 63.0)
_STEP_RATIO = 2.0  # a joint fit this much worse (rms) than one per side: the steady state changed
_TOLERANCE_HZ = 1e-3  # over the few cycles fitted 1 mHz shifts the phase by under 0.001 rad (0.1 V)
_PROBE_HZ = 0.02  # spacing of the three frequencies whose errors give one Newton step
_EXPLAINED_RMS_RATIO = 0.5  # a fit leaving under a quarter of the power found the grid's frequency
_MAX_STEP_HZ = 0.5  # a Newton step goes no further, so it settles in the nearest minimum
_MAX_NEWTON_STEPS = 20

# Model column j is Re(_PHASES[j] · e^{i·_ORDERS[j]·ωt}): DC, cos(hωt) for h = 1..15, sin(hωt).
# Written so, every column product is a sum of two exponentials, and the normal equations
# need only Σ e^{imωt} for m ≤ 30 instead of the 31 × 31 products of the columns.
_ORDERS = np.r_[0, np.arange(1, _HARMONICS + 1), np.arange(1, _HARMONICS + 1)]
_PHASES = np.r_[1.0, np.ones(_HARMONICS), np.full(_HARMONICS, -1j)]
_HIGHEST = 2 * _HARMONICS
_ALL_ORDERS = np.arange(1, _HIGHEST + 1)
_SUM_ORDER = _ORDERS[:, None] + _ORDERS[None, :] + _HIGHEST  # index into sums for m = -30..30
_DIFFERENCE_ORDER = _ORDERS[:, None] - _ORDERS[None, :] + _HIGHEST
_SUM_PHASE = _PHASES[:, None] * _PHASES[None, :]
_DIFFERENCE_PHASE = _PHASES[:, None] * np.conj(_PHASES)[None, :]

NormalEquations = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, int]
"""Gram matrix (…, 31, 31), projection (…, 31), Σ v² [V²] and the number of samples of a fit."""


class SteadyStateFits:
    """Steady-state fits around spans of one waveform [V] (see `steady_state_v`).

    A grid's frequency moves by mHz within a capture, so each frequency search starts from the one
    the previous fit found: it then mostly needs a single Newton step to confirm it.
    """

    def __init__(self, samples_v: npt.ArrayLike) -> None:
        self.samples_v = np.asarray(samples_v, dtype=np.float64)
        self.frequency_hz = NOMINAL_FREQUENCY_HZ
        """The frequency [Hz] the last search found, where the next one starts."""

    def around(
        self, lo: int, hi: int, *, excluded: npt.NDArray[np.bool_] | None = None, tolerance_v: float
    ) -> npt.NDArray[np.float64] | None:
        """The steady state [V] of samples [lo, hi); see `steady_state_v`."""
        samples = self.samples_v
        if excluded is None:
            excluded = np.zeros(samples.size, dtype=bool)
        start = max(lo - _CONTEXT_SAMPLES, 0)
        before = np.flatnonzero(~excluded[start:lo]) + start - lo
        after = np.flatnonzero(~excluded[hi : hi + _CONTEXT_SAMPLES]) + hi - lo
        sides = [side for side in (before, after) if side.size >= SAMPLES_PER_CYCLE]
        span = np.arange(hi - lo)
        if not sides:
            return None
        if len(sides) == 1:
            return self._own_fit_v(sides[0], lo, span)
        both = np.concatenate((before, after))
        frequency_hz = best_frequency_hz(both, samples[both + lo], start_hz=self.frequency_hz)
        early_equations = _equations_at(before, samples[before + lo], frequency_hz)
        late_equations = _equations_at(after, samples[after + lo], frequency_hz)
        joint_equations = _joined(early_equations, late_equations)
        joint_coefficients, joint_rms = _solve(joint_equations)
        early_rms = _solve(early_equations)[1]
        late_rms = _solve(late_equations)[1]
        if joint_rms <= _STEP_RATIO * math.hypot(early_rms, late_rms) / math.sqrt(2):
            self._remember(frequency_hz, joint_equations, joint_rms)
            return _model_v(joint_coefficients, span, frequency_hz)
        # The steady state changed inside the span (a sag or switching edge): each side's own fit (the
        # joint fit's frequency is biased by the step, so each side searches its own).
        early = self._own_fit_v(before, lo, span)
        late = self._own_fit_v(after, lo, span)
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

    def _own_fit_v(
        self, offsets: npt.NDArray[np.intp], origin: int, wanted: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.float64]:
        """The model fitted at its own best frequency to samples `origin + offsets`, at `wanted` [V]."""
        values = self.samples_v[offsets + origin]
        frequency_hz = best_frequency_hz(offsets, values, start_hz=self.frequency_hz)
        equations = _equations_at(offsets, values, frequency_hz)
        coefficients, rms_v = _solve(equations)
        self._remember(frequency_hz, equations, rms_v)
        return _model_v(coefficients, wanted, frequency_hz)

    def _remember(self, frequency_hz: float, equations: NormalEquations, rms_v: float) -> None:
        # Only a fit that explains most of the signal found the grid's frequency: the best fit to
        # the noise of an interruption, or across a step, is at an arbitrary frequency.
        _, _, energy, count = equations
        if rms_v < _EXPLAINED_RMS_RATIO * math.sqrt(energy / count):
            self.frequency_hz = frequency_hz


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
    from there on. None if neither side has a whole cycle to fit. (`SteadyStateFits` does the
    same for many spans of one waveform, a little faster.)
    """
    return SteadyStateFits(samples_v).around(lo, hi, excluded=excluded, tolerance_v=tolerance_v)


def best_frequency_hz(
    offsets: npt.NDArray[np.intp],
    values_v: npt.NDArray[np.float64],
    *,
    start_hz: float = NOMINAL_FREQUENCY_HZ,
) -> float:
    """The frequency in 57-63 Hz [Hz] at which the steady-state model best fits `values_v`, taken at
    sample `offsets`, to within 1 mHz.

    Newton's method on the squared error from `start_hz`, its derivatives from the errors at ±20 mHz
    (three frequencies evaluated together): a cycle of context resolves ±60 Hz, so with a fundamental
    in the samples the error has one minimum in 57-63 Hz and within ±20 mHz of it is a parabola to a
    few parts in 10⁴; the minimum is taken once it lies between the probes. Steps are at most
    0.5 Hz, so where the error has several minima (only noise, as in an interruption, or a fit across
    a step) the search settles in the one nearest `start_hz`. Should Newton not settle, a bounded
    scalar search over 57-63 Hz decides.
    """
    low_hz, high_hz = _FIT_RANGE_HZ
    frequency_hz = min(max(start_hz, low_hz), high_hz)
    probes = np.array([-_PROBE_HZ, 0.0, _PROBE_HZ])
    for _ in range(_MAX_NEWTON_STEPS):
        errors: list[float] = _squared_errors(offsets, values_v, frequency_hz + probes).tolist()
        below, at, above = errors
        curvature = below - 2 * at + above
        if curvature > 0:
            step_hz = _PROBE_HZ * (below - above) / (2 * curvature)
            if abs(step_hz) <= _PROBE_HZ:  # the minimum lies between the probes: interpolated
                return min(max(frequency_hz + step_hz, low_hz), high_hz)
        else:  # not convex here (no fundamental, only noise): walk downhill
            step_hz = math.copysign(_MAX_STEP_HZ, below - above)
        moved_hz = min(max(frequency_hz + max(min(step_hz, _MAX_STEP_HZ), -_MAX_STEP_HZ), low_hz), high_hz)
        if moved_hz == frequency_hz:  # the minimum lies beyond the range
            return moved_hz
        frequency_hz = moved_hz
    best = optimize.minimize_scalar(
        lambda f: float(_squared_errors(offsets, values_v, np.array([f]))[0]),
        bounds=_FIT_RANGE_HZ,
        method="bounded",
        options={"xatol": _TOLERANCE_HZ},
    )
    return float(best.x)


def _squared_errors(
    offsets: npt.NDArray[np.intp], values_v: npt.NDArray[np.float64], frequencies_hz: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Σ (model − value)² [V²] of the least-squares fit at each of `frequencies_hz`."""
    gram, projection, energy, _ = _normal_equations(offsets, values_v, frequencies_hz)
    solution = np.linalg.solve(gram, projection[..., None])[..., 0]
    return np.asarray(energy - np.sum(projection * solution, axis=-1), dtype=np.float64)


def _normal_equations(
    offsets: npt.NDArray[np.intp], values_v: npt.NDArray[np.float64], frequencies_hz: npt.NDArray[np.float64]
) -> NormalEquations:
    """The normal equations of the model at each of `frequencies_hz` (first axis) on `values_v`,
    taken at sample `offsets`."""
    radians = frequencies_hz * (2 * math.pi / SAMPLE_RATE_HZ)
    sums = _exponential_sums(offsets, radians)
    count = offsets.size
    every = np.concatenate([np.conj(sums[:, ::-1]), np.full((sums.shape[0], 1), count), sums], axis=1)
    gram = 0.5 * np.real(_SUM_PHASE * every[:, _SUM_ORDER] + _DIFFERENCE_PHASE * every[:, _DIFFERENCE_ORDER])
    weighted = (_powers(offsets, radians) @ values_v).T  # Σ v e^{ihωt} for h = 1..15
    first = np.full((weighted.shape[0], 1), values_v.sum())
    projection = np.real(_PHASES * np.concatenate([first, weighted, weighted], axis=1))
    return gram, projection, float(values_v @ values_v), count


def _exponential_sums(
    offsets: npt.NDArray[np.intp], radians: npt.NDArray[np.float64]
) -> npt.NDArray[np.complex128]:
    """Σ e^{imωt} over sample `offsets` for m = 1..30 (last axis), each ω [rad/sample].

    The offsets are a few runs of consecutive samples (the context either side of a span), each
    run a geometric series: its sum in closed form costs the same for 100 samples as for 1,000.
    """
    run_firsts = np.concatenate(([0], np.flatnonzero(np.diff(offsets) != 1) + 1))
    starts = offsets[run_firsts]
    lengths = np.diff(np.concatenate((run_firsts, [offsets.size])))
    angles = np.multiply.outer(radians, _ALL_ORDERS)  # mω < 2π for m ≤ 30 up to 63 Hz: never 0
    ratios = np.exp(1j * angles)
    firsts = np.exp(1j * angles[..., None] * starts)
    growth = (1 - np.exp(1j * angles[..., None] * lengths)) / (1 - ratios)[..., None]
    return np.asarray((firsts * growth).sum(axis=-1), dtype=np.complex128)


def _equations_at(
    offsets: npt.NDArray[np.intp], values_v: npt.NDArray[np.float64], frequency_hz: float
) -> NormalEquations:
    """The normal equations of the model at one frequency."""
    gram, projection, energy, count = _normal_equations(offsets, values_v, np.array([frequency_hz]))
    return gram[0], projection[0], energy, count


def _joined(first: NormalEquations, second: NormalEquations) -> NormalEquations:
    """The normal equations of two disjoint sets of samples fitted together."""
    return first[0] + second[0], first[1] + second[1], first[2] + second[2], first[3] + second[3]


def _solve(equations: NormalEquations) -> tuple[npt.NDArray[np.float64], float]:
    """The least-squares coefficients and the rms error [V] of the fit."""
    gram, projection, energy, count = equations
    coefficients = np.asarray(np.linalg.solve(gram, projection), dtype=np.float64)
    return coefficients, math.sqrt(max(energy - float(projection @ coefficients), 0.0) / count)


def _model_v(
    coefficients: npt.NDArray[np.float64], offsets: npt.NDArray[np.intp], frequency_hz: float
) -> npt.NDArray[np.float64]:
    """The fitted model at sample `offsets` [V]."""
    powers = _powers(offsets, np.asarray(frequency_hz * (2 * math.pi / SAMPLE_RATE_HZ)))
    weights = (_PHASES * coefficients)[1:]  # cos and sin of one order fold into one exponential
    combined = weights[:_HARMONICS] + weights[_HARMONICS:]
    return np.asarray(coefficients[0] + np.real(combined @ powers), dtype=np.float64)


def _powers(offsets: npt.NDArray[np.intp], radians: npt.NDArray[np.float64]) -> npt.NDArray[np.complex128]:
    """e^{ihωt} for h = 1..15 (first axis), each ω [rad/sample] (second), each sample offset (last)."""
    fundamental = np.exp(1j * np.multiply.outer(radians, offsets))
    powers = np.empty((_HARMONICS, *fundamental.shape), dtype=np.complex128)
    powers[0] = fundamental
    # Doubling: z^(n+1..2n) = z^(1..n) · z^n, four products instead of 14.
    done = 1
    while done < _HARMONICS:
        more = min(done, _HARMONICS - done)
        np.multiply(powers[:more], powers[done - 1], out=powers[done : done + more])
        done += more
    return powers
