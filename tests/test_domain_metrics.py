"""The on-box metrics in opq.domain: RMS, frequency, THD, transient, against known waveforms."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.domain import (
    NOMINAL_VOLTAGE_V,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
    Summary,
    frequency_hz,
    frequency_per_window,
    rms_per_cycle,
    summarize,
    thd_per_window,
    thd_ratio,
    transient_per_cycle,
    transient_v,
    waveform_metrics,
)
from opq.domain.filters import decimate, lowpass_taps

PEAK_V = NOMINAL_VOLTAGE_V * math.sqrt(2)
FEW = settings(max_examples=25, deadline=None)


def waveform(
    fundamental_hz: float,
    n_cycles: int,
    *,
    peak_v: float = PEAK_V,
    phase_rad: float = 0.3,
    harmonics: Mapping[int, float] | None = None,
    noise_v: float = 0.0,
    dc_v: float = 0.0,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """A sampled sine [V] of `n_cycles` box cycles, with harmonics {order: ratio}, DC and white noise."""
    rng = np.random.default_rng(seed)
    angle = 2 * np.pi * fundamental_hz * np.arange(n_cycles * SAMPLES_PER_CYCLE) / SAMPLE_RATE_HZ + phase_rad
    samples = peak_v * np.sin(angle) + dc_v
    for order, ratio in (harmonics or {}).items():
        samples += ratio * peak_v * np.sin(order * angle + 0.7 * order)
    return samples + noise_v * rng.standard_normal(len(samples))


@pytest.fixture(autouse=True)
def no_numpy_warnings() -> Iterator[None]:
    """Zeros, NaN windows and interruptions must not divide by zero or warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ---------------------------------------------------------------------------------------------- RMS


@FEW
@given(
    peak_v=st.floats(1.0, 400.0),
    phase_rad=st.floats(0.0, 2 * math.pi),
    n_cycles=st.integers(1, 12),
)
def test_rms_of_a_sine_locked_to_the_cycle_is_peak_over_root_2(
    peak_v: float, phase_rad: float, n_cycles: int
) -> None:
    rms_v = rms_per_cycle(waveform(60.0, n_cycles, peak_v=peak_v, phase_rad=phase_rad))
    assert rms_v.shape == (n_cycles,)
    np.testing.assert_allclose(rms_v, peak_v / math.sqrt(2), rtol=1e-9)


@FEW
@given(fundamental_hz=st.floats(59.9, 60.1), phase_rad=st.floats(0.0, 2 * math.pi))
def test_rms_of_a_sine_near_nominal_is_within_0_1_percent(fundamental_hz: float, phase_rad: float) -> None:
    rms_v = rms_per_cycle(waveform(fundamental_hz, 12, phase_rad=phase_rad))
    np.testing.assert_allclose(rms_v, NOMINAL_VOLTAGE_V, rtol=1e-3)


@FEW
@given(fundamental_hz=st.floats(57.0, 63.0), phase_rad=st.floats(0.0, 2 * math.pi))
def test_rms_of_an_unlocked_sine_stays_within_the_partial_period_bound(
    fundamental_hz: float, phase_rad: float
) -> None:
    # A 200-sample block holds a non-integer number of periods; the mean of sin² over it departs
    # from 1/2 by at most |sin(N·ω)| / (N·sin ω) of 1/2.
    omega = 2 * math.pi * fundamental_hz / SAMPLE_RATE_HZ
    power_error = abs(math.sin(SAMPLES_PER_CYCLE * omega)) / (SAMPLES_PER_CYCLE * math.sin(omega))
    bound = 1 - math.sqrt(1 - power_error) + 1e-12
    rms_v = rms_per_cycle(waveform(fundamental_hz, 6, phase_rad=phase_rad))
    assert np.all(np.abs(rms_v / NOMINAL_VOLTAGE_V - 1) <= bound)


@FEW
@given(magnitude_v=st.floats(1e-3, 300.0), sign=st.sampled_from([-1.0, 1.0]))
def test_rms_of_dc_is_its_magnitude(magnitude_v: float, sign: float) -> None:
    rms_v = rms_per_cycle(np.full(3 * SAMPLES_PER_CYCLE, sign * magnitude_v))
    np.testing.assert_allclose(rms_v, magnitude_v, rtol=1e-12)


