"""`span_metrics`, a box's one-pass path, gives the same values as the metrics one by one."""

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
from opq.domain.span_metrics import span_metrics

PEAK_V = 120 * math.sqrt(2)


def waveform(fundamental_hz: float, n_cycles: int, noise_v: float = 0.3) -> npt.NDArray[np.float64]:
    angle = 2 * np.pi * fundamental_hz * np.arange(n_cycles * SAMPLES_PER_CYCLE) / SAMPLE_RATE_HZ + 0.4
    clean = PEAK_V * (np.sin(angle) + 0.04 * np.sin(3 * angle + 1.0) + 0.02 * np.sin(7 * angle))
    return clean + noise_v * np.random.default_rng(5).standard_normal(len(angle))


@pytest.mark.parametrize("fundamental_hz", [57.2, 60.0, 62.9], ids=lambda f: f"{f}Hz")
def test_one_pass_matches_the_metrics_one_by_one(fundamental_hz: float) -> None:
    samples = waveform(fundamental_hz, 62)
    body = samples[SAMPLES_PER_CYCLE : 61 * SAMPLES_PER_CYCLE]  # 60 cycles, one of context each side
    frequency_windows = [(1 + 10 * j, 11 + 10 * j) for j in range(6)]
    thd_windows = [(1 + 12 * j, 13 + 12 * j) for j in range(5)] + [(55, 61)]  # one cut short
    metrics = span_metrics(samples, frequency_windows, thd_windows)

    # A window's fit may use a crossing or two more near its edges than the window alone offers.
    np.testing.assert_allclose(metrics.frequency_hz, frequency_per_window(body, 10), atol=2e-3)
    np.testing.assert_allclose(metrics.thd_ratio[:5], thd_per_window(body, 12), rtol=1e-9)
    np.testing.assert_allclose(
        metrics.thd_ratio[5], thd_per_window(samples[55 * 200 : 61 * 200], 6)[0], rtol=1e-9
    )
    np.testing.assert_allclose(metrics.transient_v, transient_per_cycle(samples), rtol=1e-12)
    cycle_hz = np.concatenate([[np.nan], np.repeat(metrics.frequency_hz, 10), [np.nan]])
    np.testing.assert_allclose(metrics.rms_v, rms_per_cycle(samples, cycle_hz), rtol=1e-12)
    truth_v = 120 * math.sqrt(1 + 0.04**2 + 0.02**2 + (0.3 / 120) ** 2)
    assert np.all(np.abs(metrics.rms_v[1:-1] / truth_v - 1) < 0.001)


def test_cycles_take_the_period_of_the_window_chosen_for_them() -> None:
    samples = waveform(58.0, 12, noise_v=0.0)
    nominal = span_metrics(samples, [(1, 11)], [], period_windows=[-1] * 12)
    chosen = span_metrics(samples, [(1, 11)], [], period_windows=[0] * 12)
    np.testing.assert_allclose(nominal.rms_v, rms_per_cycle(samples), rtol=1e-12)  # the box cycles
    np.testing.assert_allclose(chosen.rms_v, rms_per_cycle(samples, chosen.frequency_hz[0]), rtol=1e-12)
    assert chosen.thd_ratio.shape == (0,)


def test_an_interrupted_span_has_no_frequency_or_thd_and_block_rms() -> None:
    samples = np.zeros(14 * SAMPLES_PER_CYCLE)
    metrics = span_metrics(samples, [(2, 12)], [(0, 12)])
    assert np.isnan(metrics.frequency_hz).all() and np.isnan(metrics.thd_ratio).all()
    assert np.all(metrics.rms_v == 0.0)
