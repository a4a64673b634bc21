"""Makai's checks on each measurement: what is kept, and the reason for each drop."""

from __future__ import annotations

import math

import pytest

from opq.makai.validation import DROP_REASONS, check_measurement, stored
from opq.protocol import BoxMeasurement, MetricStats
from opq.store.models import Measurement

NOW_MS = 1_790_000_000_000
LIMITS = {"max_age_ms": 3_600_000, "max_ahead_ms": 60_000}


def measurement(box_id: str = "7", timestamp_ms: int = NOW_MS, **metrics: MetricStats) -> BoxMeasurement:
    defaults = {
        "rms": MetricStats(119.0, 121.0, 120.0),
        "f": MetricStats(59.99, 60.01, 60.0),
        "thd": MetricStats(0.01, 0.02, 0.015),
        "trans": MetricStats(0.5, 1.5, 1.0),
    }
    return BoxMeasurement(box_id, timestamp_ms, {**defaults, **metrics})


def test_a_normal_measurement_is_kept_and_stored_as_averages() -> None:
    m = measurement()
    assert check_measurement(m, "7", NOW_MS, **LIMITS) is None
    assert stored(m) == Measurement("7", NOW_MS, 120.0, 60.0, 0.015, 1.0)


def test_an_interruption_without_frequency_or_thd_is_kept_with_none() -> None:
    m = BoxMeasurement("7", NOW_MS, {"rms": MetricStats(0.5, 2.0, 1.0), "trans": MetricStats(0, 1, 0.5)})
    assert check_measurement(m, "7", NOW_MS, **LIMITS) is None
    assert stored(m) == Measurement("7", NOW_MS, 1.0, None, None, 0.5)


@pytest.mark.parametrize(
    ("m", "sender", "reason"),
    [
        (measurement(box_id="8"), "7", "wrong_box"),
        (measurement(volts=MetricStats(1, 2, 1.5)), "7", "unknown_metric"),
        (BoxMeasurement("7", NOW_MS, {"f": MetricStats(60, 60, 60)}), "7", "unknown_metric"),
        (measurement(rms=MetricStats(math.nan, 121, 120)), "7", "not_a_number"),
        (measurement(f=MetricStats(60, math.inf, 60)), "7", "not_a_number"),
        (measurement(rms=MetricStats(-1, 121, 120)), "7", "out_of_range"),
        (measurement(thd=MetricStats(0.01, 500, 0.02)), "7", "out_of_range"),
        (measurement(rms=MetricStats(121, 119, 120)), "7", "out_of_range"),
        (measurement(rms=MetricStats(119, 121, 130)), "7", "out_of_range"),
        (measurement(timestamp_ms=NOW_MS - 3_600_001), "7", "too_old"),
        (measurement(timestamp_ms=NOW_MS + 60_001), "7", "ahead_of_clock"),
    ],
    ids=[
        "other box's id",
        "unknown metric",
        "no rms",
        "NaN",
        "infinite",
        "negative rms",
        "absurd thd",
        "min above max",
        "average above max",
        "an hour old",
        "a minute ahead",
    ],
)
def test_bad_measurements_are_dropped_with_their_reason(m: BoxMeasurement, sender: str, reason: str) -> None:
    assert reason in DROP_REASONS
    assert check_measurement(m, sender, NOW_MS, **LIMITS) == reason


def test_queued_measurements_from_a_reconnecting_box_are_still_kept() -> None:
    ten_minutes_ago = measurement(timestamp_ms=NOW_MS - 600_000)
    assert check_measurement(ten_minutes_ago, "7", NOW_MS, **LIMITS) is None