def test_rms_works_along_the_last_axis_for_a_fleet() -> None:
    fleet = np.stack([waveform(60.0, 4, peak_v=peak_v) for peak_v in (100.0, 170.0, 0.0)])
    rms_v = rms_per_cycle(fleet)
    assert rms_v.shape == (3, 4)
    np.testing.assert_allclose(rms_v[:, 0], [100 / math.sqrt(2), 170 / math.sqrt(2), 0.0], rtol=1e-9)


@pytest.mark.parametrize(
    "metric",
    [rms_per_cycle, transient_per_cycle, transient_v, frequency_hz, frequency_per_window, thd_ratio],
    ids=lambda metric: metric.__name__,
)
def test_a_partial_cycle_is_refused_with_its_length(metric: object) -> None:
    assert callable(metric)
    with pytest.raises(ValueError, match="12001 samples"):
        metric(np.zeros(12_001))


def test_windows_must_divide_the_waveform() -> None:
    with pytest.raises(ValueError, match=r"2400 samples .* 10-cycle windows"):
        frequency_per_window(np.zeros(2400), 10)
    with pytest.raises(ValueError, match=r"6000 samples .* 60-cycle windows"):
        waveform_metrics(np.zeros(6000))


# ---------------------------------------------------------------------------------------- Frequency

FREQUENCIES_HZ = [57.0, 58.5, 59.5, 59.95, 60.0, 60.05, 60.5, 62.0, 63.0]


@pytest.mark.parametrize("true_hz", FREQUENCIES_HZ, ids=lambda f: f"{f}Hz")
def test_frequency_over_10_cycles_is_within_10_mhz(true_hz: float) -> None:
    samples = waveform(true_hz, 10, harmonics={2: 0.01, 3: 0.04, 5: 0.03}, noise_v=0.5, dc_v=1.0)
    assert abs(frequency_hz(samples) - true_hz) <= 0.010


@FEW
@given(
    true_hz=st.floats(57.0, 63.0),
    phase_rad=st.floats(0.0, 2 * math.pi),
    noise_v=st.floats(0.1, 0.5),
    peak_pu=st.floats(0.5, 1.2),
    seed=st.integers(0, 2**16),
)
def test_frequency_of_a_noisy_sine_is_within_10_mhz(
    true_hz: float, phase_rad: float, noise_v: float, peak_pu: float, seed: int
) -> None:
    samples = waveform(true_hz, 10, peak_v=peak_pu * PEAK_V, phase_rad=phase_rad, noise_v=noise_v, seed=seed)
    assert abs(frequency_hz(samples) - true_hz) <= 0.010


def test_dc_offset_and_even_harmonics_do_not_bias_the_frequency() -> None:
    samples = waveform(59.7, 10, harmonics={2: 0.05, 4: 0.02}, dc_v=5.0)
    assert abs(frequency_hz(samples) - 59.7) <= 0.002


@pytest.mark.parametrize(
    "samples",
    [np.zeros(2000), 0.5 * np.random.default_rng(1).standard_normal(2000), np.full(2000, 120.0)],
    ids=["zeros", "noise-only", "dc"],
)
def test_frequency_is_nan_without_a_fundamental(samples: npt.NDArray[np.float64]) -> None:
    assert math.isnan(frequency_hz(samples))


@pytest.mark.parametrize("true_hz", [57.0, 59.8, 63.0], ids=lambda f: f"{f}Hz")
@pytest.mark.parametrize("cut_at", [700, 1000, 1300], ids=lambda n: f"cut-at-{n}")
def test_frequency_stays_sane_in_a_window_cut_by_an_interruption(true_hz: float, cut_at: int) -> None:
    # IEC 61000-4-30 flags such a window; it must still not read wildly (an unguarded fit is off by Hz).
    samples = waveform(true_hz, 10, noise_v=0.3)
    samples[cut_at:] = 0.0
    assert abs(frequency_hz(samples) - true_hz) <= 0.15


def test_frequency_per_window_has_no_warm_up_and_vectorizes() -> None:
    fleet = np.stack([waveform(59.7, 60, noise_v=0.3), np.zeros(12_000), waveform(60.2, 60, noise_v=0.3)])
    frequencies_hz = frequency_per_window(fleet)
    assert frequencies_hz.shape == (3, 6)
    np.testing.assert_allclose(frequencies_hz[0], 59.7, atol=0.010)
    assert np.all(np.isnan(frequencies_hz[1]))
    np.testing.assert_allclose(frequencies_hz[2], 60.2, atol=0.010)
    np.testing.assert_allclose(frequency_per_window(fleet[2]), frequencies_hz[2], rtol=1e-12)


