"""Many boxes measured at once give each box's own `MeasurementBuilder` measurements."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from opq.box.fleet_metrics import SignalMeter
from opq.box.measurement_cohort import MeasurementCohort
from opq.box.measuring import MeasurementBuilder
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.scenario import scenario_from_dict
from opq.box.simulator import Simulator
from opq.domain.fleet_span_metrics import fleet_span_metrics, group_summaries, metric_summaries
from opq.domain.span_metrics import span_metrics
from opq.protocol import BoxMeasurement

T0 = 1_700_000_000_000
CALIBRATIONS = [152.5, 150.0, 155.0, 152.5, 149.0, 152.5, 153.0]
METRICS = ("rms", "f", "thd", "trans")


def _waveforms_v(n_cycles: int) -> npt.NDArray[np.float64]:
    """(boxes, samples) [V]: a clean box, a sag, off-nominal, harmonics, a transient, an interruption."""
    t_s = np.arange(n_cycles * 200) / 12_000
    cycle = np.arange(n_cycles * 200) // 200
    rng = np.random.default_rng(7)

    def sine(f_hz: float, *harmonics: tuple[int, float]) -> npt.NDArray[np.float64]:
        wave = np.sin(2 * np.pi * f_hz * t_s)
        for order, share in harmonics:
            wave += share * np.sin(2 * np.pi * order * f_hz * t_s + 0.3 * order)
        return 120 * math.sqrt(2) * wave

    sag = sine(60.0) * np.where((cycle >= 23) & (cycle < 41), 0.7, 1.0)
    spike = sine(60.0) + np.where(np.abs(t_s - 33.4 / 60) < 0.0002, 150.0, 0.0)
    interrupted = sine(59.97) * np.where((cycle >= 30) & (cycle < 52), 0.0, 1.0)
    boxes = [
        sine(60.0),
        sag,
        sine(59.3),
        sine(60.02, (3, 0.05), (5, 0.04), (11, 0.01)),
        spike,
        interrupted,
        sine(61.2, (3, 0.07)),
    ]
    return np.array(boxes) + rng.normal(0, 0.2, (len(boxes), len(t_s)))


def _counts(n_cycles: int) -> npt.NDArray[np.int16]:
    volts = _waveforms_v(n_cycles) * np.array(CALIBRATIONS)[:, np.newaxis]
    return np.rint(volts).astype(np.int16).reshape(len(CALIBRATIONS), n_cycles, 200)


def _stamps(n_cycles: int, gap_after: int | None = None) -> list[int]:
    # A gap of 5 cycles after `gap_after` (the boxes all lost the same cycles).
    return [
        T0 + round((i + (5 if gap_after is not None and i >= gap_after else 0)) * CYCLE_DURATION_MS)
        for i in range(n_cycles)
    ]


def _assert_same(
    box: int, expected: BoxMeasurement, timestamp_ms: int, stats: npt.NDArray[np.float64]
) -> None:
    assert timestamp_ms == expected.timestamp_ms
    present = {name for m, name in enumerate(METRICS) if not math.isnan(stats[m, 2])}
    assert present == set(expected.metrics), f"box {box} at {timestamp_ms}"
    for m, name in enumerate(METRICS):
        if name not in expected.metrics:
            continue
        want = expected.metrics[name]
        for s, value in enumerate((want.min, want.max, want.average)):
            assert stats[m, s] == pytest.approx(value, rel=1e-9, abs=1e-9), (
                f"box {box} {name} at {timestamp_ms}"
            )


@pytest.mark.parametrize(
    ("rate", "block", "gap_after"),
    [(10, 10, None), (10, 60, None), (6, 7, None), (60, 25, None), (10, 10, 44), (1, 10, None)],
    ids=["rate10-tick10", "rate10-tick60", "rate6-tick7", "rate60-tick25", "gap", "rate1"],
)
def test_a_cohort_gives_each_box_what_its_own_builder_gives(
    rate: int, block: int, gap_after: int | None
) -> None:
    n_cycles = 150
    counts = _counts(n_cycles)
    stamps = _stamps(n_cycles, gap_after)
    cohort = MeasurementCohort(CALIBRATIONS, rate)
    builders = [MeasurementBuilder(str(box), c, rate) for box, c in enumerate(CALIBRATIONS)]
    batched, alone = [], [[] for _ in builders]
    for first in range(0, n_cycles, block):
        batched += cohort.add_cycles(stamps[first : first + block], counts[:, first : first + block])
        for box, builder in enumerate(builders):
            alone[box] += builder.add_cycles(
                stamps[first : first + block], counts[box, first : first + block]
            )
    flushed = cohort.flush()
    batched += [flushed] if flushed is not None else []
    for box, builder in enumerate(builders):
        last = builder.flush()
        alone[box] += [last] if last is not None else []
    assert len(batched) == len(alone[0]) >= n_cycles // rate
    for box, measurements in enumerate(alone):
        for done, expected in zip(batched, measurements, strict=True):
            _assert_same(box, expected, done.timestamp_ms, done.stats[box])
    # The disturbances show where they should: a metric of every kind was tested, not just a clean sine.
    sag_rms = [m.metrics["rms"].min for m in alone[1]]
    assert min(sag_rms) < 0.75 * 120 < max(sag_rms)
    assert min(m.metrics["rms"].min for m in alone[5]) < 1.0  # the interruption
    assert rate > 20 or any("f" not in m.metrics for m in alone[5])
    assert max(m.metrics["trans"].max for m in alone[4]) > 50


def test_the_batched_metrics_of_each_row_are_those_of_the_row_alone() -> None:
    samples_v = _waveforms_v(16)
    frequency_windows, thd_windows = [(1, 11), (5, 15)], [(2, 14), (3, 15)]
    batched = fleet_span_metrics(samples_v, frequency_windows, thd_windows, measured_cycles=(1, 15))
    for row, samples in enumerate(samples_v):
        alone = span_metrics(samples, frequency_windows, thd_windows)
        np.testing.assert_allclose(batched.frequency_hz[row], alone.frequency_hz, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(batched.thd_ratio[row], alone.thd_ratio, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(batched.rms_v[row, 1:15], alone.rms_v[1:15], rtol=1e-12)
        np.testing.assert_allclose(batched.transient_v[row, 1:15], alone.transient_v[1:15], rtol=1e-12)
        assert np.isnan(batched.rms_v[row, [0, 15]]).all()  # context cycles are not computed


def test_group_summaries_ignore_nan_and_give_nan_for_empty_groups() -> None:
    values = np.array([[1.0, np.nan, 3.0, 5.0, np.nan, 7.0], [np.nan, np.nan, 2.0, 4.0, 6.0, 8.0]])
    stats = group_summaries(values, [0, 2, 2, 4], 5)  # groups [0, 2), [2, 2), [2, 4), [4, 5)
    np.testing.assert_array_equal(stats[0, 0], [1.0, 1.0, 1.0])
    assert np.isnan(stats[:, 1]).all()  # an empty group
    np.testing.assert_array_equal(stats[1, 2], [2.0, 4.0, 3.0])
    assert np.isnan(stats[0, 3]).all()  # only NaN
    np.testing.assert_array_equal(stats[1, 3], [6.0, 6.0, 6.0])
    assert np.isnan(stats[1, 0]).all()
    # One group (a tick's one measurement) takes a shorter path to the same answer.
    one = group_summaries(values, [1], 5)
    np.testing.assert_array_equal(one[:, 0], [[3.0, 5.0, 4.0], [2.0, 6.0, 4.0]])
    assert np.isnan(group_summaries(values[:, :2], [0], 2)[1]).all()  # only NaN


def test_metric_summaries_are_each_metrics_group_summaries_per_span() -> None:
    rng = np.random.default_rng(5)
    rms = rng.normal(120, 1, (3, 14))
    rms[1, 4:] = np.nan
    frequency, thd = rng.normal(60, 0.01, (3, 2)), np.full((3, 2), np.nan)
    thd[0] = 0.02
    values = [rms, frequency, thd, rng.random((3, 14))]
    for starts, stops in [
        ([[3], [1], [1], [3]], [13, 2, 2, 13]),  # one measurement: the padded path
        ([[1, 3, 8], [0, 1, 2], [0, 1, 1], [1, 3, 8]], [13, 2, 2, 13]),  # three, one of them without THD
    ]:
        stats = metric_summaries(values, starts, stops)
        assert stats.shape == (len(starts[0]), 3, 4, 3)
        for m, metric in enumerate(values):
            expected = group_summaries(metric, starts[m], stops[m]).transpose(1, 0, 2)
            np.testing.assert_allclose(stats[:, :, m], expected, rtol=1e-15, equal_nan=True)
    assert np.isnan(metric_summaries(values, [[3], [1], [1], [3]], [13, 2, 2, 13])[0, 1:, 2]).all()


def test_the_signal_meter_splits_and_rejoins_boxes_through_rate_changes_and_an_outage() -> None:
    supply = {"noise_v_rms": 0.2, "seed": 3, "harmonics": [{"order": 3, "percent": 2.0}]}
    steady = scenario_from_dict({"supply": supply})
    outage = scenario_from_dict(
        {"supply": supply, "disturbances": [{"kind": "outage", "at_s": 1.0, "duration_s": 0.4}]}
    )
    scenarios = [steady, outage, steady, outage]
    simulators = [Simulator(s, box_seed=100 + box, start_ms=T0) for box, s in enumerate(scenarios)]
    ids = [str(100 + box) for box in range(len(simulators))]
    meter = SignalMeter(simulators, ids, 10)
    builders = [
        MeasurementBuilder(i, s.calibration_constant, 10) for i, s in zip(ids, simulators, strict=True)
    ]
    got: dict[tuple[int, int], BoxMeasurement] = {}
    want: dict[tuple[int, int], BoxMeasurement] = {}
    for first in range(0, 180, 10):
        if first == 40:
            assert meter.rate_control(2).set_rate(6) == 10
            builders[2].set_rate(6)
        if first == 120:
            meter.rate_control(2).set_rate(10)
            builders[2].set_rate(10)
        got.update({(box, m.timestamp_ms): m for box, m in meter.measure_boxes(first, 10)})
        for box, (simulator, builder) in enumerate(zip(simulators, builders, strict=True)):
            heard = np.flatnonzero(~simulator.silent_cycles(first, 10))
            counts = simulator.counts(first * 200, 2000).reshape(10, 200)[heard]
            stamps = [simulator.timestamp_ms_of_cycle(first + int(row)) for row in heard]
            want.update({(box, m.timestamp_ms): m for m in builder.add_cycles(stamps, counts)})
    assert set(got) == set(want)
    for (box, _), expected in want.items():
        measurement = got[(box, expected.timestamp_ms)]
        stats = np.full((4, 3), np.nan)
        for m, name in enumerate(METRICS):
            if name in measurement.metrics:
                value = measurement.metrics[name]
                stats[m] = (value.min, value.max, value.average)
        _assert_same(box, expected, measurement.timestamp_ms, stats)
    # The outage's boxes measure in step again; box 2 came back to rate 10 at another phase.
    assert sorted(meter.cohorts()) == [[0], [1, 3], [2]]


def test_uneven_ticks_through_a_gap_and_a_rate_change_give_each_box_its_builders_values() -> None:
    # Ticks of uneven lengths (the history moves and grows between them), a gap of lost cycles, a
    # rate change and a tick long enough to end a measurement twice: every box must still get its
    # own builder's measurements.
    n_cycles = 170
    counts = _counts(n_cycles)
    stamps = _stamps(n_cycles, gap_after=57)
    cohort = MeasurementCohort(CALIBRATIONS, 10)
    builders = [MeasurementBuilder(str(box), c, 10) for box, c in enumerate(CALIBRATIONS)]
    batched, alone = [], [[] for _ in builders]
    ticks = [10, 7, 13, 3, 10, 10, 4, 25, 10, 1, 10, 10, 40, 17]
    assert sum(ticks) == n_cycles
    first = 0
    for tick, cycles in enumerate(ticks):
        if tick == 8:  # mid-stream, with a measurement in progress
            assert cohort.set_rate(6) == 10
            for builder in builders:
                builder.set_rate(6)
        block = slice(first, first + cycles)
        batched += cohort.add_cycles(stamps[block], counts[:, block])
        for box, builder in enumerate(builders):
            alone[box] += builder.add_cycles(stamps[block], counts[box, block])
        first += cycles
    assert cohort._segment_start_ms == stamps[57]  # the gap restarted the history
    assert len(batched) == len(alone[0]) > 20
    for box, measurements in enumerate(alone):
        for done, expected in zip(batched, measurements, strict=True):
            _assert_same(box, expected, done.timestamp_ms, done.stats[box])
    # Both rates show: 10-cycle measurements before the change, 6-cycle ones after it.
    steps = np.diff([done.timestamp_ms for done in batched])
    assert {167, 100} <= set(steps.tolist())
