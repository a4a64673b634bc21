"""Makai's ingest on a batch: every kind of bad measurement is dropped with its reason, the rest kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from opq.config import MakaiSettings
from opq.makai.ingest import Ingest
from opq.protocol import BoxMeasurement, MetricStats, encode_measurement, generate_keypair
from opq.store import Store, open_store
from opq.store.models import Box, Location
from tests.test_makai_service import free_ports

NOW_MS = 1_700_000_000_000
NOMINAL = {
    "rms": MetricStats(119.5, 120.5, 120.0),
    "f": MetricStats(59.98, 60.02, 60.0),
    "thd": MetricStats(0.01, 0.02, 0.015),
    "trans": MetricStats(0.5, 2.0, 1.0),
}


def payload(box_id: str, timestamp_ms: int, **metrics: MetricStats) -> bytes:
    return encode_measurement(BoxMeasurement(box_id, timestamp_ms, {**NOMINAL, **metrics}))


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[tuple[Ingest, Store]]:
    ports = free_ports(4)
    settings = MakaiSettings(
        box_host="127.0.0.1", measurement_port=ports[0], live_port=ports[1], capture_port=ports[2]
    )
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    with open_store(f"sqlite:///{tmp_path / 'ingest.sqlite3'}", upgrade=True) as store:
        store.locations.add(Location("lab", -157.8, 21.3, "The lab"))
        for box_id in ("1", "2"):
            store.boxes.add(Box(box_id, f"box {box_id}", 152.5, location="lab", location_start_time_ms=0))
            store.boxes.set_public_key(box_id, generate_keypair().public)
        ingest = Ingest(settings, store, generate_keypair().secret, context, clock_ms=lambda: NOW_MS)
        try:
            yield ingest, store
        finally:
            ingest.close()
            context.term()


def test_a_batch_keeps_good_measurements_and_counts_each_bad_one_by_reason(
    ingest: tuple[Ingest, Store],
) -> None:
    makai, store = ingest
    batch = [
        ("1", payload("1", NOW_MS - 1_000)),  # kept
        ("1", b"\xff\x00 not protobuf"),  # malformed
        ("2", payload("1", NOW_MS - 900)),  # box 2 posing as box 1
        ("1", payload("1", NOW_MS - 800, volts=MetricStats(1, 2, 1.5))),  # unknown metric
        ("1", payload("1", NOW_MS - 700, rms=MetricStats(float("nan"), 121, 120))),  # NaN
        ("1", payload("1", NOW_MS - 600, thd=MetricStats(0.01, 500, 0.02))),  # out of range
        ("1", payload("1", NOW_MS - 3_600_001)),  # too old
        ("1", payload("1", NOW_MS + 60_001)),  # ahead of the clock
        ("1", payload("1", NOW_MS - 1_000)),  # duplicate
        ("1", payload("1", NOW_MS - 2_000)),  # out of order
        ("2", payload("2", NOW_MS - 500, f=MetricStats(59.0, 60.0, 59.5))),  # kept, and abnormal
        ("9", payload("9", NOW_MS - 500)),  # a key that is no (longer a) registered box's
    ]
    kept = makai.take([sender for sender, _ in batch], [data for _, data in batch])
    assert kept == [0, 10]
    assert dict(makai.dropped) == {
        "malformed": 1,
        "wrong_box": 1,
        "unknown_metric": 1,
        "not_a_number": 1,
        "out_of_range": 1,
        "too_old": 1,
        "ahead_of_clock": 1,
        "duplicate": 1,
        "out_of_order": 1,
        "revoked": 1,
    }
    assert makai.planner.abnormal_boxes == ("2",)
    assert makai.writer.flush()
    assert [(m.timestamp_ms, m.frequency) for m in store.measurements.for_box("1", 0, NOW_MS)] == [
        (NOW_MS - 1_000, 60.0)
    ]
    assert [(m.timestamp_ms, m.frequency) for m in store.measurements.for_box("2", 0, NOW_MS)] == [
        (NOW_MS - 500, 59.5)
    ]


def test_a_box_sending_more_than_sixty_a_second_has_the_rest_dropped(ingest: tuple[Ingest, Store]) -> None:
    makai, _ = ingest
    payloads = [payload("1", NOW_MS - 10_000 + i) for i in range(70)]
    kept = makai.take(["1"] * 70, payloads)
    assert kept == list(range(60))
    assert makai.dropped["too_fast"] == 10


def test_an_interruption_without_frequency_is_stored_with_none(ingest: tuple[Ingest, Store]) -> None:
    makai, store = ingest
    data = encode_measurement(BoxMeasurement("1", NOW_MS - 100, {"rms": MetricStats(0.5, 2.0, 1.0)}))
    assert makai.take(["1"], [data]) == [0]
    assert makai.writer.flush()
    [m] = store.measurements.for_box("1", 0, NOW_MS)
    assert (m.voltage, m.frequency, m.thd, m.transient) == (1.0, None, None, None)
    assert makai.planner.abnormal_boxes == ("1",)