def test_frequency_hz_wants_one_waveform() -> None:
    with pytest.raises(ValueError, match="1-D"):
        frequency_hz(np.zeros((2, 2000)))


# ---------------------------------------------------------------------------------------------- THD

HARMONIC_MIXES = {
    "3rd-4%-5th-3%": ({3: 0.04, 5: 0.03}, 0.05),
    "iec-61000-4-7-5th-5%-7th-3%": ({5: 0.05, 7: 0.03}, 0.05831),
    "20%-odd-and-even": (
        {2: 0.02, 3: 0.12, 5: 0.1, 7: 0.08, 9: 0.05, 11: 0.04, 13: 0.03, 49: 0.02},
        math.sqrt(0.02**2 + 0.12**2 + 0.1**2 + 0.08**2 + 0.05**2 + 0.04**2 + 0.03**2 + 0.02**2),
    ),
    "50th-only-3%": ({50: 0.03}, 0.03),
}


@pytest.mark.parametrize("fundamental_hz", [59.5, 60.0, 60.5, 57.0, 63.0], ids=lambda f: f"{f}Hz")
@pytest.mark.parametrize("mix", HARMONIC_MIXES.values(), ids=HARMONIC_MIXES.keys())
def test_thd_of_a_harmonic_mix_is_within_0_1_percentage_point(
    mix: tuple[dict[int, float], float], fundamental_hz: float
) -> None:
    harmonics, expected_ratio = mix
    samples = waveform(fundamental_hz, 12, harmonics=harmonics, noise_v=0.1, dc_v=1.0)
    assert abs(thd_ratio(samples) - expected_ratio) <= 0.001


@pytest.mark.parametrize("window_cycles", [6, 10, 12], ids=lambda c: f"{c}-cycles")
def test_thd_holds_for_opq_and_iec_window_lengths(window_cycles: int) -> None:
    samples = waveform(59.5, 60, harmonics={3: 0.04, 5: 0.03})
    np.testing.assert_allclose(thd_per_window(samples, window_cycles), 0.05, atol=0.001)


@FEW
@given(
    fundamental_hz=st.floats(57.0, 63.0),
    ratios=st.dictionaries(st.integers(2, 50), st.floats(0.0, 0.08), min_size=1, max_size=6),
    phase_rad=st.floats(0.0, 2 * math.pi),
)
def test_thd_of_any_mix_up_to_20_percent_is_within_0_1_percentage_point(
    fundamental_hz: float, ratios: dict[int, float], phase_rad: float
) -> None:
    expected_ratio = math.sqrt(sum(ratio**2 for ratio in ratios.values()))
    samples = waveform(fundamental_hz, 12, harmonics=ratios, phase_rad=phase_rad)
    assert abs(thd_ratio(samples) - expected_ratio) <= 0.001


@pytest.mark.parametrize("fundamental_hz", [57.0, 59.5, 60.0, 60.5, 63.0], ids=lambda f: f"{f}Hz")
def test_thd_of_a_clean_sine_is_nearly_zero(fundamental_hz: float) -> None:
    assert thd_ratio(waveform(fundamental_hz, 12)) < 1e-4


def test_thd_uses_a_given_fundamental_and_is_nan_without_one() -> None:
    samples = waveform(59.5, 60, harmonics={3: 0.04, 5: 0.03})
    given_hz = np.array([59.5, 59.5, np.nan, 59.5, 59.5])
    thd = thd_per_window(samples, 12, given_hz)
    np.testing.assert_allclose(thd[[0, 1, 3, 4]], 0.05, atol=0.001)
    assert math.isnan(thd[2])


def test_thd_is_nan_in_an_interruption_and_vectorizes() -> None:
    fleet = np.stack([waveform(60.5, 24, harmonics={5: 0.05}), np.zeros(4800), waveform(60.5, 24) * 0.01])
    thd = thd_per_window(fleet)
    assert thd.shape == (3, 2)
    np.testing.assert_allclose(thd[0], 0.05, atol=0.001)
    assert np.all(np.isnan(thd[1:]))


