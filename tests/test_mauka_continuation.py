"""A long anomaly captured in pieces is classified whole: its pieces are joined before the plugins run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from opq.mauka.analysis import analyze_event
from opq.mauka.continuation import joined
from opq.mauka.incidents import read_capture
from opq.mauka.plugins.ieee1159 import Ieee1159VoltagePlugin
from opq.store import Store
from opq.store.models import BoxEvent, Event
from tests.mauka_site import CALIBRATION, add_site

T0 = 1_700_000_000_000
PIECE_MS = 10_000


def undervoltage_counts(seconds: int, low_from_s: float, low_to_s: float, pu: float) -> np.ndarray:
    n = seconds * 12_000
    t = np.arange(n) / 12_000
    envelope = np.where((t >= low_from_s) & (t < low_to_s), pu, 1.0)
    volts = envelope * 120 * math.sqrt(2) * np.sin(2 * np.pi * 60 * t)
    volts += np.random.default_rng(2).normal(0, 0.4, n)
    return np.round(volts * CALIBRATION).astype(np.int16)


def add_pieces(store: Store, counts: np.ndarray, box_id: str = "1") -> list[int]:
    """Consecutive 10-s pieces as Makai stores them: each box answers [start, end] inclusive."""
    cycles = counts.reshape(-1, 200)
    stamps = T0 + np.round(np.arange(len(cycles)) * 1000 / 60).astype(np.int64)
    ids: list[int] = []
    for start in range(T0, int(stamps[-1]), PIECE_MS):
        inside = np.flatnonzero((stamps >= start) & (stamps <= start + PIECE_MS))
        event_id = store.allocate_id("event")
        store.events.add(
            Event(event_id, start, start + PIECE_MS, (box_id,), continues_event_id=ids[-1] if ids else None)
        )
        filename = f"event_{event_id}_{box_id}"
        store.files.put(
            filename, cycles[inside].astype("<i2").tobytes(), metadata={"calibration_constant": CALIBRATION}
        )
        first, last = int(stamps[inside[0]]), int(stamps[inside[-1]])
        store.events.record_box_event(
            BoxEvent(event_id, box_id, first, last, (first,), "lab-a", filename), latency_ms=last + 100
        )
        store.events.complete(event_id, last + 200)
        ids.append(event_id)
    return ids


@pytest.fixture
def site(store: Store) -> Store:
    add_site(store)
    return store


def test_joined_pieces_are_the_original_waveform_with_the_shared_cycle_once(site: Store) -> None:
    counts = undervoltage_counts(30, 5, 25, 0.85)
    ids = add_pieces(site, counts)
    captures = [read_capture(site, site.events.box_event(i, "1")) for i in ids]
    whole = joined(captures)
    assert np.array_equal(whole.counts, counts[: len(whole.counts)])
    assert len(whole.counts) >= len(counts) - 200
    assert whole.box_event.event_id == ids[-1]
    assert whole.box_event.event_start_timestamp_ms == T0


def test_a_70_s_undervoltage_in_7_pieces_is_one_sustained_incident(site: Store) -> None:
    counts = undervoltage_counts(71, 1.5, 69.5, 0.85)
    ids = add_pieces(site, counts)
    plugin = Ieee1159VoltagePlugin()
    for event_id in ids:
        analyze_event(site, event_id, [plugin], now_ms=T0 + 80_000)
    incidents = [i for event_id in ids for i in site.incidents.for_event(event_id)]
    assert len(incidents) == 1
    (incident,) = incidents
    assert incident.classifications == ("UNDERVOLTAGE",)
    assert incident.ieee_duration == "SUSTAINED"
    assert incident.event_id == ids[-1]
    assert abs(incident.start_timestamp_ms - (T0 + 1_500)) <= 17
    assert abs(incident.end_timestamp_ms - (T0 + 69_500)) <= 17
    assert site.files.exists(incident.gridfs_filename or "")


def test_after_three_pieces_the_anomaly_so_far_is_one_temporary_sag(site: Store) -> None:
    counts = undervoltage_counts(71, 1.5, 69.5, 0.85)
    ids = add_pieces(site, counts)[:3]
    plugin = Ieee1159VoltagePlugin()
    for event_id in ids:
        analyze_event(site, event_id, [plugin], now_ms=T0 + 80_000)
    incidents = [i for event_id in ids for i in site.incidents.for_event(event_id)]
    assert [(i.classifications, i.ieee_duration) for i in incidents] == [(("VOLTAGE_SAG",), "TEMPORARY")]
    assert incidents[0].metadata["open_end"] is True
