"""The simulated supply: its samples through opq.domain, determinism, random access, outages, fast path."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.box.model_metrics import CycleMetrics, box_cycle_metrics, fleet_cycle_metrics
from opq.box.scenario import Sag, Scenario, Swell, load_scenario, scenario_from_dict
from opq.box.simulator import Simulator, Variation, Variations
from opq.box.source import SampleSource, SourceCycle
from opq.domain import (
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
    frequency_per_window,
    rms_per_cycle,
    thd_per_window,
    thd_ratio,
    transient_per_cycle,
)
from opq.domain.constants import ADC_FULL_SCALE_COUNTS

SCENARIOS_DIR = Path(__file__).parents[1] / "scenarios"
START_MS = 1_700_000_000_000
PEAK_V = 120.0 * math.sqrt(2)
FEW = settings(max_examples=30, deadline=None)
FloatArray = npt.NDArray[np.float64]


def make_scenario(supply: Mapping[str, Any] | None = None, *disturbances: Mapping[str, Any]) -> Scenario:
    return scenario_from_dict({"supply": dict(supply or {}), "disturbances": list(disturbances)}, "test")


@cache
def shipped(name: str) -> Scenario:
    return load_scenario(SCENARIOS_DIR / f"{name}.toml")


def seconds_v(simulator: Simulator, start_s: float, stop_s: float) -> FloatArray:
    first = round(start_s * SAMPLE_RATE_HZ)
    return simulator.samples_v(first, round(stop_s * SAMPLE_RATE_HZ) - first)


# --- voltage events --------------------------------------------------------------------------------


@pytest.mark.parametrize("start_phase_deg", [0.0, 90.0, 225.0], ids=lambda deg: f"{deg:g}deg")
def test_a_sag_shows_its_depth_duration_and_point_on_wave(start_phase_deg: float) -> None:
    sag = {
        "kind": "sag",
        "at_s": 1.0,
        "depth_pu": 0.5,
        "duration_s": 0.25,
        "start_phase_deg": start_phase_deg,
    }
    sagged = Simulator(make_scenario({}, sag), start_ms=START_MS)
    steady = Simulator(make_scenario(), start_ms=START_MS)
    v, reference = seconds_v(sagged, 0, 2), seconds_v(steady, 0, 2)

    changed = np.flatnonzero(np.abs(v - reference) > 1e-9)
    first, last = changed[0], changed[-1]
    assert 1.0 <= first / SAMPLE_RATE_HZ < 1.0 + 1 / 60
    assert (last - first + 1) / SAMPLE_RATE_HZ == pytest.approx(0.25, abs=1.5 / SAMPLE_RATE_HZ)
    # One sample is 1.8° of a 60 Hz cycle.
    assert reference[first] / PEAK_V == pytest.approx(math.sin(math.radians(start_phase_deg)), abs=0.032)
    assert v[first] == pytest.approx(0.5 * reference[first])

    rms = rms_per_cycle(v)
    whole = np.flatnonzero(rms < 0.5 * 120 + 1e-6)
    assert len(whole) in (14, 15)  # 15 cycles, one of them split across the edges
    np.testing.assert_allclose(rms[whole], 60.0, rtol=1e-9)
    cycle = np.arange(len(rms))
    assert np.array_equal(rms < 119.999, (cycle >= first // 200) & (cycle <= last // 200))


@pytest.mark.parametrize(
    "index",
    range(6),
    ids=["instant-sag", "momentary-sag", "temporary-sag", "swell", "momentary-swell", "clip"],
)
def test_each_event_of_the_sag_and_swell_library_reads_its_level_and_duration(index: int) -> None:
    scenario = shipped("sags-and-swells")
    event = scenario.disturbances[index]
    simulator = Simulator(scenario, start_ms=START_MS)
    assert isinstance(event, Sag | Swell)
    level = event.depth_pu if isinstance(event, Sag) else event.height_pu
    v = seconds_v(simulator, event.at_s - 0.5, event.at_s + event.duration_s + 0.5)
    rms_pu = rms_per_cycle(v) / 120.0
    held = rms_pu[np.abs(rms_pu - level) < 0.01]
    assert np.median(held) == pytest.approx(level, abs=0.002)
    outside = np.abs(rms_pu - 1.0) > 0.1  # IEEE 1159's 0.9 / 1.1 pu thresholds
    ramp_cycles = 2 * 60 * event.ramp_ms / 1000
    assert outside.sum() == pytest.approx(event.duration_s * 60, abs=2 + ramp_cycles)


def test_a_1_4_pu_swell_clips_the_adc_at_calibration_152_5() -> None:
    swell = {"kind": "swell", "at_s": 1.0, "height_pu": 1.4, "duration_s": 0.5}
    simulator = Simulator(
        make_scenario({"noise_v_rms": 0.3}, swell), start_ms=START_MS, calibration_constant=152.5
    )
    before = simulator.counts(0, 12_000)
    during = simulator.counts(round(1.1 * SAMPLE_RATE_HZ), 4_800)
    assert np.abs(before).max() < ADC_FULL_SCALE_COUNTS
    assert during.max() == ADC_FULL_SCALE_COUNTS and during.min() == -ADC_FULL_SCALE_COUNTS
    assert during.dtype == np.int16

    seen_v = rms_per_cycle(during / 152.5)
    supplied_v = rms_per_cycle(simulator.samples_v(round(1.1 * SAMPLE_RATE_HZ), 4_800))
    np.testing.assert_allclose(supplied_v, 1.4 * 120, rtol=0.002)
    assert np.all(seen_v < 0.98 * supplied_v)  # ±214.9 V of ±237.6 V
    expected = box_cycle_metrics(simulator, 66, 24).rms_v
    np.testing.assert_allclose(seen_v, expected, rtol=0.002)


# --- determinism and random access -------------------------------------------------------------------


def test_the_same_scenario_and_seeds_give_bit_identical_samples() -> None:
    one = Simulator(shipped("grid-disturbances"), box_seed=7, start_ms=START_MS)
    two = Simulator(shipped("grid-disturbances"), box_seed=7, start_ms=START_MS)
    assert np.array_equal(one.samples_v(600_000, 24_000), two.samples_v(600_000, 24_000))
    assert np.array_equal(one.counts(600_000, 24_000), one.counts(600_000, 24_000))


def test_another_box_seed_gives_other_noise_on_the_same_supply() -> None:
    scenario = make_scenario({"noise_v_rms": 0.5, "seed": 3})
    one, two = (
        Simulator(scenario, box_seed=seed, variation=Variation(), start_ms=START_MS) for seed in (1, 2)
    )
    difference = one.samples_v(0, 120_000) - two.samples_v(0, 120_000)
    assert np.std(difference) == pytest.approx(0.5 * math.sqrt(2), rel=0.02)
    quiet = make_scenario({"noise_v_rms": 0.0, "seed": 3})
    one, two = (Simulator(quiet, box_seed=seed, variation=Variation(), start_ms=START_MS) for seed in (1, 2))
    assert np.array_equal(one.samples_v(0, 12_000), two.samples_v(0, 12_000))


def test_the_noise_is_white_and_gaussian_with_the_scenario_rms() -> None:
    simulator = Simulator(make_scenario({"noise_v_rms": 0.5}), start_ms=START_MS)
    noise = simulator.samples_v(0, 240_000) - simulator.model.waveform_v(0, 1200).reshape(-1)
    assert np.mean(noise) == pytest.approx(0.0, abs=0.005)
    assert np.std(noise) == pytest.approx(0.5, rel=0.01)
    assert np.mean((noise / 0.5) ** 4) == pytest.approx(3.0, abs=0.05)  # kurtosis of a normal
    assert abs(np.corrcoef(noise[:-1], noise[1:])[0, 1]) < 0.01


@FEW
@given(
    moment_s=st.sampled_from([0.0, 10.0, 20.0, 30.0, 45.0, 55.0, 60.0, 75.0, 90.0, 98.0]),
    offset=st.integers(-3000, 3000),
    count=st.integers(0, 2500),
    margin=st.integers(1, 2000),
)
def test_any_range_equals_the_same_slice_of_a_wider_range(
    moment_s: float, offset: int, count: int, margin: int
) -> None:
    simulator = Simulator(shipped("grid-disturbances"), box_seed=5, start_ms=START_MS)
    start = max(round(moment_s * SAMPLE_RATE_HZ) + offset, margin)
    wider = simulator.samples_v(start - margin, count + 2 * margin)
    assert np.array_equal(simulator.samples_v(start, count), wider[margin : margin + count])


def test_samples_can_be_had_for_any_time_without_running_from_the_start() -> None:
    simulator = Simulator(shipped("island-grid"), box_seed=2, start_ms=START_MS)
    a_year = 365 * 86_400 * SAMPLE_RATE_HZ
    late = simulator.samples_v(a_year, 12_000)
    assert np.array_equal(late, simulator.samples_v(a_year - 200, 12_200)[200:])
    assert 59.8 < frequency_per_window(late, 60)[0] < 60.2
    assert rms_per_cycle(late).mean() == pytest.approx(120.0, abs=2.0)


# --- cycles: the SampleSource ----------------------------------------------------------------------


def test_cycles_are_the_counts_in_order_with_their_timestamps() -> None:
    simulator = Simulator(make_scenario({"duration_s": 1.0, "noise_v_rms": 0.3}), start_ms=START_MS)
    source: SampleSource = simulator
    cycles = list(source.cycles())
    assert len(cycles) == 60
    assert source.calibration_constant == 152.5
    for index, cycle in enumerate(cycles):
        assert isinstance(cycle, SourceCycle)
        assert cycle.timestamp_ms == START_MS + index * 50 // 3
        assert cycle.counts.dtype == np.int16 and cycle.counts.shape == (SAMPLES_PER_CYCLE,)
        assert np.array_equal(cycle.counts, simulator.counts(index * SAMPLES_PER_CYCLE, SAMPLES_PER_CYCLE))


def test_an_outage_is_a_gap_in_the_cycles_then_they_resume() -> None:
    outage = {"kind": "outage", "at_s": 1.0, "duration_s": 0.5}
    simulator = Simulator(make_scenario({"duration_s": 3.0}, outage), start_ms=START_MS)
    stamps = np.array([cycle.timestamp_ms for cycle in simulator.cycles()])
    steps = np.diff(stamps)
    assert set(steps[steps < 100]) == {16, 17}
    (gap,) = steps[steps >= 100]
    assert gap == pytest.approx(500 + 16.7, abs=17)
    assert not np.any((stamps + 17 > START_MS + 1000) & (stamps < START_MS + 1500))
    assert len(stamps) == 180 - simulator.silent_cycles(0, 180).sum() == 180 - 30
    assert np.isnan(box_cycle_metrics(simulator, 60, 30).rms_v).all()


def test_cycles_of_a_scenario_without_an_end_go_on() -> None:
    cycles: Iterator[SourceCycle] = Simulator(make_scenario(), start_ms=START_MS).cycles(
        start_cycle=3_600_000
    )
    first = next(cycles)
    assert first.timestamp_ms == START_MS + 60_000_000
    assert sum(1 for _, _ in zip(range(200), cycles, strict=False)) == 200


def test_time_helpers_agree_with_the_cycles() -> None:
    simulator = Simulator(make_scenario({"start_ms": START_MS}))
    assert simulator.start_ms == START_MS
    assert simulator.sample_index_at(START_MS + 1000) == 12_000
    assert simulator.cycle_index_at(START_MS + 1000) == 60
    assert simulator.cycle_index_at(START_MS + 1016) == 60
    assert simulator.timestamp_ms_of_cycle(61) == START_MS + 1016
    before = int(time.time() * 1000)
    assert before <= Simulator(make_scenario()).start_ms <= int(time.time() * 1000)


# --- what opq.domain reads from the samples ----------------------------------------------------------


def test_the_thd_scenario_reads_8_percent() -> None:
    v = seconds_v(Simulator(shipped("thd"), start_ms=START_MS), 0, 2)
    np.testing.assert_allclose(thd_per_window(v, 12), 0.08, atol=0.001)
    assert thd_ratio(v[:2400]) == pytest.approx(0.08, abs=0.001)


def test_a_frequency_step_shows_in_the_measured_frequency() -> None:
    step = {"kind": "frequency_step", "at_s": 1.0, "delta_hz": 0.2, "duration_s": 1.0}
    v = seconds_v(Simulator(make_scenario({"noise_v_rms": 0.3}, step), start_ms=START_MS), 0, 3)
    frequency = frequency_per_window(v, 10)  # six a second
    np.testing.assert_allclose(frequency[1:5], 60.0, atol=0.005)
    np.testing.assert_allclose(frequency[7:11], 60.2, atol=0.005)
    np.testing.assert_allclose(frequency[13:17], 60.0, atol=0.005)


def test_the_island_grid_wanders_within_its_bounds() -> None:
    simulator = Simulator(shipped("island-grid"), start_ms=START_MS)
    deviation = simulator.model.frequency_hz(0, 60 * 600) - 60.0  # ten minutes, from the model
    assert np.abs(deviation).max() <= 0.15
    assert np.abs(deviation).max() > 0.1  # it leaves IEEE 1159's ±0.1 Hz band now and then


def test_the_other_leg_of_a_split_phase_is_the_waveform_inverted() -> None:
    scenario = make_scenario({"harmonics": [{"order": 3, "percent": 4.0}, {"order": 5, "percent": 3.0}]})
    leg_a = Simulator(scenario, variation=Variation(), start_ms=START_MS)
    leg_b = Simulator(scenario, variation=Variation(phase_offset_rad=math.pi), start_ms=START_MS)
    np.testing.assert_allclose(leg_b.samples_v(0, 2400), -leg_a.samples_v(0, 2400), atol=1e-9)


# --- the fast path against the full signal -----------------------------------------------------------


def edge_cycles(scenario: Scenario, count: int, margin_cycles: int) -> npt.NDArray[np.bool_]:
    """Cycles within `margin_cycles` of where a disturbance starts or ends (start phases included)."""
    near = np.zeros(count, bool)
    for event in scenario.disturbances:
        end_s = event.at_s + getattr(event, "duration_s", 0.03)
        for moment_s in (event.at_s, end_s):
            cycle = int(moment_s * 60)
            near[max(cycle - margin_cycles, 0) : cycle + margin_cycles + 2] = True
    return near


def full_signal_metrics(simulator: Simulator, count: int) -> CycleMetrics:
    """opq.domain's metrics of the box's ADC counts, one value per cycle (windows repeated)."""
    seen_v = simulator.counts(0, count * SAMPLES_PER_CYCLE) / simulator.calibration_constant
    frequency_hz = np.repeat(frequency_per_window(seen_v, 10), 10)
    return CycleMetrics(
        rms_v=rms_per_cycle(seen_v, frequency_hz),  # over one period, as a box measures it
        frequency_hz=frequency_hz,
        thd_ratio=np.repeat(thd_per_window(seen_v, 12), 12),
        transient_v=transient_per_cycle(seen_v),
    )


@pytest.mark.parametrize(
    ("name", "seconds"),
    [("clean", 20), ("island-grid", 30), ("thd", 10), ("sags-and-swells", 60), ("grid-disturbances", 120)],
)
def test_the_fast_path_agrees_with_opq_domain_on_the_samples(name: str, seconds: int) -> None:
    scenario = shipped(name)
    simulator = Simulator(scenario, box_seed=11, start_ms=START_MS)
    count = 60 * seconds
    full = full_signal_metrics(simulator, count)
    fast = box_cycle_metrics(simulator, 0, count)
    heard = ~simulator.silent_cycles(0, count)
    heard[0] = heard[-1] = False  # the filters need a cycle of context
    steady = heard & ~edge_cycles(scenario, count, margin_cycles=12)
    strong = steady & (fast.rms_v > 60.0)  # not in an interruption, where noise dominates

    np.testing.assert_allclose(full.rms_v[strong], fast.rms_v[strong], rtol=0.002)
    window_mean_hz = np.repeat(fast.frequency_hz.reshape(-1, 10).mean(axis=-1), 10)
    np.testing.assert_allclose(full.frequency_hz[strong], window_mean_hz[strong], atol=0.010)
    window_mean_thd = np.repeat(fast.thd_ratio.reshape(-1, 12).mean(axis=-1), 12)
    np.testing.assert_allclose(full.thd_ratio[strong], window_mean_thd[strong], atol=0.002)
    # Where noise sets it, the transient metric is the largest of 200 samples: a statistic whose mean
    # the fast path gives; single cycles spread by ±13 % (one σ), with a long tail upwards.
    ratio = full.transient_v[steady] / fast.transient_v[steady]
    assert np.mean(ratio) == pytest.approx(1.0, abs=0.03)
    assert ratio.min() > 0.5
    assert ratio.max() < 2.5


def test_the_fast_path_sees_transients_and_sudden_edges_within_a_few_percent() -> None:
    sag = {"kind": "sag", "at_s": 1.5, "depth_pu": 0.3, "duration_s": 0.1, "start_phase_deg": 80.0}
    sag_simulator = Simulator(make_scenario({"noise_v_rms": 0.3}, sag), box_seed=11, start_ms=START_MS)
    grid_simulator = Simulator(shipped("grid-disturbances"), box_seed=11, start_ms=START_MS)
    for simulator, first_cycle in [(sag_simulator, 30), (grid_simulator, 54 * 60), (grid_simulator, 59 * 60)]:
        seen_v = simulator.counts(first_cycle * SAMPLES_PER_CYCLE, 120 * SAMPLES_PER_CYCLE) / 152.5
        full = transient_per_cycle(seen_v)[1:-1]
        fast = box_cycle_metrics(simulator, first_cycle + 1, 118).transient_v
        loud = fast > 10.0
        assert loud.any()
        np.testing.assert_allclose(full[loud], fast[loud], rtol=0.05)


def test_the_fleet_function_is_the_single_box_fast_path_for_each_box() -> None:
    scenario = shipped("grid-disturbances")
    seeds: Sequence[int] = [1, 2, 3, 4]
    variations = Variations.for_boxes(seeds)
    simulators = [Simulator(scenario, box_seed=seed, start_ms=START_MS) for seed in seeds]
    fleet = fleet_cycle_metrics(simulators[0].model, variations, 1170, 120)
    for row, simulator in enumerate(simulators):
        single = box_cycle_metrics(simulator, 1170, 120)
        for fleet_values, single_values in zip(fleet, single, strict=True):
            np.testing.assert_allclose(fleet_values[row], single_values, rtol=1e-12)
    assert fleet.rms_v.shape == (4, 120)


def test_the_fast_path_marks_what_a_box_cannot_measure() -> None:
    scenario = shipped("grid-disturbances")
    fast = box_cycle_metrics(Simulator(scenario, start_ms=START_MS), 20 * 60, 120)
    interrupted = slice(5, 55)  # 20.08 s to 20.9 s: 0.02 pu
    assert np.isnan(fast.frequency_hz[interrupted]).all() and np.isnan(fast.thd_ratio[interrupted]).all()
    np.testing.assert_allclose(fast.rms_v[interrupted], math.hypot(2.4, 0.4), rtol=0.05)
    assert not np.isnan(fast.frequency_hz[70:]).any()


# --- per-box variations ------------------------------------------------------------------------------


def test_box_seed_zero_is_the_reference_box() -> None:
    assert Variation.for_box(0) == Variation()
    assert Simulator(make_scenario(), start_ms=START_MS).variation == Variation()


@FEW
@given(box_seed=st.integers(1, 2**40))
def test_a_box_variation_is_drawn_from_its_seed_within_its_ranges(box_seed: int) -> None:
    variation = Variation.for_box(box_seed)
    assert variation == Variation.for_box(box_seed)
    assert abs(variation.voltage_offset_v) <= 2.5
    leg = round(variation.phase_offset_rad / math.pi)
    assert leg in (0, 1) and abs(variation.phase_offset_rad - leg * math.pi) < math.radians(10)
    assert 0.5 <= variation.noise_scale <= 2.0
