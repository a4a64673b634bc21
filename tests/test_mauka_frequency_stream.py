"""Frequency variations from the measurement stream: the pure tracker, and the offline chain using it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pytest

from opq.app.offline import analyze_recording
from opq.box.scenario import scenario_from_dict
from opq.box.simulator import Simulator
from opq.mauka.frequency_stream import (
    FrequencyStreamTracker,
    StreamLimits,
    StreamVariation,
    same_variation,
)
from opq.mauka.plugins.frequency import FrequencyVariationPlugin
from opq.protocol import BoxMeasurement, MetricStats

T0 = 1_700_000_000_000
STEP_MS = 167  # six measurements a second, 10 cycles each


def measurement(
    t_ms: int, f_hz: float | tuple[float, float] | None, rms_v: float = 120.0, box_id: str = "1"
) -> BoxMeasurement:
    """A measurement at t_ms with this frequency [Hz] (or (min, max)); None: no `f` sent."""
    metrics = {"rms": MetricStats(rms_v - 0.5, rms_v + 0.5, rms_v)}
    if f_hz is not None:
        low, high = (f_hz, f_hz) if isinstance(f_hz, float | int) else f_hz
        metrics["f"] = MetricStats(low, high, (low + high) / 2)
    return BoxMeasurement(box_id, t_ms, metrics)


def stream(values: Iterable[float | tuple[float, float] | None], start_ms: int = T0) -> list[BoxMeasurement]:
    return [measurement(start_ms + i * STEP_MS, v) for i, v in enumerate(values)]


def play(
    measurements: Sequence[BoxMeasurement], tracker: FrequencyStreamTracker | None = None
) -> list[StreamVariation]:
    tracker = tracker or FrequencyStreamTracker()
    return [v for m in measurements for v in tracker.feed(m)] + tracker.close_all()


def test_a_step_inside_makais_band_is_one_variation_with_its_span_and_deviation() -> None:
    # 3 s nominal, 5 s at +0.2 Hz (30 measurements), 3 s nominal: Makai's ±0.3 Hz never triggers.
    values = [60.0] * 18 + [60.2] * 30 + [60.0] * 18
    [swell] = play(stream(values))
    assert swell.kind == "FREQUENCY_SWELL" and not swell.open_end
    assert (swell.start_ms, swell.end_ms) == (T0 + 17 * STEP_MS, T0 + 47 * STEP_MS)
    assert swell.duration_ms == 30 * STEP_MS and swell.measurements == 30
    assert swell.extreme_hz == pytest.approx(60.2) and swell.deviation_hz == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("values", "kinds"),
    [
        pytest.param([59.8] * 12, ["FREQUENCY_SAG"], id="sag"),
        pytest.param([57.5] * 12, ["FREQUENCY_INTERRUPTION"], id="interruption below 58 Hz"),
        pytest.param([59.5] * 6 + [57.9] * 2 + [59.5] * 6, ["FREQUENCY_SAG"], id="under 58 Hz too briefly"),
        pytest.param([60.15] * 2, [], id="two windows: as short as a 6-cycle +0.5 Hz step"),
        pytest.param([60.15] * 3, ["FREQUENCY_SWELL"], id="three windows"),
        pytest.param([60.09] * 30, [], id="beyond the release level only"),
        pytest.param([60.05, 60.036, 59.95, 59.964] * 20, [], id="NERC-normal wander"),
        pytest.param([(59.85, 60.15)] * 6, ["FREQUENCY_SWELL", "FREQUENCY_SAG"], id="min and max both out"),
    ],
)
def test_the_class_follows_the_limits_and_the_minimum_duration(values: list, kinds: list[str]) -> None:
    found = play(stream([60.0] * 6 + values + [60.0] * 6))
    assert sorted(v.kind for v in found) == sorted(kinds)


def test_a_frequency_hovering_at_the_limit_is_one_variation_not_many() -> None:
    # 20 s crossing 60.1 Hz back and forth, never back under the 60.08 Hz release level.
    hovering = [60.095, 60.105, 60.099, 60.101, 60.11, 60.085] * 20
    [swell] = play(stream([60.0] * 6 + hovering + [60.0] * 6))
    assert swell.measurements == len(hovering)
    # Going back under the release level in between is two variations.
    assert len(play(stream([60.0] * 6 + [60.12] * 6 + [60.07] + [60.12] * 6 + [60.0] * 6))) == 2


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(None, id="no f sent (interruption)"),
        pytest.param(math.nan, id="NaN"),
        pytest.param(math.inf, id="infinite"),
        pytest.param(0.0, id="zero"),
        pytest.param(600.0, id="ten times nominal"),
        pytest.param((60.3, 60.2), id="min above max"),
    ],
)
def test_a_missing_or_bad_frequency_neither_starts_ends_nor_splits_a_variation(bad: object) -> None:
    values = [60.0] * 6 + [59.8] * 6 + [bad] * 3 + [59.8] * 6 + [60.0] * 6
    [sag] = play(stream(values))  # type: ignore[arg-type]
    assert (sag.kind, sag.measurements) == ("FREQUENCY_SAG", 12)
    assert play(stream([60.0] * 6 + [bad] * 30 + [60.0] * 6)) == []  # type: ignore[list-item]


def test_measurements_during_a_voltage_dip_are_flagged_and_left_out() -> None:
    # A sag's edges bend the zero crossings: 0.8 pu measurements reading 60.2 Hz are not a swell.
    tracker = FrequencyStreamTracker()
    dip = [measurement(T0 + i * STEP_MS, 60.2, rms_v=96.0) for i in range(12)]
    assert play(stream([60.0] * 3) + dip, tracker) == []


def test_a_variation_of_a_box_gone_silent_is_closed_at_its_last_value_as_open_ended() -> None:
    tracker = FrequencyStreamTracker(StreamLimits(max_gap_ms=5_000))
    sag = stream([60.0] * 3 + [59.8] * 6)
    assert [v for m in sag for v in tracker.feed(m)] == []
    assert tracker.open_runs() == {"1": ["sag"]}
    last = sag[-1].timestamp_ms
    assert tracker.expire(last + 4_999) == []
    [closed] = tracker.expire(last + 5_000)
    assert (closed.end_ms, closed.open_end) == (last, True) and tracker.open_runs() == {}
    # A box whose clock runs on while sending no frequency closes the run by its own time too.
    tracker = FrequencyStreamTracker(StreamLimits(max_gap_ms=5_000))
    later = stream([60.0] * 3 + [59.8] * 6 + [None] * 40)
    [closed] = [v for m in later for v in tracker.feed(m)]
    assert (closed.end_ms, closed.open_end) == (sag[-1].timestamp_ms, True)


def test_a_variation_still_open_at_the_end_is_closed_not_lost_and_old_messages_are_ignored() -> None:
    tracker = FrequencyStreamTracker()
    for m in stream([60.0] * 3 + [60.2] * 6):
        assert tracker.feed(m) == []
    assert tracker.feed(measurement(T0, 60.0)) == [] and tracker.rejected == 1  # replayed
    [swell] = tracker.close_all()
    assert swell.open_end and swell.kind == "FREQUENCY_SWELL"
    assert tracker.close_all() == []


def test_boxes_are_followed_apart() -> None:
    tracker = FrequencyStreamTracker()
    found = []
    for i in range(20):
        t = T0 + i * STEP_MS
        found += tracker.feed(measurement(t, 60.2 if 3 <= i < 12 else 60.0, box_id="1"))
        found += tracker.feed(measurement(t, 59.8 if 5 <= i < 15 else 60.0, box_id="2"))
    assert [(v.box_id, v.kind) for v in found] == [("1", "FREQUENCY_SWELL"), ("2", "FREQUENCY_SAG")]


def test_one_variation_means_the_same_side_and_meeting_spans() -> None:
    assert same_variation("FREQUENCY_SAG", (0, 1000), "FREQUENCY_INTERRUPTION", (1100, 2000))
    assert not same_variation("FREQUENCY_SAG", (0, 1000), "FREQUENCY_SWELL", (500, 2000))
    assert not same_variation("FREQUENCY_SWELL", (0, 1000), "FREQUENCY_SWELL", (1300, 2000))


def _recording(*disturbances: dict) -> Simulator:
    supply = {"noise_v_rms": 0.4, "seed": 1, "duration_s": 11.0}
    scenario = scenario_from_dict({"supply": supply, "disturbances": list(disturbances)}, "test")
    return Simulator(scenario, start_ms=T0)


def test_the_offline_chain_reports_an_uncaptured_step_once_from_the_measurements() -> None:
    step = {"kind": "frequency_step", "at_s": 3.0, "duration_s": 5.0, "delta_hz": -0.2}
    analysis = analyze_recording(_recording(step), [FrequencyVariationPlugin()])
    assert analysis.captures == ()
    [sag] = analysis.findings
    assert sag.classifications == ("FREQUENCY_SAG",) and sag.metadata["plugin"] == "frequency_stream"
    assert abs(sag.start_ms - (T0 + 3_000)) <= STEP_MS and abs(sag.end_ms - (T0 + 8_000)) <= STEP_MS
    assert sag.ieee_duration == "TEMPORARY" and sag.deviation_from_nominal == pytest.approx(-0.2, abs=0.01)


def test_the_offline_chain_keeps_the_captures_finding_when_both_see_a_step() -> None:
    step = {"kind": "frequency_step", "at_s": 3.0, "duration_s": 2.0, "delta_hz": 0.5}
    analysis = analyze_recording(_recording(step), [FrequencyVariationPlugin()])
    assert len(analysis.captures) == 1 and analysis.stream_findings == ()
    [swell] = analysis.findings
    assert swell.classifications == ("FREQUENCY_SWELL",) and "plugin" not in swell.metadata
