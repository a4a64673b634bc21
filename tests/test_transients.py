"""Transients (opq.domain.transients, opq.domain.steady_state) on synthetic waveforms at 12 kHz."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.domain import NOMINAL_VOLTAGE_V, SAMPLE_RATE_HZ, highpass_residual_v
from opq.domain.steady_state import SteadyStateFits, best_frequency_hz, steady_state_v
from opq.domain.transients import (
    NOISE_FLOOR_V,
    Transient,
    candidate_windows,
    detection_threshold_v,
    transients,
)

PEAK_V = NOMINAL_VOLTAGE_V * math.sqrt(2)
PHASE_RAD = 0.3
# The sine is at its falling zero crossing here [samples into each cycle], and at its crest.
FALLING_ZERO = (math.pi - PHASE_RAD) / (2 * math.pi * 60) * SAMPLE_RATE_HZ
CREST = (math.pi / 2 - PHASE_RAD) / (2 * math.pi * 60) * SAMPLE_RATE_HZ


def sine(
    duration_s: float = 1.0,
    *,
    harmonics: Mapping[int, float] | None = None,
    noise_v: float = 0.4,
    seed: int = 0,
    amplitude: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """120 V rms 60 Hz with harmonics {order: ratio}, white noise [V rms] and an optional envelope."""
    t = np.arange(round(duration_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    phase = 2 * np.pi * 60.0 * t + PHASE_RAD
    samples = PEAK_V * np.sin(phase)
    for order, ratio in (harmonics or {}).items():
        samples += ratio * PEAK_V * np.sin(order * phase + 0.4 * order)
    if amplitude is not None:
        samples *= amplitude
    return np.asarray(
        samples + noise_v * np.random.default_rng(seed).standard_normal(t.size), dtype=np.float64
    )


def impulse(
    n: int, at_sample: float, peak_v: float, rise_tau_ms: float, decay_tau_ms: float
) -> npt.NDArray[np.float64]:
    """A double-exponential impulse whose continuous peak is `peak_v`, starting at `at_sample`."""
    t_ms = (np.arange(n) - at_sample) * 1000 / SAMPLE_RATE_HZ
    dense_ms = np.linspace(0, 10 * decay_tau_ms, 200_001)
    norm = np.max(np.exp(-dense_ms / decay_tau_ms) - np.exp(-dense_ms / rise_tau_ms))
    after = np.clip(t_ms, 0, None)
    shape = np.where(t_ms > 0, np.exp(-after / decay_tau_ms) - np.exp(-after / rise_tau_ms), 0.0)
    return np.asarray(peak_v * shape / norm, dtype=np.float64)


def ringing(
    n: int, at_sample: int, peak_v: float, frequency_hz: float, tau_ms: float
) -> npt.NDArray[np.float64]:
    """A damped sine starting at `at_sample`: peak_v · e^(−t/τ) · sin(2π f t)."""
    t_s = (np.arange(n) - at_sample) / SAMPLE_RATE_HZ
    envelope = peak_v * np.exp(-np.clip(t_s, 0, None) * 1000 / tau_ms)
    return np.asarray(
        np.where(t_s >= 0, envelope * np.sin(2 * np.pi * frequency_hz * t_s), 0.0), dtype=np.float64
    )


def half_value_ms(rise_tau_ms: float, decay_tau_ms: float) -> float:
    """Continuous time from the 10 % point of the front to the half value on the tail [ms]."""
    t_ms = np.linspace(0, 10 * decay_tau_ms, 1_000_001)
    shape = np.exp(-t_ms / decay_tau_ms) - np.exp(-t_ms / rise_tau_ms)
    shape /= shape.max()
    peak = int(np.argmax(shape))
    return float(t_ms[peak + np.argmax(shape[peak:] < 0.5)] - t_ms[np.argmax(shape > 0.1)])


def only(found: list[Transient]) -> Transient:
    assert len(found) == 1, found
    return found[0]


def sampled_peak(disturbance: npt.NDArray[np.float64]) -> float:
    """The truth a 12 kHz box can know: the largest sampled value of the disturbance, signed [V]."""
    return float(disturbance[np.argmax(np.abs(disturbance))])


# -------------------------------------------------------------------------------------- impulsive

SAMPLE = 6000 + round(CREST)  # on a crest: no zero crossing near


@pytest.mark.parametrize(
    ("peak_v", "rise_tau_ms", "decay_tau_ms", "category"),
    [
        pytest.param(120.0, 0.002, 0.150, "1.1.2", id="+120V-2us/150us"),
        pytest.param(-120.0, 0.002, 0.150, "1.1.2", id="-120V-2us/150us"),
        pytest.param(120.0, 0.1 / 2.2, 1.0, "1.1.2", id="+120V-0.1ms/1ms"),
        pytest.param(-120.0, 0.1 / 2.2, 1.0, "1.1.2", id="-120V-0.1ms/1ms"),
        pytest.param(60.0, 0.1 / 2.2, 3.0, "1.1.3", id="+60V-0.1ms/3ms"),
        pytest.param(25.0, 0.002, 0.3, "1.1.2", id="+25V-small"),
    ],
)
def test_an_impulse_is_impulsive_with_its_polarity_and_peak(
    peak_v: float, rise_tau_ms: float, decay_tau_ms: float, category: str
) -> None:
    # The onset is 10 µs before a sample, so that sample catches 94 % of a 150 µs decay.
    at_sample = SAMPLE - 0.12
    disturbance = impulse(SAMPLE_RATE_HZ, at_sample, peak_v, rise_tau_ms, decay_tau_ms)
    found = only(transients(sine() + disturbance))
    assert found.classifications == ("IMPULSIVE_TRANSIENT",)
    assert found.impulse is not None
    assert found.impulse.polarity == ("POSITIVE" if peak_v > 0 else "NEGATIVE")
    assert found.impulse.peak_v == pytest.approx(sampled_peak(disturbance), rel=0.2)
    assert found.impulse.peak_v == pytest.approx(peak_v, rel=0.2)
    assert found.impulse.rise_time_ms <= 0.2  # 12 kHz cannot resolve fronts faster than ~0.1 ms
    assert found.impulse.decay_time_ms is not None
    if decay_tau_ms >= 1.0:
        assert found.impulse.decay_time_ms == pytest.approx(half_value_ms(rise_tau_ms, decay_tau_ms), rel=0.3)
    else:
        assert found.impulse.decay_time_ms <= 0.5
    assert found.impulse.category == category
    assert abs(found.start_sample - at_sample) <= 2


def test_the_residual_alone_would_misread_a_slow_impulse() -> None:
    # Why transients are measured against the fitted steady state: the high-pass halves a
    # 0.1/1 ms impulse and gives it an opposite lobe, which would read as an oscillation.
    disturbance = impulse(SAMPLE_RATE_HZ, SAMPLE, 120.0, 0.1 / 2.2, 1.0)
    residual = highpass_residual_v(sine() + disturbance)
    assert residual.max() < 0.6 * 120 and residual.min() < -0.3 * 120
    found = only(transients(sine() + disturbance))
    assert found.impulse is not None and found.peak_v == pytest.approx(120.0, rel=0.05)


# ------------------------------------------------------------------------------------ oscillatory


@pytest.mark.parametrize(
    ("peak_v", "frequency_hz", "tau_ms", "step"),
    [
        pytest.param(75.0, 900.0, 2.0, 1.0, id="75V-900Hz-2ms"),
        pytest.param(75.0, 3000.0, 1.0, 1.0, id="75V-3kHz-1ms"),
        pytest.param(40.0, 1500.0, 0.5, 1.0, id="40V-1.5kHz-0.5ms"),
        pytest.param(60.0, 600.0, 3.0, 0.95, id="capacitor-switching-600Hz-with-5%-step"),
        pytest.param(60.0, 300.0, 5.0, 1.0, id="60V-300Hz-5ms-below-the-high-pass"),
    ],
)
def test_ringing_is_oscillatory_with_its_frequency_and_decay(
    peak_v: float, frequency_hz: float, tau_ms: float, step: float
) -> None:
    n = SAMPLE_RATE_HZ
    disturbance = ringing(n, SAMPLE, peak_v, frequency_hz, tau_ms)
    envelope = np.where(np.arange(n) >= SAMPLE, step, 1.0)
    found = only(transients(sine(amplitude=envelope) + disturbance))
    assert found.classifications == ("OSCILLATORY_TRANSIENT",)
    assert found.oscillation is not None
    assert found.oscillation.frequency_hz == pytest.approx(frequency_hz, rel=0.1)
    assert found.oscillation.decay_time_constant_ms == pytest.approx(tau_ms, rel=0.3)
    assert found.oscillation.peak_v == pytest.approx(sampled_peak(disturbance), rel=0.2)
    assert found.oscillation.category == "1.2.1"
    assert found.oscillation.sign_changes >= 2
    assert abs(found.start_sample - SAMPLE) <= 3


# ---------------------------------------------------------------------------- zero crossings


def test_an_impulse_just_after_a_zero_crossing_adds_two_crossings() -> None:
    at_sample = 6000 + FALLING_ZERO + 5  # the sine is at about −26 V here
    found = only(transients(sine() + impulse(SAMPLE_RATE_HZ, at_sample, 120.0, 0.002, 0.15)))
    assert found.classifications == ("IMPULSIVE_TRANSIENT", "MULTIPLE_ZERO_CROSSING_TRANSIENT")
    assert found.extra_zero_crossings == 2


def test_ringing_across_a_zero_crossing_adds_crossings() -> None:
    at_sample = round(6000 + FALLING_ZERO + 2)  # the sine is at about −10 V, the ring goes up
    found = only(transients(sine() + ringing(SAMPLE_RATE_HZ, at_sample, 75.0, 900.0, 2.0)))
    assert "OSCILLATORY_TRANSIENT" in found.classifications
    assert "MULTIPLE_ZERO_CROSSING_TRANSIENT" in found.classifications
    assert found.extra_zero_crossings >= 2


# --------------------------------------------------------------------------------- nothing there


@pytest.mark.parametrize("noise_v", [0.4, 0.5], ids=["0.4V-noise", "0.5V-noise"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_clean_noisy_sine_has_no_transients(noise_v: float, seed: int) -> None:
    assert transients(sine(10.0, noise_v=noise_v, seed=seed)) == []


@pytest.mark.parametrize(
    "harmonics",
    [
        pytest.param({5: 0.04, 7: 0.03}, id="5th4%+7th3%"),
        pytest.param({11: 0.035, 13: 0.03}, id="11th3.5%+13th3%-above-the-floor"),
        pytest.param({3: 0.05, 5: 0.06, 7: 0.05, 11: 0.035, 13: 0.03}, id="EN50160-limits"),
    ],
)
def test_steady_harmonics_are_no_transient(harmonics: Mapping[int, float]) -> None:
    samples = sine(10.0, harmonics=harmonics)
    assert transients(samples) == []


def test_steady_high_harmonics_raise_the_threshold() -> None:
    samples = sine(harmonics={11: 0.035, 13: 0.03})
    residual = highpass_residual_v(samples)
    assert np.abs(residual).max() > NOISE_FLOOR_V  # the fixed floor alone would fire every cycle
    assert detection_threshold_v(residual) > 2 * np.abs(residual).max() * 0.9
    assert detection_threshold_v(highpass_residual_v(sine())) == NOISE_FLOOR_V


def test_an_impulse_on_harmonics_is_still_found() -> None:
    disturbance = impulse(SAMPLE_RATE_HZ, SAMPLE - 0.12, 120.0, 0.002, 0.15)
    found = only(transients(sine(harmonics={5: 0.04, 7: 0.03, 11: 0.035}) + disturbance))
    assert found.impulse is not None
    assert found.peak_v == pytest.approx(sampled_peak(disturbance), rel=0.2)


@pytest.mark.parametrize("phase_deg", [0, 30, 90, 135], ids=lambda d: f"{d}deg")
def test_the_edges_of_an_abrupt_sag_are_no_transient(phase_deg: int) -> None:
    t = np.arange(2 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    start_s = 0.5 + (math.radians(phase_deg) - PHASE_RAD) / (2 * math.pi * 60)
    envelope = np.where((t >= start_s) & (t < start_s + 0.2), 0.5, 1.0)
    samples = sine(2.0, amplitude=envelope)
    if phase_deg:  # the step rings through the high-pass
        assert np.abs(highpass_residual_v(samples)).max() > NOISE_FLOOR_V
    assert transients(samples) == []


# --------------------------------------------------------------------------------- windows


@pytest.mark.parametrize(("gap_ms", "count"), [(2.0, 1), (10.0, 2)], ids=["2ms-apart", "10ms-apart"])
def test_impulses_close_together_are_one_transient(gap_ms: float, count: int) -> None:
    gap = round(gap_ms * SAMPLE_RATE_HZ / 1000)
    disturbance = impulse(SAMPLE_RATE_HZ, SAMPLE, 80.0, 0.002, 0.15)
    disturbance += impulse(SAMPLE_RATE_HZ, SAMPLE + gap, 80.0, 0.002, 0.15)
    assert len(transients(sine() + disturbance)) == count


@pytest.mark.parametrize("at_sample", [150, SAMPLE_RATE_HZ - 200], ids=["near-start", "near-end"])
def test_an_impulse_near_an_end_is_measured_on_one_side(at_sample: int) -> None:
    disturbance = impulse(SAMPLE_RATE_HZ, at_sample - 0.12, 120.0, 0.002, 0.15)
    found = only(transients(sine() + disturbance))
    assert found.impulse is not None
    assert found.peak_v == pytest.approx(sampled_peak(disturbance), rel=0.2)


def test_candidate_windows_merge_across_lulls() -> None:
    residual = np.zeros(200)
    residual[[10, 12, 30, 100]] = [5.0, -5.0, 5.0, 5.0]
    # 17 quiet samples between 12 and 30.
    assert candidate_windows(residual, 3.0, max_lull_samples=16) == [(10, 13), (30, 31), (100, 101)]
    assert candidate_windows(residual, 3.0, max_lull_samples=17) == [(10, 31), (100, 101)]
    assert candidate_windows(residual, 6.0, max_lull_samples=17) == []


def test_steady_state_is_fitted_across_a_gap() -> None:
    samples = sine(harmonics={5: 0.04, 7: 0.03}, noise_v=0.0)
    samples[6000:6100] += 50.0
    steady = steady_state_v(samples, 6000, 6100, tolerance_v=3.0)
    assert steady is not None
    truth = sine(harmonics={5: 0.04, 7: 0.03}, noise_v=0.0)[6000:6100]
    np.testing.assert_allclose(steady, truth, atol=0.01)
    excluded = np.ones(samples.size, dtype=bool)
    assert steady_state_v(samples, 6000, 6100, excluded=excluded, tolerance_v=3.0) is None


def test_steady_state_follows_a_step_from_where_it_starts() -> None:
    envelope = np.where(np.arange(SAMPLE_RATE_HZ) >= 6050, 0.5, 1.0)
    samples = sine(noise_v=0.0, amplitude=envelope)
    steady = steady_state_v(samples, 6000, 6100, tolerance_v=3.0)
    assert steady is not None
    np.testing.assert_allclose(steady, samples[6000:6100], atol=0.05)


def off_nominal(
    frequency_hz: float, n: int = SAMPLE_RATE_HZ // 2, noise_v: float = 0.0
) -> npt.NDArray[np.float64]:
    """120 V rms at `frequency_hz` with 4 % 5th and 3 % 7th harmonics and white noise [V rms]."""
    phase = 2 * np.pi * frequency_hz * np.arange(n) / SAMPLE_RATE_HZ + PHASE_RAD
    samples = PEAK_V * (np.sin(phase) + 0.04 * np.sin(5 * phase + 2.0) + 0.03 * np.sin(7 * phase + 2.8))
    return np.asarray(samples + noise_v * np.random.default_rng(3).standard_normal(n), dtype=np.float64)


@pytest.mark.parametrize("start_hz", [60.0, 57.0, 63.0], ids=["nominal-start", "low-start", "high-start"])
@pytest.mark.parametrize("frequency_hz", [57.4, 59.93, 60.0, 60.07, 62.6])
def test_the_fitted_frequency_is_the_waveforms_from_any_start(frequency_hz: float, start_hz: float) -> None:
    # Two cycles either side of a 100-sample gap, as a span's context is fitted.
    offsets = np.r_[np.arange(-400, 0), np.arange(100, 500)]
    samples = off_nominal(frequency_hz)
    found_hz = best_frequency_hz(offsets, samples[offsets + 1000], start_hz=start_hz)
    assert abs(found_hz - frequency_hz) < 1e-3


def test_the_steady_state_of_an_off_nominal_waveform_is_fitted_across_a_gap() -> None:
    samples = off_nominal(58.7)
    truth = samples[3000:3100].copy()
    samples[3000:3100] += 50.0
    steady = steady_state_v(samples, 3000, 3100, tolerance_v=3.0)
    assert steady is not None
    np.testing.assert_allclose(steady, truth, atol=0.01)


def test_fits_of_one_waveform_are_those_of_fits_made_afresh() -> None:
    # Each search starting where the last ended must not change what it finds.
    samples = off_nominal(59.95, noise_v=0.4)
    envelope = np.where((np.arange(samples.size) >= 2020) & (np.arange(samples.size) < 4040), 0.5, 1.0)
    samples *= envelope
    fits = SteadyStateFits(samples)
    for lo, hi in [(1000, 1080), (1990, 2060), (3000, 3150), (4000, 4100), (5000, 5050)]:
        reused = fits.around(lo, hi, tolerance_v=3.0)
        afresh = steady_state_v(samples, lo, hi, tolerance_v=3.0)
        assert reused is not None and afresh is not None
        np.testing.assert_allclose(reused, afresh, atol=0.02)


def test_a_fit_to_noise_alone_leaves_the_next_search_where_the_voltage_was() -> None:
    # Inside an interruption the best frequency is an accident of the noise: not one to start from.
    samples = off_nominal(59.95, noise_v=0.4)
    samples[2000:5000] = 0.4 * np.random.default_rng(5).standard_normal(3000)
    fits = SteadyStateFits(samples)
    assert fits.around(1000, 1050, tolerance_v=3.0) is not None
    assert abs(fits.frequency_hz - 59.95) < 3e-3
    steady = fits.around(3000, 3050, tolerance_v=3.0)
    assert steady is not None and np.max(np.abs(steady)) < 3.0
    assert abs(fits.frequency_hz - 59.95) < 3e-3


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="equal 1-D arrays"):
        transients(np.zeros(400), np.zeros(200))
    with pytest.raises(ValueError, match="noise_floor_v > 0"):
        transients(np.zeros(400), noise_floor_v=0.0)


def test_a_lull_shorter_than_a_sample_still_ends() -> None:
    disturbance = ringing(SAMPLE_RATE_HZ, SAMPLE, 75.0, 900.0, 2.0)
    assert len(transients(sine() + disturbance, max_lull_ms=0.0)) >= 1


# ------------------------------------------------------------------------------------ properties


@settings(max_examples=25, deadline=None)
@given(
    peak_v=st.floats(20.0, 150.0),
    negative=st.booleans(),
    at_sample=st.floats(1200.0, 10_800.0),
    decay_tau_ms=st.floats(0.1, 2.0),
)
def test_any_unipolar_pulse_is_one_impulsive_transient_of_its_sign(
    peak_v: float, negative: bool, at_sample: float, decay_tau_ms: float
) -> None:
    disturbance = impulse(SAMPLE_RATE_HZ, at_sample, -peak_v if negative else peak_v, 0.002, decay_tau_ms)
    found = only(transients(sine() + disturbance))
    assert "IMPULSIVE_TRANSIENT" in found.classifications
    assert found.impulse is not None
    assert found.impulse.polarity == ("NEGATIVE" if negative else "POSITIVE")
    assert found.impulse.peak_v == pytest.approx(sampled_peak(disturbance), rel=0.2)


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(1.5, 4.0), seed=st.integers(0, 2**16))
def test_a_larger_transient_is_never_missed(scale: float, seed: int) -> None:
    small = ringing(SAMPLE_RATE_HZ, SAMPLE, 12.0, 900.0, 1.0)
    assert len(transients(sine(seed=seed) + small)) == 1
    assert len(transients(sine(seed=seed) + scale * small)) == 1


@pytest.mark.parametrize(
    ("depth_pu", "duration_ms", "at"),
    [
        pytest.param(0.0, 15.0, 6000, id="0-pu-15-ms"),
        pytest.param(0.3, 10.0, 6000, id="0.3-pu-10-ms"),
        pytest.param(0.0, 15.0, 6000 + round(CREST), id="0-pu-15-ms-from-a-crest"),
        pytest.param(0.0, 12.0, 6000 + round(FALLING_ZERO) - 50, id="0-pu-12-ms-across-a-zero"),
    ],
)
def test_a_sub_cycle_dropout_is_no_oscillatory_transient(
    depth_pu: float, duration_ms: float, at: int
) -> None:
    # The missing part of the sine changes sign inside the span: it would ring at ~60-71 Hz.
    envelope = np.ones(SAMPLE_RATE_HZ)
    envelope[at : at + round(duration_ms * SAMPLE_RATE_HZ / 1000)] = depth_pu
    found = transients(sine(amplitude=envelope))
    assert all(t.oscillation is None for t in found), [t.oscillation for t in found]
