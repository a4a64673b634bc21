"""Frequency variations from the stream as stored incidents: settling, one incident per variation, stop."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import zmq

from opq.config import MaukaSettings
from opq.mauka.analysis import analyze_event
from opq.mauka.frequency_incidents import STREAM_PRODUCER, FrequencyStreamIncidents, stream_limits
from opq.mauka.frequency_stream import FrequencyStreamTracker
from opq.mauka.plugins.frequency import FrequencyVariationPlugin
from opq.mauka.service import Mauka
from opq.protocol import BoxMeasurement, MetricStats, encode_measurement
from opq.protocol.internal import LIVE_TOPIC
from opq.store import Store, open_store
from tests.mauka_site import CALIBRATION, SAMPLE_RATE_HZ, T0, add_event, add_site

STEP_MS = 167
SETTLE_MS = 30_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'mauka.sqlite3'}", upgrade=True) as opened:
        add_site(opened)
        yield opened


def measurement(box_id: str, t_ms: int, f_hz: float) -> BoxMeasurement:
    f = MetricStats(f_hz, f_hz, f_hz)
    return BoxMeasurement(box_id, t_ms, {"rms": MetricStats(119.5, 120.5, 120.0), "f": f})


def feed_step(incidents: FrequencyStreamIncidents, f_hz: float, start_ms: int, seconds: float) -> int:
    """1 s nominal, `seconds` at f_hz, 1 s nominal, received as stamped; the last time [ms]."""
    count = round((2 + seconds) * 6)
    t = start_ms
    for i in range(count):
        t = start_ms + i * STEP_MS
        inside = 6 <= i < count - 6
        incidents.seen(measurement("1", t, f_hz if inside else 60.0), t)
    return t


def stream_incidents(store: Store) -> FrequencyStreamIncidents:
    return FrequencyStreamIncidents(store, FrequencyStreamTracker(stream_limits(MaukaSettings())), SETTLE_MS)


def test_a_variation_is_stored_once_it_has_settled_with_the_plugins_fields(store: Store) -> None:
    incidents = stream_incidents(store)
    last = feed_step(incidents, 59.8, T0, 3.0)
    incidents.check(last + SETTLE_MS - 1_000)
    assert store.incidents.list() == [] and incidents.settling == 1
    incidents.check(last + SETTLE_MS)
    [sag] = store.incidents.list()
    assert (sag.box_id, sag.location, sag.measurement_type, sag.classifications) == (
        "1",
        "lab-a",
        "FREQUENCY",
        ("FREQUENCY_SAG",),
    )
    assert sag.event_id is None and sag.gridfs_filename is None
    assert sag.ieee_duration == "TEMPORARY" and sag.deviation_from_nominal == pytest.approx(-0.2)
    assert sag.metadata["plugin"] == STREAM_PRODUCER and sag.metadata["open_end"] is False
    assert sag.end_timestamp_ms - sag.start_timestamp_ms == 18 * STEP_MS
    assert incidents.figures == {"variations": 1, "stored": 1, "captured": 0, "resumed": 0}


def test_a_variation_an_event_captured_is_the_plugins_alone(store: Store) -> None:
    # The event captured the step and was analysed while the stream's copy settled.
    event_id = add_event(store, {"1": stepped_counts(3.0, 1.0, 2.5, 60.5)})
    incidents = stream_incidents(store)
    last = feed_step(incidents, 60.5, T0 + 1_000 - 6 * STEP_MS, 1.5)
    analyze_event(store, event_id, [FrequencyVariationPlugin()], T0 + 10_000)
    incidents.check(last + SETTLE_MS)
    [swell] = store.incidents.list()
    assert swell.event_id == event_id and swell.metadata["plugin"] == "frequency_variation"
    assert incidents.figures == {"variations": 1, "stored": 0, "captured": 1, "resumed": 0}


def test_an_event_analysed_after_the_streams_copy_was_stored_adds_no_second_incident(store: Store) -> None:
    incidents = stream_incidents(store)
    last = feed_step(incidents, 60.5, T0 + 1_000 - 6 * STEP_MS, 1.5)
    incidents.check(last + SETTLE_MS)
    [stored] = store.incidents.list()
    event_id = add_event(store, {"1": stepped_counts(3.0, 1.0, 2.5, 60.5)})
    result = analyze_event(store, event_id, [FrequencyVariationPlugin()], T0 + 60_000)
    assert result.incident_ids == ()
    assert result.record["_host"]["frequency_found_in_measurements"] == [stored.incident_id]
    assert [i.incident_id for i in store.incidents.list()] == [stored.incident_id]


def test_stopping_stores_what_settles_and_what_is_still_open(store: Store) -> None:
    incidents = stream_incidents(store)
    last = feed_step(incidents, 59.8, T0, 2.0)
    for i in range(1, 10):  # a swell starts and is still going when Mauka stops
        incidents.seen(measurement("1", last + i * STEP_MS, 60.3), last + i * STEP_MS)
    incidents.close()
    sag, swell = sorted(store.incidents.list(), key=lambda i: i.start_timestamp_ms)
    assert sag.classifications == ("FREQUENCY_SAG",) and sag.metadata["open_end"] is False
    assert swell.classifications == ("FREQUENCY_SWELL",) and swell.metadata["open_end"] is True
    assert swell.end_timestamp_ms == last + 9 * STEP_MS


def stepped_counts(seconds: float, start_s: float, end_s: float, f_hz: float) -> npt.NDArray[np.int16]:
    """120 V rms at 60 Hz as ADC counts, at f_hz over [start_s, end_s)."""
    n = round(seconds * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    frequency = np.where((t >= start_s) & (t < end_s), f_hz, 60.0)
    phase = 2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE_HZ
    return np.round(120.0 * math.sqrt(2) * np.sin(phase) * CALIBRATION).astype(np.int16)


def test_the_service_reports_a_variation_from_the_live_stream_and_one_open_at_stop(
    store: Store,
) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    events, live = context.socket(zmq.PUB), context.socket(zmq.PUB)
    for socket in (events, live):
        socket.bind("tcp://127.0.0.1:*")
    settings = MaukaSettings(
        event_endpoint=events.getsockopt_string(zmq.LAST_ENDPOINT),
        live_endpoint=live.getsockopt_string(zmq.LAST_ENDPOINT),
        health_port=0,
        frequency_settle_s=0.0,
    )
    mauka = Mauka(store, settings, [])
    mauka.start()
    stop = threading.Event()
    thread = threading.Thread(target=mauka.run, args=(stop,), daemon=True)
    thread.start()
    try:
        tracker = mauka.frequency.tracker if mauka.frequency is not None else None
        assert tracker is not None
        t = int(time.time() * 1000)
        # PUB/SUB drops what is sent before the subscription is up: repeat nominal until it is seen.
        while "1" not in mauka.tracker.last_seen:
            t += STEP_MS
            live.send_multipart(frame(measurement("1", t, 60.0)))
            time.sleep(0.02)
        for f_hz in [59.8] * 6 + [60.0] * 2 + [60.2] * 6:
            t += STEP_MS
            live.send_multipart(frame(measurement("1", t, f_hz)))
        deadline = time.monotonic() + 10
        while not store.incidents.list(classification="FREQUENCY_SAG") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
        mauka.close()
        events.close(linger=0)
        live.close(linger=0)
        context.term()
    kinds = {i.classifications[0]: i for i in store.incidents.list(measurement_type="FREQUENCY")}
    assert set(kinds) == {"FREQUENCY_SAG", "FREQUENCY_SWELL"}
    assert kinds["FREQUENCY_SAG"].metadata["open_end"] is False
    assert kinds["FREQUENCY_SWELL"].metadata["open_end"] is True  # still going when Mauka stopped


def frame(m: BoxMeasurement) -> list[Any]:
    return [LIVE_TOPIC, encode_measurement(m)]


def test_a_variation_resumed_after_a_restart_stays_one_incident(store: Store) -> None:
    before_stop = stream_incidents(store)
    t = T0
    for i in range(12):  # 1 s nominal, then a sag still going when Mauka stops
        t = T0 + i * STEP_MS
        before_stop.seen(measurement("1", t, 60.0 if i < 6 else 59.7), t)
    before_stop.close()
    [open_ended] = store.incidents.list()
    assert open_ended.metadata["open_end"] is True and open_ended.end_timestamp_ms == t
    # Back 3 s later (less than frequency_max_gap_s): the same sag, deeper, then over.
    after_restart = stream_incidents(store)
    resumed_at = t + 3_000
    for i in range(12):
        t = resumed_at + i * STEP_MS
        after_restart.seen(measurement("1", t, 59.5 if i < 6 else 60.0), t)
    after_restart.check(t + SETTLE_MS)
    [sag] = store.incidents.list()
    assert sag.incident_id == open_ended.incident_id
    assert (sag.start_timestamp_ms, sag.end_timestamp_ms) == (
        open_ended.start_timestamp_ms,
        resumed_at + 5 * STEP_MS,
    )
    assert sag.metadata["open_end"] is False and sag.metadata["measurements"] == 12
    assert sag.deviation_from_nominal == pytest.approx(-0.5) and sag.ieee_duration == "TEMPORARY"
    assert after_restart.figures["resumed"] == 1
    # Resuming after longer than the gap is a new variation.
    later = resumed_at + 60_000
    for i in range(6):
        after_restart.seen(
            measurement("1", later + i * STEP_MS, 59.5 if i < 5 else 60.0), later + i * STEP_MS
        )
    after_restart.check(later + SETTLE_MS + 1_000)
    assert len(store.incidents.list()) == 2
