"""Trend roll-up: interval boundaries, min/max/mean per metric, location, closing, lateness."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opq.makai.trends import TrendRollup
from opq.protocol.columns import MeasurementColumns
from opq.protocol.messages import BoxMeasurement, MetricStats
from opq.store.models import Stats, Trend

MINUTE_MS = 60_000


def measurement(box_id: str, timestamp_ms: int, **metrics: tuple[float, float, float]) -> BoxMeasurement:
    """A measurement with the given metrics as (min, max, average)."""
    return BoxMeasurement(
        box_id, timestamp_ms, {name: MetricStats(*stats) for name, stats in metrics.items()}
    )


def only(trends: list[Trend]) -> Trend:
    assert len(trends) == 1, trends
    return trends[0]


@pytest.mark.parametrize(
    ("timestamp_ms", "end_ms"),
    [(1, MINUTE_MS), (MINUTE_MS - 1, MINUTE_MS), (MINUTE_MS, MINUTE_MS), (MINUTE_MS + 1, 2 * MINUTE_MS)],
    ids=["just-after-start", "just-before-end", "on-the-boundary", "just-after-boundary"],
)
def test_a_measurement_stamped_on_a_boundary_ends_the_earlier_interval(
    timestamp_ms: int, end_ms: int
) -> None:
    assert TrendRollup().interval_end_ms(timestamp_ms) == end_ms


def test_a_measurement_that_lowers_the_min_also_raises_the_max() -> None:
    rollup = TrendRollup()
    rollup.add(measurement("1000", 1_000, rms=(119.0, 121.0, 120.0)), "home")
    rollup.add(measurement("1000", 2_000, rms=(110.0, 130.0, 118.0)), "home")
    trend = only(rollup.due(MINUTE_MS + 5_000))
    assert trend.voltage == Stats(min=110.0, max=130.0, average=119.0)


def test_each_metric_is_min_of_mins_max_of_maxes_mean_of_averages() -> None:
    rollup = TrendRollup()
    for ts, f, thd, trans in [
        (10_000, (59.9, 60.1, 60.0), (0.01, 0.02, 0.015), (1.0, 3.0, 2.0)),
        (20_000, (59.8, 60.0, 59.95), (0.02, 0.04, 0.03), (0.5, 9.0, 4.0)),
        (30_000, (59.95, 60.3, 60.1), (0.01, 0.01, 0.01), (1.0, 2.0, 1.5)),
    ]:
        rollup.add(measurement("1000", ts, rms=(119.0, 121.0, 120.0), f=f, thd=thd, trans=trans), None)
    trend = only(rollup.due(MINUTE_MS + 5_000))
    assert trend.box_id == "1000" and trend.timestamp_ms == MINUTE_MS
    assert trend.frequency == Stats(59.8, 60.3, pytest.approx((60.0 + 59.95 + 60.1) / 3))
    assert trend.thd == Stats(0.01, 0.04, pytest.approx((0.015 + 0.03 + 0.01) / 3))
    assert trend.transient == Stats(0.5, 9.0, pytest.approx(2.5))


def test_a_metric_never_present_gives_none_and_nan_values_are_ignored() -> None:
    rollup = TrendRollup()
    nan = math.nan
    rollup.add(measurement("1000", 1_000, rms=(118.0, 122.0, 120.0), f=(nan, nan, nan)), None)
    rollup.add(measurement("1000", 2_000, rms=(nan, 125.0, nan)), None)
    trend = only(rollup.due(MINUTE_MS + 5_000))
    assert trend.voltage == Stats(118.0, 125.0, 120.0)
    assert trend.frequency is None  # present, but never with a value
    assert trend.thd is None and trend.transient is None


def test_the_location_is_the_one_given_with_the_last_measurement_of_the_interval() -> None:
    rollup = TrendRollup()
    rollup.add(measurement("1000", 1_000, rms=(120.0, 120.0, 120.0)), "office")
    rollup.add(measurement("1000", 50_000, rms=(120.0, 120.0, 120.0)), "home")
    rollup.add(measurement("1000", 40_000, rms=(120.0, 120.0, 120.0)), "office")  # late within the minute
    assert only(rollup.due(MINUTE_MS + 5_000)).location == "home"


def test_a_measurement_of_a_later_interval_closes_the_earlier_one_of_its_box_only() -> None:
    rollup = TrendRollup()
    rollup.add(measurement("1000", 59_000, rms=(120.0, 120.0, 120.0)), "a")
    rollup.add(measurement("2000", 59_000, rms=(121.0, 121.0, 121.0)), "b")
    assert rollup.add(measurement("1000", MINUTE_MS, rms=(100.0, 100.0, 100.0)), "a") == []
    closed = only(rollup.add(measurement("1000", MINUTE_MS + 1, rms=(119.0, 119.0, 119.0)), "a"))
    assert closed.timestamp_ms == MINUTE_MS and closed.voltage == Stats(100.0, 120.0, 110.0)
    # Box 2000's minute stays open until `due`.
    assert [(t.box_id, t.timestamp_ms) for t in rollup.due(MINUTE_MS + 5_000)] == [("2000", MINUTE_MS)]


def test_a_batch_spanning_several_intervals_of_a_box_closes_each_oldest_first() -> None:
    rollup = TrendRollup(interval_ms=1_000, grace_ms=10_000)
    rollup.add(measurement("1000", 500, rms=(120.0, 120.0, 120.0)), None)
    batch = [
        measurement("1000", ts, rms=(v, v, v)) for ts, v in [(900, 110.0), (2_500, 121.0), (5_600, 122.0)]
    ]
    closed = rollup.add_batch(MeasurementColumns.of(batch), ["a", "b", "c"])
    assert [(t.timestamp_ms, t.voltage) for t in closed] == [
        (1_000, Stats(110.0, 120.0, 115.0)),
        (3_000, Stats(121.0, 121.0, 121.0)),
    ]
    assert [(t.timestamp_ms, t.location) for t in rollup.due(20_000)] == [(6_000, "c")]


def test_a_measurement_of_an_interval_before_its_box_open_one_is_late() -> None:
    rollup = TrendRollup(interval_ms=1_000, grace_ms=10_000)
    for ts in (2_500, 500):
        rollup.add(measurement("1000", ts, rms=(120.0, 120.0, 120.0)), None)
    assert rollup.late_measurements == 1
    assert [t.timestamp_ms for t in rollup.due(20_000)] == [3_000]


def test_due_waits_for_the_grace_and_emits_each_interval_once() -> None:
    rollup = TrendRollup(interval_ms=MINUTE_MS, grace_ms=5_000)
    rollup.add(measurement("1000", 30_000, rms=(120.0, 120.0, 120.0)), None)
    assert rollup.due(MINUTE_MS + 4_999) == []
    assert [t.timestamp_ms for t in rollup.due(MINUTE_MS + 5_000)] == [MINUTE_MS]
    assert rollup.due(MINUTE_MS + 6_000) == []


def test_due_orders_trends_by_time_then_box() -> None:
    rollup = TrendRollup(interval_ms=1_000, grace_ms=0)
    for box_id, ts in [("2000", 500), ("3000", 1_500), ("1000", 500)]:
        rollup.add(measurement(box_id, ts, rms=(120.0, 120.0, 120.0)), None)
    assert [(t.timestamp_ms, t.box_id) for t in rollup.due(10_000)] == [
        (1_000, "1000"),
        (1_000, "2000"),
        (2_000, "3000"),
    ]


@pytest.mark.parametrize("closed_by", ["add", "due"])
def test_a_late_measurement_is_counted_and_dropped_not_reopened(closed_by: str) -> None:
    rollup = TrendRollup()
    rollup.add(measurement("1000", 30_000, rms=(120.0, 120.0, 120.0)), None)
    if closed_by == "add":
        assert len(rollup.add(measurement("1000", 61_000, rms=(120.0, 120.0, 120.0)), None)) == 1
    else:
        assert len(rollup.due(MINUTE_MS + 5_000)) == 1
    assert rollup.add(measurement("1000", 59_000, rms=(50.0, 50.0, 50.0)), None) == []
    assert rollup.late_measurements == 1
    later = rollup.due(10 * MINUTE_MS)
    assert all(t.timestamp_ms != MINUTE_MS for t in later)


def test_a_box_whose_later_interval_was_emitted_drops_earlier_first_measurements() -> None:
    rollup = TrendRollup()
    rollup.add(measurement("1000", 90_000, rms=(120.0, 120.0, 120.0)), None)
    rollup.due(3 * MINUTE_MS)
    rollup.add(measurement("1000", 10_000, rms=(120.0, 120.0, 120.0)), None)
    assert rollup.late_measurements == 1
    assert rollup.due(10 * MINUTE_MS) == []


stats_values = st.floats(min_value=0.0, max_value=300.0, allow_nan=False)


@given(
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=600_000), stats_values, stats_values, stats_values),
        min_size=1,
        max_size=60,
    )
)
def test_every_in_order_measurement_lands_in_exactly_the_trend_of_its_interval(
    rows: list[tuple[int, float, float, float]],
) -> None:
    rows = sorted(rows, key=lambda r: r[0])
    rollup = TrendRollup()
    trends: list[Trend] = []
    for ts, a, b, c in rows:
        trends += rollup.add(measurement("1000", ts, rms=(min(a, b), max(a, b), c)), None)
    trends += rollup.due(10 * 600_000)
    assert rollup.late_measurements == 0
    by_end: dict[int, list[tuple[int, float, float, float]]] = {}
    for row in rows:
        by_end.setdefault(-(-row[0] // MINUTE_MS) * MINUTE_MS, []).append(row)
    assert [t.timestamp_ms for t in trends] == sorted(by_end)
    for trend in trends:
        members = by_end[trend.timestamp_ms]
        assert trend.voltage == Stats(
            min(min(a, b) for _, a, b, _ in members),
            max(max(a, b) for _, a, b, _ in members),
            pytest.approx(sum(c for *_, c in members) / len(members)),
        )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["1000", "2000", "3000"]),
            st.integers(min_value=1, max_value=300_000),
            stats_values,
        ),
        min_size=1,
        max_size=80,
    ),
    st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=10),
)
def test_batches_roll_up_as_one_measurement_at_a_time(
    rows: list[tuple[str, int, float]], batch_sizes: list[int]
) -> None:
    rows = sorted(set(rows), key=lambda r: (r[1], r[0]))
    rows = [r for i, r in enumerate(rows) if all(r[:2] != q[:2] for q in rows[:i])]
    ms = [measurement(box, ts, rms=(v, v + 1.0, v + 0.5), f=(59.9, 60.1, 60.0)) for box, ts, v in rows]
    one_by_one, batched = TrendRollup(), TrendRollup()
    expected = [t for m in ms for t in one_by_one.add(m, f"at-{m.timestamp_ms}")]
    got: list[Trend] = []
    start = 0
    for size in batch_sizes * len(ms):
        if start >= len(ms):
            break
        chunk = ms[start : start + size]
        got += batched.add_batch(MeasurementColumns.of(chunk), [f"at-{m.timestamp_ms}" for m in chunk])
        start += size
    expected += one_by_one.due(10**9)
    got += batched.due(10**9)
    assert sorted(map(_rounded, got)) == sorted(map(_rounded, expected))
    assert batched.late_measurements == one_by_one.late_measurements == 0


def _rounded(t: Trend) -> tuple[object, ...]:
    """A trend with its averages rounded: a batch sums them in another order."""
    stats = [(s.min, s.max, round(s.average, 9)) if s else None for s in (t.voltage, t.frequency)]
    return (t.box_id, t.timestamp_ms, t.location, *stats, t.thd, t.transient)
