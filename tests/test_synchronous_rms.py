"""RMS over whole periods of the fundamental (IEC 61000-4-30 Class A) against analytic values."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.domain import (
    NOMINAL_VOLTAGE_V,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
    frequency_per_window,
    rms_per_cycle,
    rms_per_window,
)
from opq.domain.synchronous_rms import (
    mean_square_between,
    period_samples,
    synchronous_rms_per_cycle,
)

PEAK_V = NOMINAL_VOLTAGE_V * math.sqrt(2)
FEW = settings(max_examples=30, deadline=None)
CLASS_A = 0.001  # ±0.1 % of Udin


def waveform(
    fundamental_hz: float,
    n_cycles: int,
    *,
    phase_rad: float = 0.3,
    harmonics: dict[int, float] | None = None,
    dc_v: float = 0.0,
    noise_v: float = 0.0,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    angle = 2 * np.pi * fundamental_hz * np.arange(n_cycles * SAMPLES_PER_CYCLE) / SAMPLE_RATE_HZ + phase_rad
    samples = PEAK_V * np.sin(angle) + dc_v
    for order, ratio in (harmonics or {}).items():
        samples += ratio * PEAK_V * np.sin(order * angle + 0.7 * order)
    return samples + noise_v * np.random.default_rng(seed).standard_normal(len(samples))


def true_rms_v(harmonics: dict[int, float], dc_v: float = 0.0) -> float:
    return math.sqrt(NOMINAL_VOLTAGE_V**2 * (1 + sum(r * r for r in harmonics.values())) + dc_v**2)


@pytest.fixture(autouse=True)
def no_numpy_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@FEW
@given(
    fundamental_hz=st.floats(57.0, 63.0),
    phase_rad=st.floats(0.0, 2 * math.pi),
    third=st.floats(0.0, 0.08),
    fifth=st.floats(0.0, 0.08),
    n_cycles=st.integers(1, 14),
)
def test_one_period_rms_of_a_sine_with_harmonics_is_exact_at_any_frequency(
    fundamental_hz: float, phase_rad: float, third: float, fifth: float, n_cycles: int
) -> None:
    harmonics = {3: third, 5: fifth}
    samples = waveform(fundamental_hz, n_cycles, phase_rad=phase_rad, harmonics=harmonics)
    rms_v = rms_per_cycle(samples, fundamental_hz)
    assert rms_v.shape == (n_cycles,)
    if n_cycles * SAMPLES_PER_CYCLE >= SAMPLE_RATE_HZ / fundamental_hz:  # a whole period fits
        np.testing.assert_allclose(rms_v, true_rms_v(harmonics), rtol=1e-4)


@FEW
@given(fundamental_hz=st.floats(57.0, 63.0), phase_rad=st.floats(0.0, 2 * math.pi))
def test_the_fixed_block_rms_is_what_misses_class_a_off_nominal(
    fundamental_hz: float, phase_rad: float
) -> None:
    samples = waveform(fundamental_hz, 12, phase_rad=phase_rad)
    synchronous = rms_per_cycle(samples, fundamental_hz)
    blocks = rms_per_cycle(samples)
    assert np.all(np.abs(synchronous / NOMINAL_VOLTAGE_V - 1) <= 1e-4)
    # The block's error is the partial-period bound |sin(N·ω)| / (N·sin ω) of 1/2 of the power.
    omega = 2 * math.pi * fundamental_hz / SAMPLE_RATE_HZ
    power_error = abs(math.sin(SAMPLES_PER_CYCLE * omega)) / (SAMPLES_PER_CYCLE * math.sin(omega))
    assert np.all(np.abs(blocks / NOMINAL_VOLTAGE_V - 1) <= 1 - math.sqrt(1 - power_error) + 1e-12)
    if abs(fundamental_hz - 60.0) >= 0.5:  # 0.1 % of RMS is 0.2 % of power
        assert np.max(np.abs(blocks / NOMINAL_VOLTAGE_V - 1)) > CLASS_A


@FEW
@given(
    fundamental_hz=st.floats(57.0, 63.0),
    phase_rad=st.floats(0.0, 2 * math.pi),
    noise_v=st.floats(0.0, 0.5),
    dc_v=st.floats(-2.0, 2.0),
    seed=st.integers(0, 2**16),
)
def test_window_rms_with_measured_frequency_meets_class_a(
    fundamental_hz: float, phase_rad: float, noise_v: float, dc_v: float, seed: int
) -> None:
    harmonics = {2: 0.01, 3: 0.02, 5: 0.03}
    samples = waveform(
        fundamental_hz, 24, phase_rad=phase_rad, harmonics=harmonics, dc_v=dc_v, noise_v=noise_v, seed=seed
    )
    truth_v = math.sqrt(true_rms_v(harmonics, dc_v) ** 2 + noise_v**2)
    window_v = rms_per_window(samples, 12)  # the frequency measured over each window
    assert window_v.shape == (2,)
    assert np.all(np.abs(window_v - truth_v) <= CLASS_A * NOMINAL_VOLTAGE_V)


@pytest.mark.parametrize("fundamental_hz", [57.0, 59.5, 60.0, 60.5, 63.0], ids=lambda f: f"{f}Hz")
def test_a_window_takes_the_whole_periods_nearest_its_length(fundamental_hz: float) -> None:
    # A half-wave rectified sine: the RMS of a partial period would differ from 1/2 of the peak.
    samples = np.maximum(waveform(fundamental_hz, 60, phase_rad=0.0), 0.0)
    np.testing.assert_allclose(rms_per_window(samples, 12, fundamental_hz), PEAK_V / 2, rtol=2e-4)
    np.testing.assert_allclose(rms_per_window(samples, 10, fundamental_hz), PEAK_V / 2, rtol=2e-4)


def test_one_period_sums_match_the_general_interval_sums() -> None:
    rng = np.random.default_rng(4)
    for fundamental_hz in (54.0, 57.0, 61.3, 66.0):
        for n_cycles in (1, 2, 7):
            samples = 100 * rng.standard_normal(n_cycles * SAMPLES_PER_CYCLE)
            period = float(period_samples(fundamental_hz))
            centres = SAMPLES_PER_CYCLE * (np.arange(n_cycles) + 0.5)
            expected = np.sqrt(
                mean_square_between(samples * samples, centres - period / 2, np.full(n_cycles, period))
            )
            np.testing.assert_allclose(
                synchronous_rms_per_cycle(samples, fundamental_hz), expected, rtol=1e-12
            )


def test_one_period_rms_works_along_the_last_axis_with_one_frequency_per_cycle() -> None:
    fleet = np.stack([waveform(58.0, 6), 0.5 * waveform(62.0, 6), np.zeros(1200)])
    frequency_hz = np.array([[58.0] * 6, [62.0] * 6, [np.nan] * 6])
    rms_v = rms_per_cycle(fleet, frequency_hz)
    assert rms_v.shape == (3, 6)
    np.testing.assert_allclose(rms_v[1], rms_per_cycle(fleet[1], 62.0), rtol=1e-12)
    np.testing.assert_allclose(rms_v[:2], [[120.0] * 6, [60.0] * 6], rtol=1e-4)
    assert np.all(rms_v[2] == 0.0)


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(2400),
        np.full(2400, -7.0),
        5.0 * np.random.default_rng(2).standard_normal(2400),
        np.concatenate([waveform(57.0, 5), np.zeros(1400)]),
    ],
    ids=["zeros", "dc", "noise-only", "interrupted"],
)
def test_without_a_frequency_the_rms_falls_back_to_the_box_cycle(samples: npt.NDArray[np.float64]) -> None:
    measured_hz = frequency_per_window(samples, 12)
    window_v = rms_per_window(samples, 12)
    cycle_v = rms_per_cycle(samples, np.nan)
    np.testing.assert_allclose(cycle_v, rms_per_cycle(samples), rtol=1e-12)
    if np.isnan(measured_hz[0]):
        np.testing.assert_allclose(window_v, math.sqrt(np.mean(samples**2)), rtol=1e-12)
    assert np.all(np.isfinite(window_v)) and np.all(window_v >= 0)


def test_a_wild_frequency_cannot_stretch_the_period_past_ten_percent() -> None:
    assert period_samples([1.0, 1000.0, np.nan]).tolist() == pytest.approx([12_000 / 54, 12_000 / 66, 200.0])


def test_heavy_noise_leaves_the_rms_unbiased() -> None:
    # 5 V rms of noise on 120 V: the crossings still give the period, and noise adds its power.
    samples = waveform(57.5, 120, harmonics={3: 0.03}, dc_v=3.0, noise_v=5.0, seed=7)
    truth_v = math.sqrt(true_rms_v({3: 0.03}, 3.0) ** 2 + 5.0**2)
    window_v = rms_per_window(samples, 12)
    cycle_v = rms_per_cycle(samples, np.repeat(frequency_per_window(samples, 10), 10))
    # One σ of a 12-cycle window's estimate is 2·U·σ / √N of the power: 0.085 % of the RMS.
    assert np.all(np.abs(window_v / truth_v - 1) < 0.005)
    assert abs(np.mean(window_v) / truth_v - 1) < 0.001
    assert abs(math.sqrt(np.mean(cycle_v**2)) / truth_v - 1) < 0.001
