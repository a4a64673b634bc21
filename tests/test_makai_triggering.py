"""Triggering limits and reasons, and the capture planner: windows, groups, neighbours, pieces, silence."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opq.makai.capture import CapturePlanner, CaptureRequest
from opq.makai.triggering import Limits, abnormal_metrics, abnormal_rows, limits_of
from opq.protocol.columns import MeasurementColumns
from opq.protocol.messages import BoxMeasurement, MetricStats
from opq.store.models import TriggerThresholds

PERIOD_MS = 167
DEFAULT_LIMITS = limits_of(TriggerThresholds())
NOMINAL = {
    "rms": MetricStats(119.5, 120.5, 120.0),
    "f": MetricStats(59.98, 60.02, 60.0),
    "thd": MetricStats(0.010, 0.020, 0.015),
    "trans": MetricStats(0.5, 2.0, 1.0),
}


def measurement(
    box_id: str, timestamp_ms: int, **changes: tuple[float, float, float] | None
) -> BoxMeasurement:
    """A nominal 120 V / 60 Hz measurement with some metrics replaced by (min, max, average) or removed."""
    metrics = dict(NOMINAL)
    for name, stats in changes.items():
        if stats is None:
            del metrics[name]
        else:
            metrics[name] = MetricStats(*stats)
    return BoxMeasurement(box_id, timestamp_ms, metrics)


def sag(box_id: str, timestamp_ms: int) -> BoxMeasurement:
    return measurement(box_id, timestamp_ms, rms=(70.2, 120.1, 95.0))


def planner(
    neighbours: dict[str, tuple[str, ...]] | None = None,
    limits_for: Callable[[str], Limits] = lambda box_id: DEFAULT_LIMITS,
    **overrides: int,
) -> CapturePlanner:
    kwargs = {"pre_ms": 500, "post_ms": 500, "max_piece_ms": 10_000, "max_boxes": 64} | overrides
    hoods = neighbours or {}
    return CapturePlanner(limits_for=limits_for, neighbours_of=lambda box_id: hoods.get(box_id, ()), **kwargs)


def feed(p: CapturePlanner, measurements: Iterable[BoxMeasurement]) -> list[tuple[int, CaptureRequest]]:
    """Observe each measurement; the requests returned, with the timestamp of the measurement that did."""
    return [(m.timestamp_ms, r) for m in measurements for r in p.observe(m)]


# --- limits and reasons -------------------------------------------------------------------------------


def test_limits_of_the_default_thresholds() -> None:
    assert astuple(DEFAULT_LIMITS) == pytest.approx((114.0, 126.0, 59.7, 60.3, 0.05, 6.0))


def test_limits_follow_each_threshold() -> None:
    limits = limits_of(
        TriggerThresholds(
            ref_f=50.0,
            ref_v=230.0,
            threshold_percent_f_low=1.0,
            threshold_percent_f_high=2.0,
            threshold_percent_v_low=10.0,
            threshold_percent_v_high=6.0,
            threshold_percent_thd_high=8.0,
            threshold_percent_transient_high=3.0,
        )
    )
    assert astuple(limits) == pytest.approx((207.0, 243.8, 49.5, 51.0, 0.08, 6.9))


@pytest.mark.parametrize(
    ("changes", "reasons"),
    [
        ({}, []),
        ({"rms": (70.2, 120.0, 100.0)}, ["rms min 70.2 V < 114.0 V"]),
        ({"rms": (119.0, 130.04, 121.0)}, ["rms max 130.0 V > 126.0 V"]),
        ({"rms": (100.0, 130.0, 115.0)}, ["rms min 100.0 V < 114.0 V, max 130.0 V > 126.0 V"]),
        ({"rms": (114.0, 126.0, 120.0)}, []),
        ({"f": (59.5, 60.0, 59.8)}, ["f min 59.50 Hz < 59.70 Hz"]),
        ({"f": (60.0, 60.4, 60.2)}, ["f max 60.40 Hz > 60.30 Hz"]),
        ({"thd": (0.01, 0.062, 0.03)}, ["thd max 6.2 % > 5.0 %"]),
        ({"thd": (0.0, 0.05, 0.03)}, []),
        ({"trans": (0.5, 12.0, 3.0)}, ["trans max 12.0 V > 6.0 V"]),
        ({"trans": (0.5, 6.0, 3.0)}, []),
        ({"f": None, "thd": None, "trans": None}, []),
        ({"rms": (3.0, 40.0, 10.0), "f": None, "thd": None}, ["rms min 3.0 V < 114.0 V"]),
        (
            {"rms": (math.nan, math.nan, math.nan), "f": (math.nan, 60.5, math.nan)},
            ["f max 60.50 Hz > 60.30 Hz"],
        ),
        (
            {"rms": (100.0, 120.0, 110.0), "thd": (0.0, 0.09, 0.05)},
            ["rms min 100.0 V < 114.0 V", "thd max 9.0 % > 5.0 %"],
        ),
    ],
    ids=[
        "nominal",
        "sag",
        "swell",
        "both-ends",
        "on-the-limits",
        "f-low",
        "f-high",
        "thd",
        "thd-on-limit",
        "transient",
        "transient-on-limit",
        "absent-metrics",
        "interruption-without-f-thd",
        "nan-is-not-abnormal",
        "two-metrics",
    ],
)
def test_abnormal_metrics_give_one_reason_per_metric(
    changes: dict[str, tuple[float, float, float] | None], reasons: list[str]
) -> None:
    assert abnormal_metrics(measurement("1000", 1, **changes), DEFAULT_LIMITS) == reasons


# --- the planner --------------------------------------------------------------------------------------


def test_a_single_box_sag_gives_one_request_on_its_first_nominal_measurement() -> None:
    p = planner()
    got = feed(
        p,
        [
            measurement("1000", 10_000),
            measurement("1000", 10_167),
            sag("1000", 10_334),
            sag("1000", 10_501),
            measurement("1000", 10_668),
            measurement("1000", 10_835),
        ],
    )
    assert got == [
        (
            10_668,
            CaptureRequest(
                box_ids=("1000",),
                triggered_by=("1000",),
                start_ms=10_167 - 500,
                end_ms=10_668 + 500,
                reason="1000: rms min 70.2 V < 114.0 V",
                piece=0,
            ),
        )
    ]
    assert (p.measurements, p.abnormal_measurements, p.triggers, p.requests) == (6, 2, 1, 1)


@pytest.mark.parametrize("previous_ms", [None, 10_000 - 2_001], ids=["none", "older-than-silence"])
def test_without_a_recent_previous_measurement_the_window_starts_one_span_earlier(
    previous_ms: int | None,
) -> None:
    p = planner()
    if previous_ms is not None:
        p.observe(measurement("1000", previous_ms))
    [(_, request)] = feed(p, [sag("1000", 10_000), measurement("1000", 10_167)])
    assert request.start_ms == 10_000 - PERIOD_MS - 500


@pytest.mark.parametrize(
    "changes",
    [{"thd": (0.01, 0.08, 0.04)}, {"trans": (0.0, 9.5, 2.0)}, {"f": (59.0, 60.0, 59.5)}],
    ids=["thd", "transient", "frequency"],
)
def test_every_metric_can_trigger_a_capture(changes: dict[str, tuple[float, float, float]]) -> None:
    p = planner()
    assert feed(p, [measurement("1000", 1_000), measurement("1000", 1_167, **changes)]) == []
    [(_, request)] = feed(p, [measurement("1000", 1_334)])
    assert (request.start_ms, request.end_ms) == (500, 1_834)


def test_boxes_abnormal_together_give_one_request_triggering_boxes_first() -> None:
    p = planner(neighbours={"1000": ("1002", "1001"), "1001": ("1000", "1003")})
    got = feed(
        p,
        [
            measurement("1001", 990),
            measurement("1000", 1_000),
            sag("1001", 1_157),
            sag("1000", 1_167),
            measurement("1001", 1_324),  # 1001 is back, 1000 is not: the group stays open
            sag("1000", 1_334),
            measurement("1000", 1_501),
        ],
    )
    assert [(ts, r.box_ids, r.triggered_by, r.start_ms, r.end_ms) for ts, r in got] == [
        (1_501, ("1001", "1000", "1003", "1002"), ("1001", "1000"), 990 - 500, 1_501 + 500)
    ]
    assert got[0][1].reason == "1001: rms min 70.2 V < 114.0 V; 1000: rms min 70.2 V < 114.0 V"


def test_a_box_back_to_nominal_before_another_triggers_gives_two_requests() -> None:
    got = feed(
        planner(),
        [sag("1000", 1_000), measurement("1000", 1_167), sag("1001", 1_200), measurement("1001", 1_367)],
    )
    assert [(ts, r.triggered_by) for ts, r in got] == [(1_167, ("1000",)), (1_367, ("1001",))]


@pytest.mark.parametrize(
    ("max_boxes", "box_ids"),
    [
        (64, ("1000", "1001", "2000", "2001", "2002")),
        (3, ("1000", "1001", "2000")),
        (1, ("1000", "1001")),  # the triggering boxes are never dropped
    ],
    ids=["all", "capped", "cap-below-triggering"],
)
def test_neighbours_are_added_deduplicated_and_capped(max_boxes: int, box_ids: tuple[str, ...]) -> None:
    hoods = {"1000": ("2000", "1001", "2001"), "1001": ("2001", "1000", "2002")}
    p = planner(neighbours=hoods, max_boxes=max_boxes)
    got = feed(
        p, [sag("1000", 1_000), sag("1001", 1_010), measurement("1000", 1_167), measurement("1001", 1_177)]
    )
    assert [(r.box_ids, r.triggered_by) for _, r in got] == [(box_ids, ("1000", "1001"))]


def test_a_long_anomaly_is_captured_in_pieces_during_it_that_tile_the_window() -> None:
    p = planner(max_piece_ms=10_000)
    last_nominal_ms, back_ms = 1_000, 1_000 + 211 * PERIOD_MS  # abnormal for 35 s
    stream = [measurement("1000", last_nominal_ms)]
    stream += [sag("1000", ts) for ts in range(last_nominal_ms + PERIOD_MS, back_ms, PERIOD_MS)]
    stream += [measurement("1000", back_ms), measurement("1000", back_ms + PERIOD_MS)]
    got = feed(p, stream)
    start_ms = last_nominal_ms - 500
    assert [(r.piece, r.start_ms, r.end_ms) for _, r in got] == [
        (0, start_ms, start_ms + 10_000),
        (1, start_ms + 10_000, start_ms + 20_000),
        (2, start_ms + 20_000, start_ms + 30_000),
        (3, start_ms + 30_000, back_ms + 500),
    ]
    # Each piece goes out with the first abnormal measurement past it, long before the anomaly ends.
    assert [ts for ts, _ in got] == [
        next(m.timestamp_ms for m in stream if m.timestamp_ms > r.end_ms) for _, r in got[:3]
    ] + [back_ms]
    assert all(r.triggered_by == ("1000",) for _, r in got)


def test_a_piece_asks_only_the_boxes_abnormal_during_it() -> None:
    p = planner(max_piece_ms=1_000, pre_ms=0, post_ms=0)
    got = feed(
        p,
        [
            sag("1000", 1_000),  # the window starts at 833
            sag("1001", 1_100),
            measurement("1001", 1_200),
            measurement("1002", 1_700),
            sag("1000", 1_900),  # cuts [833, 1833)
            sag("1002", 2_000),  # its window would start at 1700: clamped to the piece
            sag("1000", 2_900),  # cuts [1833, 2833)
            measurement("1002", 2_950),
            measurement("1000", 3_000),
        ],
    )
    assert [(r.piece, r.triggered_by, r.start_ms, r.end_ms) for _, r in got] == [
        (0, ("1000", "1001"), 833, 1_833),
        (1, ("1000", "1002"), 1_833, 2_833),
        (2, ("1000", "1002"), 2_833, 3_000),
    ]


def test_a_box_silent_mid_anomaly_is_closed_by_tick_at_its_last_measurement() -> None:
    p = planner(silence_ms=2_000)
    assert feed(p, [measurement("1000", 1_000), sag("1000", 1_167), sag("1000", 1_334)]) == []
    assert p.tick(1_334 + 1_999) == []
    [request] = p.tick(1_334 + 2_000)
    assert (request.start_ms, request.end_ms) == (1_000 - 500, 1_334 + 500)
    assert request.reason == "1000: rms min 70.2 V < 114.0 V; silent: 1000"
    assert p.silent_boxes == 1 and p.abnormal_boxes == ()
    assert p.tick(100_000) == []


def test_a_silent_box_waits_for_the_others_of_its_group() -> None:
    p = planner(silence_ms=2_000)
    feed(p, [sag("1000", 1_000), sag("1001", 1_100)])
    assert p.tick(3_000) == []
    assert p.abnormal_boxes == ("1001",)
    [(_, request)] = feed(p, [measurement("1001", 3_100)])
    assert request.triggered_by == ("1000", "1001") and request.end_ms == 3_600


@pytest.mark.parametrize("stale_ms", [1_167, 1_334], ids=["older", "same-timestamp"])
def test_a_measurement_not_after_its_box_previous_one_is_ignored(stale_ms: int) -> None:
    p = planner()
    assert feed(p, [measurement("1000", 1_000), sag("1000", 1_334), measurement("1000", stale_ms)]) == []
    assert p.out_of_order == 1 and p.abnormal_boxes == ("1000",)
    [(_, request)] = feed(p, [measurement("1000", 1_501)])
    assert request.end_ms == 1_501 + 500


def test_changed_thresholds_apply_from_the_next_measurement() -> None:
    thresholds = {"1000": TriggerThresholds()}
    calls: list[str] = []

    def limits_for(box_id: str) -> Limits:
        calls.append(box_id)
        return limits_of(thresholds[box_id])

    p = planner(limits_for=limits_for)
    assert feed(p, [measurement("1000", 1_000)]) == []
    thresholds["1000"] = TriggerThresholds(ref_v=230.0)  # 120 V is now a deep sag
    assert feed(p, [measurement("1000", 1_167)]) == []
    assert p.abnormal_boxes == ("1000",)
    thresholds["1000"] = TriggerThresholds()
    [(_, request)] = feed(p, [measurement("1000", 1_334)])
    assert request.reason == "1000: rms min 119.5 V < 218.5 V"
    assert calls == ["1000"] * 3


# --- invariants ---------------------------------------------------------------------------------------

BOX_IDS = ("1000", "1001", "1002")
# Boxes measure every 167 ms by default; slower ones still well within a piece and the silence.
MAX_GAP_MS = 400


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[BoxMeasurement, bool]]:
    """Interleaved streams of 1–3 boxes: (measurement, abnormal?) ordered by timestamp."""
    rows: list[tuple[BoxMeasurement, bool]] = []
    for box_id in BOX_IDS[: draw(st.integers(1, 3))]:
        ts = draw(st.integers(0, 1_000))
        for abnormal in draw(st.lists(st.booleans(), min_size=1, max_size=80)):
            ts += draw(st.integers(50, MAX_GAP_MS))
            rows.append((sag(box_id, ts) if abnormal else measurement(box_id, ts), abnormal))
    return sorted(rows, key=lambda row: row[0].timestamp_ms)


def pieces_of(requests: Sequence[CaptureRequest]) -> list[list[CaptureRequest]]:
    groups: list[list[CaptureRequest]] = []
    for r in requests:
        if r.piece == 0:
            groups.append([])
        groups[-1].append(r)
    return groups


@settings(max_examples=200)
@given(streams(), st.integers(0, 1_000), st.integers(0, 1_000), st.integers(2_000, 6_000))
def test_abnormal_spans_are_requested_from_their_box_and_pieces_tile(
    rows: list[tuple[BoxMeasurement, bool]], pre_ms: int, post_ms: int, max_piece_ms: int
) -> None:
    p = planner(pre_ms=pre_ms, post_ms=post_ms, max_piece_ms=max_piece_ms)
    requests = [r for m, _ in rows for r in p.observe(m)]
    requests += p.tick(rows[-1][0].timestamp_ms + 10_000)
    assert p.abnormal_boxes == ()
    for group in pieces_of(requests):
        assert [r.piece for r in group] == list(range(len(group)))
        assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(group))
        assert all(r.end_ms - r.start_ms == max_piece_ms for r in group[:-1])
        assert 0 < group[-1].end_ms - group[-1].start_ms <= max_piece_ms + MAX_GAP_MS + post_ms
    previous: dict[str, int] = {}
    for m, abnormal in rows:
        if abnormal:
            # The measurement spans (begin_ms, timestamp_ms]: its end is in a piece that asks its box,
            # and the whole span with its pre-trigger margin is within the windows requested.
            begin_ms = previous.get(m.box_id, m.timestamp_ms - PERIOD_MS)
            asking = [r for r in requests if m.box_id in r.triggered_by]
            assert any(r.start_ms < m.timestamp_ms <= r.end_ms for r in asking)
            assert _covered(requests, begin_ms - pre_ms, m.timestamp_ms)
        previous[m.box_id] = m.timestamp_ms


def _covered(requests: Sequence[CaptureRequest], start_ms: int, end_ms: int) -> bool:
    """Whether the union of the requests' windows holds [start_ms, end_ms]."""
    reach_ms = start_ms
    for r in sorted(requests, key=lambda r: r.start_ms):
        if r.start_ms <= reach_ms:
            reach_ms = max(reach_ms, r.end_ms)
    return reach_ms >= end_ms


