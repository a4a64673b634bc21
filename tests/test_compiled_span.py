"""The compiled span metrics give the values of the numpy definitions, row by row, in every corner."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from opq.domain import (
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
    frequency_per_window,
    rms_per_cycle,
    thd_per_window,
    transient_per_cycle,
)
from opq.domain.compiled_span import span_rows

MIN_VRMS_V = 6.0


def waveform(
    fundamental_hz: float,
    n_cycles: int,
    *,
    noise_v: float = 0.3,
    dc_v: float = 0.0,
    seed: int = 3,
    phase: float = 0.4,
) -> npt.NDArray[np.float64]:
    angle = 2 * np.pi * fundamental_hz * np.arange(n_cycles * SAMPLES_PER_CYCLE) / SAMPLE_RATE_HZ + phase
    clean = 170 * (
        np.sin(angle) + 0.04 * np.sin(3 * angle + 1.0) + 0.03 * np.sin(2 * angle) + 0.02 * np.sin(7 * angle)
    )
    return clean + dc_v + noise_v * np.random.default_rng(seed).standard_normal(len(angle))


Metrics = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def whole_span(
    samples_v: npt.NDArray[np.float64], windows: list[tuple[int, int]], period: list[int]
) -> Metrics:
    n_cycles = samples_v.shape[-1] // SAMPLES_PER_CYCLE
    rms_v, transient_v, frequency_hz, _ = span_rows(
        samples_v, (0, n_cycles), windows, [], period, (0, n_cycles), MIN_VRMS_V
    )
    return rms_v, transient_v, frequency_hz


@pytest.mark.parametrize("fundamental_hz", [54.0, 57.2, 60.0, 62.9, 66.0], ids=lambda f: f"{f}Hz")
def test_each_row_gets_the_numpy_metrics_of_that_row(fundamental_hz: float) -> None:
    rows = np.stack(
        [
            waveform(fundamental_hz, 40),
            waveform(fundamental_hz + 0.3, 40, noise_v=2.0, dc_v=1.5, seed=4, phase=2.0),
            0.1 * waveform(fundamental_hz, 40, seed=5),  # a deep sag: 12 V
        ]
    )
    windows = [(10 * j, 10 * j + 10) for j in range(4)]
    period = [c // 10 for c in range(40)]
    rms_v, transient_v, frequency_hz = whole_span(rows, windows, period)
    for row, samples in enumerate(rows):
        expected_hz = frequency_per_window(samples, 10, min_vrms_v=MIN_VRMS_V)
        np.testing.assert_allclose(frequency_hz[row], expected_hz, rtol=1e-11)
        np.testing.assert_allclose(rms_v[row], rms_per_cycle(samples, np.repeat(expected_hz, 10)), rtol=1e-11)
        np.testing.assert_allclose(transient_v[row], transient_per_cycle(samples), rtol=1e-11)
    assert np.all(np.abs(frequency_hz[:, 0] - [fundamental_hz, fundamental_hz + 0.3, fundamental_hz]) < 0.01)


def test_windows_may_overlap_and_cycles_may_take_the_nominal_period() -> None:
    samples = waveform(58.7, 30, noise_v=0.0)[np.newaxis]
    rms_v, _, frequency_hz = whole_span(samples, [(0, 20), (5, 25), (10, 30)], [-1] * 30)
    np.testing.assert_allclose(frequency_hz[0], 58.7, atol=0.002)
    np.testing.assert_allclose(rms_v[0], rms_per_cycle(samples[0]), rtol=1e-11)  # the 200-sample blocks


def test_a_span_inside_longer_rows_sees_only_its_own_samples() -> None:
    rows = np.stack([waveform(59.1, 50, seed=s) for s in range(3)])
    windows, period = [(1, 11), (11, 21)], [-1] + [0] * 10 + [1] * 10 + [-1]
    inside = span_rows(rows, (17, 39), windows, [(0, 12)], period, (1, 21), MIN_VRMS_V)
    alone = span_rows(
        np.ascontiguousarray(rows[:, 17 * 200 : 39 * 200]),
        (0, 22),
        windows,
        [(0, 12)],
        period,
        (1, 21),
        MIN_VRMS_V,
    )
    for got, expected in zip(inside, alone, strict=True):
        np.testing.assert_array_equal(got, expected)
    rms_v, transient_v, _, _ = inside
    # Only the measured cycles get an RMS and a transient; the context cycles read NaN.
    assert np.isnan(rms_v[:, [0, 21]]).all() and np.isnan(transient_v[:, [0, 21]]).all()
    every = span_rows(rows, (17, 39), windows, [(0, 12)], period, (0, 22), MIN_VRMS_V)
    np.testing.assert_array_equal(rms_v[:, 1:21], every[0][:, 1:21])
    np.testing.assert_array_equal(transient_v[:, 1:21], every[1][:, 1:21])


def test_strided_rows_give_what_contiguous_ones_give() -> None:
    rows = np.stack([waveform(60.4, 14, seed=s) for s in range(4)])
    windows, period = [(2, 12)], [-1, -1] + [0] * 10 + [-1, -1]
    strided = span_rows(rows[::2], (0, 14), windows, [(2, 14)], period, (0, 14), MIN_VRMS_V)
    contiguous = span_rows(
        np.ascontiguousarray(rows[::2]), (0, 14), windows, [(2, 14)], period, (0, 14), MIN_VRMS_V
    )
    for got, expected in zip(strided, contiguous, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_an_interruption_has_no_frequency_and_its_cycles_read_zero() -> None:
    samples = waveform(60.0, 30)
    samples[10 * 200 : 20 * 200] = 0.0
    rms_v, transient_v, frequency_hz = whole_span(
        samples[np.newaxis], [(0, 10), (10, 20), (20, 30)], [-1] * 30
    )
    assert math.isnan(frequency_hz[0, 1]) and np.all(np.abs(frequency_hz[0, [0, 2]] - 60.0) < 0.01)
    assert np.all(rms_v[0, 11:19] == 0.0)
    np.testing.assert_allclose(transient_v[0], transient_per_cycle(samples), rtol=1e-11)


@pytest.mark.parametrize("n_cycles", [1, 2, 3])
def test_spans_of_a_few_cycles_match_the_numpy_metrics(n_cycles: int) -> None:
    # A measurement every cycle (rate 1) is a span of one cycle with one of context on each side.
    samples = waveform(61.3, n_cycles)
    rms_v, transient_v, frequency_hz = whole_span(samples[np.newaxis], [(0, n_cycles)], [-1] * n_cycles)
    np.testing.assert_allclose(transient_v[0], transient_per_cycle(samples), rtol=1e-11)
    np.testing.assert_allclose(rms_v[0], rms_per_cycle(samples), rtol=1e-11)
    expected_hz = frequency_per_window(samples, n_cycles, min_vrms_v=MIN_VRMS_V)
    np.testing.assert_allclose(frequency_hz[0], expected_hz, rtol=1e-11)  # NaN where both have no fit


def test_an_impulse_reads_as_a_transient_in_its_cycle_only() -> None:
    samples = waveform(60.0, 12, noise_v=0.0)
    samples[6 * 200 + 57] += 50.0
    _, transient_v, _ = whole_span(samples[np.newaxis], [(1, 11)], [-1] * 12)
    assert 40.0 < transient_v[0, 6] < 50.0
    assert np.all(np.delete(transient_v[0], 6) < 1.0)  # the 7th harmonic's 0.65 V passes the high-pass


def test_each_thd_window_gets_the_numpy_thd_even_one_cut_short_or_interrupted() -> None:
    rows = np.stack([waveform(f, 36, seed=s) for s, f in enumerate([57.5, 60.0, 62.5])])
    rows[2, 24 * 200 :] = 0.0  # the last window of the last row is an interruption
    windows = [(0, 12), (12, 24), (24, 36), (30, 36)]  # the last one cut short, as at a stream's start
    thd = span_rows(rows, (0, 36), [], windows, [-1] * 36, (0, 36), MIN_VRMS_V).thd_ratio
    expected = np.concatenate(
        [
            thd_per_window(rows, 12, min_vrms_v=MIN_VRMS_V),
            thd_per_window(rows[:, 30 * 200 :], 6, min_vrms_v=MIN_VRMS_V),
        ],
        axis=1,
    )
    assert np.isnan(thd[2, 2]) and np.isnan(expected[2, 2]) and np.isnan(thd[2, 3])
    np.testing.assert_allclose(thd, expected, rtol=1e-11)
    np.testing.assert_allclose(thd[0, 0], math.sqrt(0.04**2 + 0.03**2 + 0.02**2), atol=5e-4)
