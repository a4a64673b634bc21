"""Mauka's latency: from an event stored (and announced) to its incidents stored, by event size."""

from __future__ import annotations

import math
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from opq.config import MaukaSettings
from opq.domain.constants import DEFAULT_CALIBRATION_COUNTS_PER_V
from opq.mauka.registry import load_plugins
from opq.mauka.service import Mauka
from opq.protocol.internal import event_announcement
from opq.store import Store, open_store
from opq.store.models import Box, BoxEvent, Event, Location

SAMPLE_RATE_HZ = 12_000
POLL_S = 0.002


@dataclass(frozen=True)
class LatencyFigures:
    """Event stored → incidents stored, for events of `boxes` waveforms of `seconds` each [ms]."""

    boxes: int
    seconds: float
    events: int
    incidents_per_event: float
    median_ms: float
    p99_ms: float
    max_ms: float


def run_analysis_bench(
    sizes: list[tuple[int, float]], events_per_size: int = 20, directory: Path | None = None
) -> list[LatencyFigures]:
    """For each (boxes, seconds), store events holding a 0.2-s half-voltage sag at every box, announce
    each on a real PUB socket to a running Mauka (all six plugins, SQLite), and time how long after
    the event was completed its analysis record and incidents were in the store."""
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        url = f"sqlite:///{Path(scratch) / 'analysis.sqlite3'}"
        with open_store(url, upgrade=True) as store:
            _site(store, max(boxes for boxes, _ in sizes))
            context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
            announcer, live = context.socket(zmq.PUB), context.socket(zmq.PUB)
            for socket in (announcer, live):
                socket.bind("tcp://127.0.0.1:*")
            settings = MaukaSettings(
                event_endpoint=announcer.getsockopt_string(zmq.LAST_ENDPOINT),
                live_endpoint=live.getsockopt_string(zmq.LAST_ENDPOINT),
                health_port=0,
                catch_up_interval_s=3_600,  # only the announcements bring events in
            )
            mauka = Mauka(store, settings, load_plugins(settings))
            mauka.start()
            stop = threading.Event()
            thread = threading.Thread(target=mauka.run, args=(stop,), daemon=True)
            thread.start()
            time.sleep(0.5)  # the subscription reaches the PUB socket
            try:
                return [
                    _measure(store, announcer, boxes, seconds, events_per_size) for boxes, seconds in sizes
                ]
            finally:
                stop.set()
                thread.join(10)
                mauka.close()
                announcer.close(linger=0)
                live.close(linger=0)
                context.term()


def _measure(
    store: Store, announcer: zmq.Socket[bytes], boxes: int, seconds: float, events: int
) -> LatencyFigures:
    counts = _sag_counts(seconds)
    latencies: list[float] = []
    incidents: list[int] = []
    for _ in range(events):
        event_id = _store_event(store, boxes, counts)
        completed = time.monotonic()
        announcer.send_multipart(event_announcement(event_id))
        while store.events.analysis(event_id) is None:
            time.sleep(POLL_S)
        latencies.append((time.monotonic() - completed) * 1000)
        incidents.append(len(store.incidents.for_event(event_id)))
    values = np.array(latencies)
    return LatencyFigures(
        boxes=boxes,
        seconds=seconds,
        events=events,
        incidents_per_event=float(np.mean(incidents)),
        median_ms=round(float(np.median(values)), 1),
        p99_ms=round(float(np.percentile(values, 99)), 1),
        max_ms=round(float(values.max()), 1),
    )


def _site(store: Store, boxes: int) -> None:
    store.locations.add(Location("bench", -157.8, 21.3, "Benchmark site"))
    for n in range(boxes):
        store.boxes.add(
            Box(
                str(n + 1),
                f"box {n + 1}",
                DEFAULT_CALIBRATION_COUNTS_PER_V,
                location="bench",
                location_start_time_ms=0,
            )
        )


def _sag_counts(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    envelope = np.where((t >= seconds / 2) & (t < seconds / 2 + 0.2), 0.5, 1.0)
    volts = envelope * 120 * math.sqrt(2) * np.sin(2 * np.pi * 60 * t)
    volts += np.random.default_rng(1).normal(0, 0.4, len(t))
    return np.round(volts * DEFAULT_CALIBRATION_COUNTS_PER_V).astype("<i2")


def _store_event(store: Store, boxes: int, counts: np.ndarray) -> int:
    """An event as Makai stores one: the event, then each box's waveform and box event, completed."""
    start_ms = int(time.time() * 1000) - 20_000
    end_ms = start_ms + len(counts) * 1000 // SAMPLE_RATE_HZ
    box_ids = tuple(str(n + 1) for n in range(boxes))
    event_id = store.allocate_id("event")
    store.events.add(Event(event_id, start_ms, end_ms, box_ids, description="bench"))
    data = counts.tobytes()
    for box_id in box_ids:
        filename = f"event_{event_id}_{box_id}"
        store.files.put(
            filename,
            data,
            event_id=event_id,
            box_id=box_id,
            metadata={"calibration_constant": DEFAULT_CALIBRATION_COUNTS_PER_V},
        )
        last_cycle_ms = end_ms - 17
        store.events.record_box_event(
            BoxEvent(event_id, box_id, start_ms, last_cycle_ms, (start_ms,), "bench", filename),
            latency_ms=end_ms,
        )
    store.events.complete(event_id, int(time.time() * 1000))
    return event_id