@settings(max_examples=100)
@given(streams(), st.lists(st.integers(1, 30), min_size=1, max_size=8))
def test_batches_give_the_requests_of_their_measurements_taken_one_at_a_time(
    rows: list[tuple[BoxMeasurement, bool]], batch_sizes: list[int]
) -> None:
    ms = [m for m, _ in rows]
    one_at_a_time, batched = planner(), planner()
    expected = [r for m in ms for r in one_at_a_time.observe(m)]
    got: list[CaptureRequest] = []
    start = 0
    for size in itertools.cycle(batch_sizes):
        if start >= len(ms):
            break
        got += batched.observe_batch(MeasurementColumns.of(ms[start : start + size]))
        start += size
    assert got == expected
    assert (batched.measurements, batched.abnormal_measurements, batched.triggers) == (
        one_at_a_time.measurements,
        one_at_a_time.abnormal_measurements,
        one_at_a_time.triggers,
    )


metric_values = st.one_of(
    st.none(), st.tuples(*[st.sampled_from([math.nan, 0.0, 0.06, 59.6, 60.4, 119.0, 130.0])] * 3)
)


@given(st.lists(st.fixed_dictionaries({n: metric_values for n in ("rms", "f", "thd", "trans")}), min_size=1))
def test_abnormal_rows_agree_with_abnormal_metrics(
    metric_rows: list[dict[str, tuple[float, ...] | None]],
) -> None:
    ms = [measurement("1000", ts, **changes) for ts, changes in enumerate(metric_rows)]
    flags = abnormal_rows(MeasurementColumns.of(ms), [DEFAULT_LIMITS] * len(ms))
    assert flags.tolist() == [bool(abnormal_metrics(m, DEFAULT_LIMITS)) for m in ms]
