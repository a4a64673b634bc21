"""Triggering thresholds on every backend: defaults, partial per-box overrides, the version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from opq.errors import InvalidValue, NotFound
from opq.store import Store
from opq.store.models import Box, TriggerThresholds

CUSTOM = TriggerThresholds(
    ref_f=50.0,
    ref_v=230.0,
    threshold_percent_f_low=1.0,
    threshold_percent_f_high=1.0,
    threshold_percent_v_low=10.0,
    threshold_percent_v_high=6.0,
    threshold_percent_thd_high=8.0,
)


@pytest.fixture
def boxes(store: Store) -> list[str]:
    """Two registered boxes."""
    for box_id in ("1000", "1001"):
        store.boxes.add(Box(box_id=box_id, name=f"box {box_id}", calibration_constant=152.5))
    return ["1000", "1001"]


def test_without_anything_stored_the_built_in_defaults_apply(store: Store, boxes: list[str]) -> None:
    assert store.triggering.defaults() == TriggerThresholds()
    assert store.triggering.for_box("1000") == TriggerThresholds()
    assert store.triggering.overrides() == {}
    assert store.triggering.version() == 0


def test_set_defaults_round_trips_and_applies_to_every_box(store: Store, boxes: list[str]) -> None:
    store.triggering.set_defaults(CUSTOM)
    assert store.triggering.defaults() == CUSTOM
    assert store.triggering.for_box("1001") == CUSTOM
    store.triggering.set_defaults(TriggerThresholds())
    assert store.triggering.defaults() == TriggerThresholds()
    assert store.row_counts()["triggering_defaults"] == 1


def test_a_partial_override_wins_field_by_field(store: Store, boxes: list[str]) -> None:
    store.triggering.set_defaults(CUSTOM)
    store.triggering.set_override("1000", ref_v=120.0, threshold_percent_v_low=2.5)
    assert store.triggering.for_box("1000") == replace(CUSTOM, ref_v=120.0, threshold_percent_v_low=2.5)
    assert store.triggering.for_box("1001") == CUSTOM
    assert store.triggering.overrides() == {"1000": {"ref_v": 120.0, "threshold_percent_v_low": 2.5}}


def test_fields_not_overridden_follow_later_defaults(store: Store, boxes: list[str]) -> None:
    store.triggering.set_override("1000", threshold_percent_thd_high=3.0)
    store.triggering.set_defaults(CUSTOM)
    assert store.triggering.for_box("1000") == replace(CUSTOM, threshold_percent_thd_high=3.0)


def test_overrides_accumulate_and_none_inherits_again(store: Store, boxes: list[str]) -> None:
    store.triggering.set_override("1000", ref_f=50.0, threshold_percent_f_low=1.0)
    store.triggering.set_override("1000", threshold_percent_f_high=2.0)
    assert store.triggering.overrides() == {
        "1000": {"ref_f": 50.0, "threshold_percent_f_low": 1.0, "threshold_percent_f_high": 2.0}
    }
    store.triggering.set_override("1000", threshold_percent_f_low=None)
    assert store.triggering.for_box("1000") == replace(
        TriggerThresholds(), ref_f=50.0, threshold_percent_f_high=2.0
    )


def test_clear_override_returns_the_box_to_the_defaults(store: Store, boxes: list[str]) -> None:
    store.triggering.set_defaults(CUSTOM)
    store.triggering.set_override("1000", ref_v=120.0)
    store.triggering.set_override("1001", ref_v=240.0)
    store.triggering.clear_override("1000")
    assert store.triggering.for_box("1000") == CUSTOM
    assert store.triggering.overrides() == {"1001": {"ref_v": 240.0}}
    store.triggering.set_override("1000", threshold_percent_v_high=4.0)
    assert store.triggering.overrides()["1000"] == {"threshold_percent_v_high": 4.0}


def test_every_change_raises_the_version(store: Store, boxes: list[str]) -> None:
    seen = [store.triggering.version()]
    changes: list[Callable[[], None]] = [
        lambda: store.triggering.set_defaults(CUSTOM),
        lambda: store.triggering.set_defaults(CUSTOM),
        lambda: store.triggering.set_override("1000", ref_v=120.0),
        lambda: store.triggering.set_override("1001", ref_v=121.0),
        # Clearing must count even when the cleared override is not the newest change.
        lambda: store.triggering.clear_override("1000"),
        lambda: store.triggering.clear_override("1001"),
    ]
    for change in changes:
        change()
        seen.append(store.triggering.version())
    assert seen == sorted(set(seen)), f"version did not grow at every change: {seen}"


def test_reading_does_not_change_the_version(store: Store, boxes: list[str]) -> None:
    store.triggering.set_override("1000", ref_v=120.0)
    before = store.triggering.version()
    store.triggering.for_box("1000")
    store.triggering.overrides()
    store.triggering.defaults()
    assert store.triggering.version() == before


BAD_VALUES = [
    ("ref_f", 0.0),
    ("ref_v", -120.0),
    ("ref_f", float("nan")),
    ("ref_v", float("inf")),
    ("threshold_percent_f_low", 0.0),
    ("threshold_percent_v_high", 100.0),
    ("threshold_percent_thd_high", -5.0),
    ("threshold_percent_v_low", float("nan")),
    ("threshold_percent_f_high", True),
]
BAD_IDS = [
    "zero-ref",
    "negative-ref",
    "nan-ref",
    "infinite-ref",
    "zero-percent",
    "hundred-percent",
    "negative-percent",
    "nan-percent",
    "bool",
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=BAD_IDS)
def test_bad_defaults_are_refused_and_change_nothing(
    store: Store, boxes: list[str], name: str, value: float
) -> None:
    store.triggering.set_defaults(CUSTOM)
    version = store.triggering.version()
    with pytest.raises(InvalidValue, match=name):
        store.triggering.set_defaults(replace(CUSTOM, **{name: value}))
    assert store.triggering.defaults() == CUSTOM
    assert store.triggering.version() == version


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=BAD_IDS)
def test_bad_overrides_are_refused_and_change_nothing(
    store: Store, boxes: list[str], name: str, value: float
) -> None:
    store.triggering.set_override("1000", ref_v=121.0)
    version = store.triggering.version()
    with pytest.raises(InvalidValue, match=name):
        store.triggering.set_override("1000", **{"ref_f": 50.0, name: value})
    assert store.triggering.overrides() == {"1000": {"ref_v": 121.0}}
    assert store.triggering.version() == version


@pytest.mark.parametrize("value", [1.0, None], ids=["value", "none"])
def test_an_unknown_field_is_refused_by_name(store: Store, boxes: list[str], value: float | None) -> None:
    with pytest.raises(InvalidValue, match="threshold_percent_hz"):
        store.triggering.set_override("1000", threshold_percent_hz=value)
    assert store.triggering.overrides() == {}
    assert store.triggering.version() == 0


def test_an_override_names_at_least_one_field(store: Store, boxes: list[str]) -> None:
    with pytest.raises(InvalidValue, match="at least one"):
        store.triggering.set_override("1000")


def test_unknown_boxes_are_not_found(store: Store, boxes: list[str]) -> None:
    with pytest.raises(NotFound, match="9999"):
        store.triggering.set_override("9999", ref_v=120.0)
    with pytest.raises(NotFound, match="9999"):
        store.triggering.clear_override("9999")
    with pytest.raises(NotFound, match="9999"):
        store.triggering.for_box("9999")
    assert store.row_counts()["triggering_overrides"] == 0
    assert store.triggering.version() == 0
