"""The noise-free supply of a scenario: fundamental, harmonics and disturbances at any cycle.

Time is counted in box cycles (200 samples) from the scenario start, and everything here is a
function of the cycle index and the sample within it, never of what was computed before: any time
range can be synthesized directly, and the same samples come out however the range is cut. For
that the frequency is held constant within each cycle, at the model's exact mean over the cycle,
so the phase is exact at cycle boundaries and linear between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opq.box.scenario import (
    Disturbance,
    Flicker,
    FrequencyDeviation,
    FrequencyStep,
    FrequencyWander,
    Harmonic,
    HarmonicsEpisode,
    ImpulsiveTransient,
    Interruption,
    OscillatoryTransient,
    Outage,
    Sag,
    Scenario,
    Swell,
)
from opq.domain.constants import SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE
from opq.domain.metrics import transient_per_cycle

FloatArray = npt.NDArray[np.float64]
CYCLE_S = SAMPLES_PER_CYCLE / SAMPLE_RATE_HZ
"""Duration of one box cycle [s]."""
_CYCLES_PER_S = SAMPLE_RATE_HZ // SAMPLES_PER_CYCLE
_FRACTION = np.arange(SAMPLES_PER_CYCLE) / SAMPLES_PER_CYCLE  # of a cycle, at each sample
_SAMPLE = np.arange(SAMPLES_PER_CYCLE)
_TRANSIENT_TIME_CONSTANTS = 14.0  # e^-14 < 1e-6: a transient is cut off after this many
_NO_HARMONIC = (np.asarray(0.0), np.asarray(0.0))
_TABLE_SIZE = 4096
_TABLE_STEP_RAD = 2 * math.pi / _TABLE_SIZE
_SIN_TABLE = np.sin(np.arange(_TABLE_SIZE) * _TABLE_STEP_RAD)
_COS_TABLE = np.cos(np.arange(_TABLE_SIZE) * _TABLE_STEP_RAD)


def sincos_cycles(phase_cycles: FloatArray) -> tuple[FloatArray, FloatArray]:
    """sin and cos of 2π·phase [phase in cycles] within 1e-15, about 3× faster than np.sin + np.cos.

    A 4096-entry table and a Taylor step of under 1.6 mrad: plain arithmetic, so an element's value
    never depends on the array around it (numpy's vectorised transcendental loops may), which keeps
    samples bit-identical however a time range is cut.
    """
    scaled = phase_cycles * _TABLE_SIZE
    whole = np.floor(scaled)
    step = (scaled - whole) * _TABLE_STEP_RAD
    index = whole.astype(np.int64) & (_TABLE_SIZE - 1)
    step2 = step * step
    cos_step = 1.0 - step2 * (0.5 - step2 * (1 / 24))
    sin_step = step * (1.0 - step2 * (1 / 6 - step2 * (1 / 120)))
    sin_base = _SIN_TABLE[index]
    cos_base = _COS_TABLE[index]
    return sin_base * cos_step + cos_base * sin_step, cos_base * cos_step - sin_base * sin_step


@dataclass(frozen=True)
class _Window:
    """A disturbance's time span [s from the scenario start]."""

    start_s: float
    end_s: float

    def rows(self, first_cycle: int, count: int) -> slice | None:
        """Rows of a block of cycles that may hold samples of the window (one cycle of slack)."""
        low = max(math.floor(self.start_s / CYCLE_S) - 1 - first_cycle, 0)
        high = min(math.ceil(self.end_s / CYCLE_S) + 1 - first_cycle, count)
        return slice(low, high) if low < high else None

    def inside(self, t_s: FloatArray) -> npt.NDArray[np.bool_]:
        return (t_s >= self.start_s) & (t_s < self.end_s)


@dataclass(frozen=True)
class _Level(_Window):
    """Sag, swell or interruption: the amplitude goes to `level` [pu] with linear ramps."""

    level: float
    ramp_s: float

    def factor(self, t_s: FloatArray) -> FloatArray:
        if self.ramp_s > 0:
            ramped = np.clip(np.minimum(t_s - self.start_s, self.end_s - t_s) / self.ramp_s, 0.0, 1.0)
            level = 1.0 + (self.level - 1.0) * ramped
        else:
            level = np.full(t_s.shape, self.level)
        return np.where(self.inside(t_s), level, 1.0)


@dataclass(frozen=True)
class _Flicker(_Window):
    """Amplitude modulation 1 + depth/2·m(t), m a unit sine or square wave."""

    depth: float  # peak to peak [ratio]
    frequency_hz: float
    square: bool

    def factor(self, t_s: FloatArray) -> FloatArray:
        modulation, _ = sincos_cycles(self.frequency_hz * (t_s - self.start_s))
        if self.square:
            modulation = np.where(modulation >= 0, 1.0, -1.0)
        return np.where(self.inside(t_s), 1.0 + 0.5 * self.depth * modulation, 1.0)


@dataclass(frozen=True)
class _HarmonicWindow(_Window):
    phasors: dict[int, complex]  # order -> amplitude·e^(i·phase) [pu of the fundamental]


@dataclass(frozen=True)
class _Transient(_Window):
    """Impulsive (double exponential) or oscillatory (damped sine) transient, scaled to peak_v."""

    peak_v: float
    rise_s: float  # impulsive: front time constant; oscillatory: 0
    decay_s: float
    frequency_hz: float  # oscillatory only

    def value_v(self, t_s: FloatArray) -> FloatArray:
        tau = np.clip(t_s - self.start_s, 0.0, self.end_s - self.start_s)
        if self.frequency_hz:
            ring, _ = sincos_cycles(self.frequency_hz * tau)
            shape = np.exp(tau * (-1 / self.decay_s)) * ring
        else:
            shape = np.exp(tau * (-1 / self.decay_s)) - np.exp(tau * (-1 / self.rise_s))
        return np.where(self.inside(t_s), (self.peak_v / self._peak_of_shape()) * shape, 0.0)

    def _peak_of_shape(self) -> float:
        if self.frequency_hz:
            omega = 2 * math.pi * self.frequency_hz
            tau = math.atan(omega * self.decay_s) / omega
            return math.exp(-tau / self.decay_s) * math.sin(omega * tau)
        tau = math.log(self.decay_s / self.rise_s) * self.rise_s * self.decay_s / (self.decay_s - self.rise_s)
        return math.exp(-tau / self.decay_s) - math.exp(-tau / self.rise_s)


@dataclass(frozen=True)
class _FrequencyTerm:
    """A frequency episode from start_s and the phase it adds [cycles], in closed form.

    shape "step" (amplitude [Hz]), "raised_cosine" (amplitude·(1 − cos 2πτ/duration)/2) or
    "sine" (amplitude·sin 2πτ/period), τ = t − start within the episode.
    """

    shape: str
    amplitude_hz: float
    start_s: float
    duration_s: float
    period_s: float = 1.0

    def added_phase_cycles(self, t_s: FloatArray) -> FloatArray:
        a = self.amplitude_hz
        tau = np.clip(t_s - self.start_s, 0.0, self.duration_s)
        if self.shape == "step":
            return a * tau
        if self.shape == "raised_cosine":
            sin_now, _ = sincos_cycles(tau / self.duration_s)
            return (0.5 * a) * (tau - (self.duration_s / (2 * math.pi)) * sin_now)
        _, cos_now = sincos_cycles(tau / self.period_s)
        return (a * self.period_s / (2 * math.pi)) * (1.0 - cos_now)


@dataclass(frozen=True)
class _Wander:
    """The supply's frequency wander Σ a·sin(2π(t/P + ψ)) [Hz] and the phase it adds [cycles]."""

    amplitudes_hz: FloatArray
    periods_s: FloatArray
    phases_cycles: FloatArray

    def added_phase_cycles(self, t_s: FloatArray) -> FloatArray:
        _, cos_now = sincos_cycles(t_s / self.periods_s[:, np.newaxis] + self.phases_cycles[:, np.newaxis])
        scales = self.amplitudes_hz * self.periods_s / (2 * math.pi)
        starts = np.cos(2 * math.pi * self.phases_cycles)
        total = np.zeros(t_s.shape)
        for scale, start, now in zip(scales, starts, cos_now, strict=True):
            total += scale * (start - now)
        return total


class _WaveTable:
    """sin θ plus the supply's harmonics, as a periodic function of the phase θ [cycles].

    Tables hold the waveform's Taylor coefficients (k-th derivative / k!) at 4096 phases, and a
    sample is a polynomial in its offset δ (under 1.6 mrad) from the table phase below, of the
    lowest degree d that keeps (h·δ)^(d+1)/(d+1)! under 1e-13 for the highest order h: as exact
    as np.sin, for one lookup and d + 1 multiply-adds per sample whatever the number of harmonics.
    """

    def __init__(self, phasors: dict[int, complex]) -> None:
        theta = np.arange(_TABLE_SIZE) * _TABLE_STEP_RAD
        highest = max(phasors, default=1)
        degree = 1
        while (highest * _TABLE_STEP_RAD) ** (degree + 1) / math.factorial(degree + 1) > 1e-13:
            degree += 1
        self._coefficients = []
        for k in range(degree + 1):
            # The k-th derivative of Re·sin(hθ) + Im·cos(hθ) is h^k·(the same, θ advanced by kπ/2h).
            coefficient = np.zeros(_TABLE_SIZE)
            for order, phasor in [(1, 1 + 0j), *phasors.items()]:
                angle = order * theta + k * math.pi / 2
                scale = order**k / math.factorial(k)
                coefficient += scale * (phasor.real * np.sin(angle) + phasor.imag * np.cos(angle))
            self._coefficients.append(coefficient)

    def __call__(self, phase_cycles: FloatArray) -> FloatArray:
        scaled = phase_cycles * _TABLE_SIZE
        whole = np.floor(scaled)
        step = np.subtract(scaled, whole, out=scaled)
        step *= _TABLE_STEP_RAD
        index = whole.astype(np.int64)
        index &= _TABLE_SIZE - 1
        wave = self._coefficients[-1][index]
        for coefficient in reversed(self._coefficients[:-1]):
            wave *= step
            wave += coefficient[index]
        return wave


def _phasors(harmonics: list[Harmonic]) -> dict[int, complex]:
    return {
        h.order: h.percent
        / 100
        * complex(math.cos(math.radians(h.phase_deg)), math.sin(math.radians(h.phase_deg)))
        for h in harmonics
    }


def _wander(scenario: Scenario) -> list[_Wander]:
    wander = scenario.supply.wander
    if wander is None or wander.amplitude_hz == 0:
        return []
    if wander.shape == "sine":
        return [_Wander(np.array([wander.amplitude_hz]), np.array([wander.period_s]), np.zeros(1))]
    seed = scenario.supply.seed if wander.seed is None else wander.seed
    rng = np.random.default_rng([seed, 0x77616E646572])  # "wander"
    weights = rng.uniform(0.2, 1.0, 8)
    periods = wander.period_s * 4.0 ** rng.uniform(-1.0, 1.0, 8)
    phases = rng.uniform(0.0, 1.0, 8)
    return [_Wander(wander.amplitude_hz * weights / weights.sum(), periods, phases)]


def _frequency_term(d: Disturbance) -> _FrequencyTerm | None:
    if isinstance(d, FrequencyStep):
        return _FrequencyTerm("step", d.delta_hz, d.at_s, d.duration_s)
    if isinstance(d, FrequencyDeviation):
        return _FrequencyTerm("raised_cosine", d.delta_hz, d.at_s, d.duration_s)
    if isinstance(d, FrequencyWander):
        return _FrequencyTerm("sine", d.amplitude_hz, d.at_s, d.duration_s, d.period_s)
    return None


def _highpass_peak_pu(wave: _WaveTable, fundamental_hz: float) -> float:
    """Peak per cycle of the steady waveform (sin θ + harmonics) through opq.domain's transient
    high-pass [pu of the peak], averaged over eight sub-sample shifts of the sampling grid."""
    cycles_per_sample = fundamental_hz / SAMPLE_RATE_HZ
    phase = np.arange(5 * SAMPLES_PER_CYCLE) * cycles_per_sample
    shifted = phase + (np.arange(8)[:, np.newaxis] / 8) * cycles_per_sample
    return float(np.mean(transient_per_cycle(wave(shifted))[:, 2]))


class SupplyModel:
    """The scenario's supply at the reference box, as closed-form functions of the cycle index."""

    def __init__(self, scenario: Scenario) -> None:
        supply = scenario.supply
        self.scenario = scenario
        self.nominal_voltage_v = supply.nominal_voltage_v
        self.nominal_frequency_hz = supply.nominal_frequency_hz
        self._phase0_cycles = supply.phase_deg / 360
        self._drift = supply.drift
        self._step_cycles = _SAMPLE * (self.nominal_frequency_hz / SAMPLE_RATE_HZ)
        self.harmonics = _phasors(supply.harmonics)
        self._wave = _WaveTable(self.harmonics)
        self._frequency_terms: list[_Wander | _FrequencyTerm] = [*_wander(scenario)]
        self._frequency_terms += [
            term for d in scenario.disturbances if (term := _frequency_term(d)) is not None
        ]
        # Phase-aligned starts need the frequency model, so the other disturbances come second.
        self._shapers: list[_Level | _Flicker] = []
        self._harmonic_windows: list[_HarmonicWindow] = []
        self._transients: list[_Transient] = []
        self._outages: list[_Window] = []
        for disturbance in scenario.disturbances:
            self._add(disturbance)
        self.highpass_peak_pu = _highpass_peak_pu(self._wave, self.nominal_frequency_hz)
        """Peak of the supply's steady waveform through opq.domain's transient high-pass [pu of √2·U]."""

    def _add(self, d: Disturbance) -> None:
        if isinstance(d, Sag | Swell | Interruption):
            level = (
                d.depth_pu if isinstance(d, Sag) else d.height_pu if isinstance(d, Swell) else d.retained_pu
            )
            start = self._aligned_start_s(d.at_s, d.start_phase_deg)
            self._shapers.append(_Level(start, start + d.duration_s, level, d.ramp_ms / 1000))
        elif isinstance(d, Flicker):
            end = d.at_s + d.duration_s
            self._shapers.append(
                _Flicker(d.at_s, end, d.depth_percent / 100, d.frequency_hz, d.waveform == "square")
            )
        elif isinstance(d, HarmonicsEpisode):
            self._harmonic_windows.append(
                _HarmonicWindow(d.at_s, d.at_s + d.duration_s, _phasors(d.harmonics))
            )
        elif isinstance(d, ImpulsiveTransient):
            start = self._aligned_start_s(d.at_s, d.start_phase_deg)
            decay_s = d.decay_us / 1e6
            end = start + _TRANSIENT_TIME_CONSTANTS * decay_s
            self._transients.append(_Transient(start, end, d.peak_v, d.rise_us / 1e6, decay_s, 0.0))
        elif isinstance(d, OscillatoryTransient):
            start = self._aligned_start_s(d.at_s, d.start_phase_deg)
            decay_s = d.decay_ms / 1e3
            end = start + _TRANSIENT_TIME_CONSTANTS * decay_s
            self._transients.append(_Transient(start, end, d.peak_v, 0.0, decay_s, d.frequency_hz))
        elif isinstance(d, Outage):
            self._outages.append(_Window(d.at_s, d.at_s + d.duration_s))

    def _aligned_start_s(self, at_s: float, phase_deg: float | None) -> float:
        """The first instant from at_s at which the fundamental's phase is phase_deg."""
        if phase_deg is None:
            return at_s
        origin = self._phase_at_s(at_s)
        target = origin + (phase_deg / 360 - origin) % 1.0
        t_s = at_s
        for _ in range(4):  # Newton on a piecewise linear phase: exact after a step or two
            cycle = math.floor(t_s / CYCLE_S)
            t_s += (target - self._phase_at_s(t_s)) / float(self.frequency_hz(cycle, 1)[0])
        return max(t_s, at_s)

    def _phase_at_s(self, t_s: float) -> float:
        cycle = math.floor(t_s / CYCLE_S)
        start, end = self.phase_integral_cycles(cycle, 1)
        within = t_s / CYCLE_S - cycle
        return float(self.nominal_frequency_hz * t_s + start + (end - start) * within + self._phase0_cycles)

    def phase_integral_cycles(self, first_cycle: int, count: int) -> FloatArray:
        """Phase the frequency deviations add [cycles] at the count + 1 boundaries of the cycles."""
        t_s = (np.arange(first_cycle, first_cycle + count + 1) * SAMPLES_PER_CYCLE) / SAMPLE_RATE_HZ
        total = np.zeros(count + 1)
        for term in self._frequency_terms:
            total += term.added_phase_cycles(t_s)
        return total

    def frequency_hz(self, first_cycle: int, count: int) -> FloatArray:
        """Frequency of the fundamental in each cycle [Hz]: the model's mean over the cycle."""
        return self.nominal_frequency_hz + np.diff(self.phase_integral_cycles(first_cycle, count)) / CYCLE_S

    def voltage_bounds_v(self, first_cycle: int, count: int) -> FloatArray:
        """U [V rms] at the count + 1 boundaries of the cycles: nominal plus drift."""
        cycles = np.arange(first_cycle, first_cycle + count + 1)
        if self._drift is None:
            return np.full(count + 1, self.nominal_voltage_v)
        drift, _ = sincos_cycles((cycles * SAMPLES_PER_CYCLE) / (SAMPLE_RATE_HZ * self._drift.period_s))
        return self.nominal_voltage_v + self._drift.amplitude_v * drift

    def start_phase_cycles(
        self, first_cycle: int, count: int, integral: FloatArray, offset: float
    ) -> FloatArray:
        """Phase of the fundamental [cycles] at the first sample of each cycle, from its phase integral."""
        seconds, within = np.divmod(np.arange(first_cycle, first_cycle + count), _CYCLES_PER_S)
        nominal = within * (SAMPLES_PER_CYCLE * self.nominal_frequency_hz / SAMPLE_RATE_HZ) + np.mod(
            seconds * self.nominal_frequency_hz, 1.0
        )
        return nominal + integral[:-1] + (self._phase0_cycles + offset)

    def phase_cycles(self, first_cycle: int, count: int, integral: FloatArray, offset: float) -> FloatArray:
        """Phase of the fundamental [cycles] at every sample, shape (count, 200); see `start_phase_cycles`."""
        start = self.start_phase_cycles(first_cycle, count, integral, offset)
        return (start[:, np.newaxis] + self._step_cycles) + np.diff(integral)[:, np.newaxis] * _FRACTION

    @staticmethod
    def _times_s(first_cycle: int, rows: slice) -> FloatArray:
        cycles = np.arange(first_cycle + rows.start, first_cycle + rows.stop)
        return (cycles[:, np.newaxis] * SAMPLES_PER_CYCLE + _SAMPLE) / SAMPLE_RATE_HZ

    def envelope(self, first_cycle: int, count: int) -> FloatArray | None:
        envelope = None
        for shaper in self._shapers:
            if (rows := shaper.rows(first_cycle, count)) is not None:
                envelope = np.ones((count, SAMPLES_PER_CYCLE)) if envelope is None else envelope
                envelope[rows] *= shaper.factor(self._times_s(first_cycle, rows))
        return envelope

    def harmonic_amplitudes(self, first_cycle: int, count: int) -> dict[int, tuple[FloatArray, FloatArray]]:
        """Real and imaginary parts of each harmonic [pu], by order: scalars, or arrays in an episode."""
        amplitudes = {h: (np.asarray(p.real), np.asarray(p.imag)) for h, p in self.harmonics.items()}
        for window in self._harmonic_windows:
            if (rows := window.rows(first_cycle, count)) is None:
                continue
            inside = window.inside(self._times_s(first_cycle, rows))
            for order, phasor in window.phasors.items():
                real, imag = (
                    np.full((count, SAMPLES_PER_CYCLE), part) for part in amplitudes.get(order, _NO_HARMONIC)
                )
                real[rows] += np.where(inside, phasor.real, 0.0)
                imag[rows] += np.where(inside, phasor.imag, 0.0)
                amplitudes[order] = (real, imag)
        return amplitudes

    def transients_v(self, first_cycle: int, count: int) -> FloatArray | None:
        total = None
        for transient in self._transients:
            if (rows := transient.rows(first_cycle, count)) is not None:
                total = np.zeros((count, SAMPLES_PER_CYCLE)) if total is None else total
                total[rows] += transient.value_v(self._times_s(first_cycle, rows))
        return total

    def silent_samples(self, first_cycle: int, count: int) -> npt.NDArray[np.bool_] | None:
        silent = None
        for outage in self._outages:
            if (rows := outage.rows(first_cycle, count)) is not None:
                silent = np.zeros((count, SAMPLES_PER_CYCLE), bool) if silent is None else silent
                silent[rows] |= outage.inside(self._times_s(first_cycle, rows))
        return silent

    def silent_cycles(self, first_cycle: int, count: int) -> npt.NDArray[np.bool_]:
        """Whether each cycle holds samples of an outage (the box is off and sends nothing)."""
        silent = self.silent_samples(first_cycle, count)
        return np.zeros(count, np.bool_) if silent is None else np.any(silent, axis=-1)

    def busy(self, first_cycle: int, count: int) -> bool:
        """Whether a disturbance other than a frequency change touches the cycles."""
        windows: list[_Window] = [*self._shapers, *self._harmonic_windows, *self._transients, *self._outages]
        return any(window.rows(first_cycle, count) is not None for window in windows)

    def waveform_v(
        self, first_cycle: int, count: int, *, voltage_offset_v: float = 0.0, phase_offset_cycles: float = 0.0
    ) -> FloatArray:
        """The noise-free voltage [V] of `count` cycles from `first_cycle`, shape (count, 200).

        voltage_offset_v [V rms] and phase_offset_cycles [cycles] place a box against the
        reference; the phase offset shifts harmonics as a time shift would. Zero in an outage.
        """
        integral = self.phase_integral_cycles(first_cycle, count)
        phase = self.phase_cycles(first_cycle, count, integral, phase_offset_cycles)
        wave = self._wave(phase)
        for window in self._harmonic_windows:
            if (rows := window.rows(first_cycle, count)) is not None:
                inside = window.inside(self._times_s(first_cycle, rows))
                added = {
                    h: (np.where(inside, p.real, 0.0), np.where(inside, p.imag, 0.0))
                    for h, p in window.phasors.items()
                }
                wave[rows] += harmonics_wave(*sincos_cycles(phase[rows]), added)
        bounds = self.voltage_bounds_v(first_cycle, count) + voltage_offset_v
        voltage = math.sqrt(2) * (bounds[:-1, np.newaxis] + np.diff(bounds)[:, np.newaxis] * _FRACTION)
        if (envelope := self.envelope(first_cycle, count)) is not None:
            voltage *= envelope
        voltage *= wave
        if (transients := self.transients_v(first_cycle, count)) is not None:
            voltage += transients
        if (silent := self.silent_samples(first_cycle, count)) is not None:
            voltage[silent] = 0.0
        return voltage


def harmonics_wave(
    sin1: FloatArray, cos1: FloatArray, amplitudes: dict[int, tuple[FloatArray, FloatArray]]
) -> FloatArray:
    """Σ Re·sin(hθ) + Im·cos(hθ) over the harmonics {h: (Re, Im)}, from sin θ and cos θ (Chebyshev)."""
    total = np.zeros_like(sin1)
    sin_prev, cos_prev, sin_h, cos_h = np.zeros_like(sin1), np.ones_like(cos1), sin1, cos1
    twice_cos1 = 2.0 * cos1
    for order in range(2, max(amplitudes, default=1) + 1):
        sin_prev, sin_h = sin_h, twice_cos1 * sin_h - sin_prev
        cos_prev, cos_h = cos_h, twice_cos1 * cos_h - cos_prev
        if order in amplitudes:
            real, imag = amplitudes[order]
            total += real * sin_h + imag * cos_h
    return total
