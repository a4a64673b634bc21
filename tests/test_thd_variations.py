"""Excessive THD (opq.domain.thd_variations) on synthetic waveforms and series."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.domain import NOMINAL_VOLTAGE_V, SAMPLE_RATE_HZ
from opq.domain.thd_variations import ThdLimits, thd_variations
from opq.mauka.features import window_thd_ratio

PEAK_V = NOMINAL_VOLTAGE_V * math.sqrt(2)
NAN = math.nan


def distorted(
    harmonics: Mapping[int, float],
    start_s: float,
    duration_s: float,
    *,
    total_s: float = 12.0,
    noise_v: float = 0.4,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """120 V rms at 60 Hz with harmonics {order: ratio of the fundamental} from `start_s` for `duration_s`."""
    t = np.arange(round(total_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    phase = 2 * np.pi * 60.0 * t + 0.3
    on = (t >= start_s) & (t < start_s + duration_s)
    samples = PEAK_V * np.sin(phase)
    for order, ratio in harmonics.items():
        samples += on * ratio * PEAK_V * np.sin(order * phase + 0.4 * order)
    return samples + noise_v * np.random.default_rng(seed).standard_normal(t.size)


@pytest.mark.parametrize(
    ("harmonics", "thd_percent"),
    [
        pytest.param({5: 0.04, 7: 0.03}, 5.0, id="5th4%+7th3%=5%"),
        pytest.param({5: 0.045, 7: 0.03}, 5.41, id="5th4.5%+7th3%=5.4%"),
        pytest.param({3: 0.05, 5: 0.04, 11: 0.02}, 6.71, id="3rd+5th+11th=6.7%"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eight_seconds_of_harmonics_give_one_excessive_thd(
    harmonics: Mapping[int, float], thd_percent: float, seed: int
) -> None:
    start_s, duration_s = 2.1, 8.0  # starts half-way into a 200 ms window
    found = thd_variations(window_thd_ratio(distorted(harmonics, start_s, duration_s, seed=seed)))
    assert len(found) == 1
    variation = found[0]
    # Each end is within one 200 ms window; only a window mostly inside counts.
    assert abs(variation.start_sample / SAMPLE_RATE_HZ - start_s) <= 0.2
    assert abs(variation.end_sample / SAMPLE_RATE_HZ - (start_s + duration_s)) <= 0.2
    assert variation.duration_ms == pytest.approx(duration_s * 1000, abs=400)
    assert 100 * variation.max_thd_ratio == pytest.approx(thd_percent, abs=0.1)
    assert 100 * variation.mean_thd_ratio == pytest.approx(thd_percent, abs=0.02)


@pytest.mark.parametrize(
    "harmonics",
    [
        pytest.param({5: 0.015}, id="5th-1.5%"),
        pytest.param({5: 0.035, 7: 0.03}, id="4.6%"),
        pytest.param({}, id="clean"),
    ],
)
def test_thd_below_the_limit_gives_nothing(harmonics: Mapping[int, float]) -> None:
    series = window_thd_ratio(distorted(harmonics, 2.1, 8.0))
    assert thd_variations(series) == []
    if harmonics:  # the distortion is there: a lower limit sees it
        assert len(thd_variations(series, ThdLimits(threshold_ratio=0.01))) == 1


def test_thd_hovering_at_the_limit_gives_one_variation_thanks_to_hysteresis() -> None:
    # 5 % THD plus noise reads 4.95-5.04 % window to window.
    series = window_thd_ratio(distorted({5: 0.04, 7: 0.03}, 2.1, 8.0))
    assert len(thd_variations(series)) == 1
    assert len(thd_variations(series, ThdLimits(hysteresis_ratio=0.0))) > 1


@pytest.mark.parametrize(
    ("values", "limits", "expected"),
    [
        pytest.param([0.01, 0.06, 0.06, 0.01], ThdLimits(), [(1, 3)], id="plain"),
        pytest.param([0.049, 0.051, 0.049, 0.01], ThdLimits(), [(0, 3)], id="starts-at-release"),
        pytest.param([0.06, NAN, NAN, 0.06], ThdLimits(), [(0, 4)], id="bridges-nan"),
        pytest.param([0.06, NAN, 0.01], ThdLimits(), [(0, 1)], id="ends-on-measured"),
        pytest.param(
            [0.06, 0.01, 0.06, 0.06], ThdLimits(min_duration_windows=2), [(2, 4)], id="min-duration"
        ),
        pytest.param([NAN, NAN], ThdLimits(), [], id="interrupted"),
        pytest.param([], ThdLimits(), [], id="empty"),
    ],
)
def test_thd_series_rules(values: list[float], limits: ThdLimits, expected: list[tuple[int, int]]) -> None:
    found = thd_variations(np.array(values, dtype=np.float64), limits)
    assert [(v.start_window, v.end_window) for v in found] == expected


def test_windows_are_200_ms_and_flags_mark_open_ends() -> None:
    (variation,) = thd_variations(np.array([0.06, 0.07, 0.01]))
    assert (variation.start_sample, variation.end_sample) == (0, 4800)
    assert variation.duration_ms == 400.0
    assert variation.open_start and not variation.open_end
    assert variation.max_thd_ratio == 0.07


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"threshold_ratio": 0.0}, id="zero-threshold"),
        pytest.param({"hysteresis_ratio": 0.05}, id="hysteresis-as-large-as-threshold"),
        pytest.param({"hysteresis_ratio": -0.001}, id="negative-hysteresis"),
        pytest.param({"min_duration_windows": 0}, id="no-duration"),
        pytest.param({"threshold_ratio": math.nan}, id="nan"),
    ],
)
def test_bad_thd_limits_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"ratio|windows"):
        ThdLimits(**changes)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.one_of(st.floats(0.0, 0.2), st.just(NAN)), max_size=60),
    raises=st.lists(st.floats(0.0, 0.05), min_size=60, max_size=60),
)
def test_more_distortion_never_shrinks_the_excessive_thd(values: list[float], raises: list[float]) -> None:
    series = np.array(values, dtype=np.float64)
    worse = series + np.array(raises[: series.size])

    def covered(found_in: npt.NDArray[np.float64]) -> set[int]:
        return {w for v in thd_variations(found_in) for w in range(v.start_window, v.end_window)}

    assert covered(series) <= covered(worse)
    for variation in thd_variations(worse):
        assert variation.max_thd_ratio > 0.05
        assert all(np.isnan(w) or w > 0.048 for w in worse[variation.start_window : variation.end_window])