# ---------------------------------------------------------------------------------------- Transient


@pytest.mark.parametrize("fundamental_hz", [57.0, 60.0, 63.0], ids=lambda f: f"{f}Hz")
def test_transient_of_a_sine_with_low_harmonics_is_nearly_zero(fundamental_hz: float) -> None:
    samples = waveform(fundamental_hz, 12, harmonics={2: 0.02, 3: 0.05, 4: 0.02, 5: 0.03})
    assert transient_v(samples) < 0.1


@pytest.mark.parametrize(
    ("width_samples", "least_fraction"),
    # A 400 Hz-class high-pass takes a spike's low-frequency content away with the fundamental:
    # the wider the spike, the more of its area goes (OPQ's filter would lose as much).
    [(1, 0.9), (2, 0.75)],
    ids=["0.08-ms", "0.17-ms"],
)
def test_transient_shows_an_impulse_at_about_its_height(width_samples: int, least_fraction: float) -> None:
    samples = waveform(59.5, 12, harmonics={3: 0.04}, noise_v=0.1)
    start = 5 * SAMPLES_PER_CYCLE + 37
    samples[start : start + width_samples] += 50.0
    per_cycle_v = transient_per_cycle(samples)
    assert least_fraction * 50.0 <= per_cycle_v[5] <= 1.05 * 50.0
    assert np.max(np.delete(per_cycle_v, 5)) < 2.0
    assert transient_v(samples) == per_cycle_v[5]


def test_transient_vectorizes_over_a_fleet() -> None:
    fleet = np.stack([waveform(60.0, 6), waveform(60.0, 6, seed=1, noise_v=1.0)])
    np.testing.assert_allclose(transient_per_cycle(fleet)[1], transient_per_cycle(fleet[1]), rtol=1e-12)
    assert transient_per_cycle(fleet).shape == (2, 6)


# ------------------------------------------------------------------------------ All four, summaries


def test_waveform_metrics_match_the_single_metrics() -> None:
    samples = waveform(59.8, 60, harmonics={3: 0.04}, noise_v=0.3)
    metrics = waveform_metrics(samples)
    assert metrics.rms_v.shape == (60,)
    assert metrics.frequency_hz.shape == (6,)
    assert metrics.thd_ratio.shape == (5,)
    assert metrics.transient_v.shape == (60,)
    np.testing.assert_allclose(metrics.frequency_hz, frequency_per_window(samples), rtol=1e-12)
    # Each cycle's RMS is over one period of its 10-cycle window's frequency.
    np.testing.assert_array_equal(metrics.rms_v, rms_per_cycle(samples, np.repeat(metrics.frequency_hz, 10)))
    np.testing.assert_array_equal(metrics.thd_ratio, thd_per_window(samples))
    np.testing.assert_array_equal(metrics.transient_v, transient_per_cycle(samples))


def test_waveform_metrics_of_a_fleet_match_each_box() -> None:
    fleet = np.stack([waveform(59.8, 60, noise_v=0.3), waveform(60.1, 60, harmonics={5: 0.05})])
    metrics = waveform_metrics(fleet)
    single = waveform_metrics(fleet[1])
    np.testing.assert_allclose(metrics.frequency_hz[1], single.frequency_hz, rtol=1e-12)
    np.testing.assert_allclose(metrics.thd_ratio[1], single.thd_ratio, rtol=1e-12)
    np.testing.assert_allclose(metrics.transient_v[1], single.transient_v, rtol=1e-12)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, np.nan, 3.0, 2.0], Summary(1.0, 3.0, 2.0)),
        ([[4.0], [6.0]], Summary(4.0, 6.0, 5.0)),
        ([np.nan, np.nan], Summary(math.nan, math.nan, math.nan)),
        ([], Summary(math.nan, math.nan, math.nan)),
    ],
    ids=["ignores-nan", "flattens", "all-nan", "empty"],
)
def test_summarize_gives_min_max_average(values: list[float], expected: Summary) -> None:
    np.testing.assert_array_equal(summarize(values), expected)


def test_decimation_equals_the_direct_filter() -> None:
    samples = np.random.default_rng(2).standard_normal((2, 2000))
    direct = np.stack([np.convolve(row, lowpass_taps(), "valid")[::10] for row in samples])
    np.testing.assert_allclose(decimate(samples), direct, atol=1e-12)
