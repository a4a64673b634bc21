"""Frequency variations (opq.domain.frequency_variations) on synthetic waveforms and series."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.domain import NOMINAL_VOLTAGE_V, SAMPLE_RATE_HZ
from opq.domain.frequency_variations import (
    FrequencyLimits,
    frequency_variations,
    ieee_duration,
    runs_beyond,
)
from opq.mauka.features import cycle_frequency_hz

PEAK_V = NOMINAL_VOLTAGE_V * math.sqrt(2)
FEW = settings(max_examples=40, deadline=None)


def seconds(duration_s: float) -> npt.NDArray[np.float64]:
    """Sample times [s] of a waveform lasting `duration_s`."""
    return np.arange(round(duration_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ


def waveform_at(
    frequency_hz: npt.NDArray[np.float64], *, noise_v: float = 0.4, seed: int = 0
) -> npt.NDArray[np.float64]:
    """A 120 V rms sine following an instantaneous frequency [Hz] per sample, phase-continuously."""
    phase = 2 * np.pi * np.cumsum(frequency_hz) / SAMPLE_RATE_HZ + 0.3
    noise = noise_v * np.random.default_rng(seed).standard_normal(frequency_hz.size)
    return np.asarray(PEAK_V * np.sin(phase) + noise, dtype=np.float64)


def step_profile(
    to_hz: float, start_s: float, duration_s: float, total_s: float = 10.0
) -> npt.NDArray[np.float64]:
    """60 Hz, stepping to `to_hz` for `duration_s` from `start_s` [Hz per sample]."""
    t = seconds(total_s)
    return np.where((t >= start_s) & (t < start_s + duration_s), to_hz, 60.0)


# ------------------------------------------------------------------------------ waveforms end to end


@pytest.mark.parametrize(
    ("to_hz", "kind"),
    [
        pytest.param(59.8, "FREQUENCY_SAG", id="sag-0.2Hz"),
        pytest.param(60.2, "FREQUENCY_SWELL", id="swell+0.2Hz"),
        pytest.param(57.5, "FREQUENCY_INTERRUPTION", id="interruption-57.5Hz"),
        pytest.param(58.5, "FREQUENCY_SAG", id="deep-sag-58.5Hz"),
    ],
)
def test_a_five_second_step_gives_one_variation_in_place(to_hz: float, kind: str) -> None:
    start_s, duration_s = 2.013, 5.0  # starts part-way into a cycle
    found = frequency_variations(cycle_frequency_hz(waveform_at(step_profile(to_hz, start_s, duration_s))))
    assert len(found) == 1
    variation = found[0]
    assert variation.kind == kind
    assert abs(variation.start_cycle - start_s * 60) <= 2
    assert abs(variation.end_cycle - (start_s + duration_s) * 60) <= 2
    assert variation.extreme_hz == pytest.approx(to_hz, abs=0.005)
    assert variation.deviation_hz == pytest.approx(to_hz - 60.0, abs=0.005)
    assert variation.duration_ms == pytest.approx(duration_s * 1000, abs=4 * 1000 / 60)
    assert not variation.open_start and not variation.open_end


def test_a_slow_wander_within_the_limits_gives_nothing() -> None:
    t = seconds(10.0)
    series = cycle_frequency_hz(waveform_at(60.0 + 0.05 * np.sin(2 * np.pi * 0.2 * t)))
    assert frequency_variations(series) == []
    # The wander is there: limits at ±0.04 Hz see it.
    tight = FrequencyLimits(swell_hz=60.04, sag_hz=59.96, hysteresis_hz=0.005)
    assert {v.kind for v in frequency_variations(series, tight)} == {"FREQUENCY_SWELL", "FREQUENCY_SAG"}


def test_an_island_wander_touching_the_limit_for_three_cycles_gives_nothing() -> None:
    t = seconds(10.0)
    # ±0.05 Hz wander, plus a 150 ms bump at its crest that touches 60.12 Hz.
    bump = np.where(np.abs(t - 5.0) < 0.075, 0.5 * (1 + np.cos(2 * np.pi * (t - 5.0) / 0.15)), 0.0)
    series = cycle_frequency_hz(waveform_at(60.0 + 0.05 * np.sin(2 * np.pi * 0.25 * t) + 0.07 * bump))
    assert 2 <= np.count_nonzero(series > 60.1) <= 4
    assert frequency_variations(series) == []
    # Only the minimum duration keeps it out.
    short = frequency_variations(series, FrequencyLimits(min_duration_cycles=1))
    assert [v.kind for v in short] == ["FREQUENCY_SWELL"]


def test_a_frequency_hovering_at_the_limit_gives_one_variation() -> None:
    t = seconds(8.0)
    hovering = (t >= 1.0) & (t < 6.0)
    profile = np.where(hovering, 59.9 + 0.012 * np.sin(2 * np.pi * 2.0 * t), 60.0)
    series = cycle_frequency_hz(waveform_at(profile))
    found = frequency_variations(series)
    assert [v.kind for v in found] == ["FREQUENCY_SAG"]
    assert abs(found[0].start_cycle - 60) <= 2 and abs(found[0].end_cycle - 360) <= 2
    # Without hysteresis the same series chatters.
    assert len(frequency_variations(series, FrequencyLimits(hysteresis_hz=0.0))) > 3


# ------------------------------------------------------------------------------------ series rules

NAN = math.nan


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([60, 59.8, 59.8, 60], [(1, 3)], id="plain"),
        pytest.param([59.8, 59.8], [(0, 2)], id="whole-series"),
        pytest.param([60, 59.91, 59.85, 59.91, 60], [(1, 4)], id="starts-at-release"),
        pytest.param([60, 59.91, 59.915, 60], [], id="never-past-limit"),
        pytest.param([59.8, 59.95, 59.8], [(0, 1), (2, 3)], id="split-by-value-inside"),
        pytest.param([59.8, NAN, NAN, 59.8], [(0, 4)], id="bridges-nan"),
        pytest.param([NAN, 59.8, NAN], [(1, 2)], id="ends-on-measured"),
        pytest.param([NAN, NAN], [], id="all-nan"),
        pytest.param([], [], id="empty"),
    ],
)
def test_runs_beyond(values: list[float], expected: list[tuple[int, int]]) -> None:
    assert runs_beyond(np.array(values, dtype=np.float64), 59.9, 59.92, above=False) == expected


def test_nan_gap_inside_a_sag_neither_splits_nor_counts() -> None:
    values = np.array([60.0] * 5 + [59.8] * 8 + [NAN] * 30 + [59.8] * 8 + [60.0] * 5)
    limits = FrequencyLimits(min_duration_cycles=16)
    (variation,) = frequency_variations(values, limits)
    assert (variation.start_cycle, variation.end_cycle) == (5, 5 + 8 + 30 + 8 - 1 + 2)
    # 16 measured values are needed: the 30 NaN do not count.
    assert frequency_variations(values, FrequencyLimits(min_duration_cycles=17)) == []


def test_window_cycles_sets_the_end_and_open_flags() -> None:
    values = np.array([60.0] * 3 + [60.3] * 12)
    (variation,) = frequency_variations(values, window_cycles=3)
    assert (variation.start_cycle, variation.end_cycle) == (3, 3 + 12 - 1 + 3)
    assert variation.open_end and not variation.open_start


def test_a_sag_only_briefly_below_58_hz_stays_a_sag() -> None:
    values = np.array([60.0] * 5 + [59.0] * 20 + [57.9] * 5 + [59.0] * 20 + [60.0] * 5)
    assert [v.kind for v in frequency_variations(values)] == ["FREQUENCY_SAG"]
    assert frequency_variations(values)[0].extreme_hz == 57.9


@pytest.mark.parametrize(
    ("duration_ms", "expected"),
    [
        pytest.param(8.33, "UNDEFINED", id="half-cycle"),
        pytest.param(8.34, "INSTANTANEOUS", id="just-over-half-cycle"),
        pytest.param(500.0, "INSTANTANEOUS", id="500ms"),
        pytest.param(500.1, "MOMENTARY", id="over-500ms"),
        pytest.param(3_000.0, "MOMENTARY", id="3s"),
        pytest.param(3_000.1, "TEMPORARY", id="over-3s"),
        pytest.param(60_000.0, "TEMPORARY", id="60s"),
        pytest.param(60_000.1, "SUSTAINED", id="over-60s"),
        pytest.param(math.nan, "UNDEFINED", id="nan"),
    ],
)
def test_ieee_duration_follows_opq(duration_ms: float, expected: str) -> None:
    assert ieee_duration(duration_ms) == expected


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"sag_hz": 60.5}, id="sag-above-nominal"),
        pytest.param({"swell_hz": 59.95}, id="swell-below-nominal"),
        pytest.param({"interruption_hz": 59.95}, id="interruption-above-sag"),
        pytest.param({"hysteresis_hz": -0.01}, id="negative-hysteresis"),
        pytest.param({"hysteresis_hz": 0.2}, id="hysteresis-past-nominal"),
        pytest.param({"min_duration_cycles": 0}, id="no-duration"),
        pytest.param({"swell_hz": math.inf}, id="infinite"),
    ],
)
def test_bad_limits_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"hz|cycles"):
        FrequencyLimits(**changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- properties

inside_band = st.floats(59.925, 60.075)
series_values = st.lists(st.one_of(st.floats(57.0, 63.0), st.just(NAN)), max_size=80)


@FEW
@given(values=series_values)
def test_runs_read_the_same_backwards(values: list[float]) -> None:
    forwards = runs_beyond(np.array(values, dtype=np.float64), 59.9, 59.92, above=False)
    backwards = runs_beyond(np.array(values[::-1], dtype=np.float64), 59.9, 59.92, above=False)
    n = len(values)
    assert sorted((n - end, n - first) for first, end in backwards) == forwards


@FEW
@given(values=series_values, drops=st.lists(st.floats(0.0, 1.0), min_size=80, max_size=80))
def test_lowering_the_frequency_never_shrinks_the_sags(values: list[float], drops: list[float]) -> None:
    series = np.array(values, dtype=np.float64)
    lowered = series - np.array(drops[: series.size])
    limits = FrequencyLimits(min_duration_cycles=3)

    def sag_cycles(found_in: npt.NDArray[np.float64]) -> set[int]:
        found = frequency_variations(found_in, limits)
        return {c for v in found if v.kind != "FREQUENCY_SWELL" for c in range(v.start_cycle, v.end_cycle)}

    assert sag_cycles(series) <= sag_cycles(lowered)


@FEW
@given(
    background=st.lists(inside_band, min_size=60, max_size=60),
    depth_hz=st.floats(0.11, 3.0),
    length=st.integers(1, 30),
    longer_by=st.integers(1, 20),
)
def test_a_longer_excursion_never_gives_fewer_or_shorter_variations(
    background: list[float], depth_hz: float, length: int, longer_by: int
) -> None:
    def with_excursion(cycles: int) -> npt.NDArray[np.float64]:
        values = np.array(background + background, dtype=np.float64)
        values[10 : 10 + cycles] = 60.0 - depth_hz
        return values

    short = frequency_variations(with_excursion(length))
    long = frequency_variations(with_excursion(length + longer_by))
    assert len(long) >= len(short)
    assert sum(v.duration_cycles for v in long) >= sum(v.duration_cycles for v in short)
    for variation in long:
        assert variation.duration_cycles >= FrequencyLimits().min_duration_cycles + 1
        assert variation.extreme_hz == pytest.approx(60.0 - depth_hz)
