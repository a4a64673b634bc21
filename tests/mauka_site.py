"""Shared by the Mauka tests: a site of boxes and places, synthetic waveforms, stored events, fake plugins."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from opq.errors import ConfigError
from opq.mauka.plugin import Finding, Waveform
from opq.store import Store
from opq.store.models import Box, BoxEvent, Event, Location, Measurement

T0 = 1_700_000_000_000
CALIBRATION = 152.5
"""ADC counts per volt of every test box."""
SAMPLE_RATE_HZ = 12_000
# Boxes 1 and 2 at lab-a, 3 at lab-b (both in region oahu, inside region hawaii), 4 at hilo (big-island).
BOX_LOCATIONS = {"1": "lab-a", "2": "lab-a", "3": "lab-b", "4": "hilo"}


def add_site(store: Store) -> None:
    """Locations, nested regions and boxes 1 to 4 (see BOX_LOCATIONS)."""
    for n, slug in enumerate(("lab-a", "lab-b", "hilo")):
        store.locations.add(Location(slug, -157.8 + n, 21.3, f"The {slug}"))
    store.regions.add("oahu", ["lab-a", "lab-b"])
    store.regions.add("big-island", ["hilo"])
    store.regions.add("hawaii-north", subregions=["oahu"])
    for box_id, location in BOX_LOCATIONS.items():
        store.boxes.add(
            Box(box_id, f"box {box_id}", CALIBRATION, location=location, location_start_time_ms=0)
        )


def sine_counts(
    seconds: float = 3.0, sags: Sequence[tuple[float, float, float]] = ()
) -> npt.NDArray[np.int16]:
    """120 V rms, 60 Hz at 12 kHz as int16 ADC counts; each sag (start_s, duration_s, pu) scales it."""
    n = round(seconds * SAMPLE_RATE_HZ)
    envelope = np.ones(n)
    for start_s, duration_s, pu in sags:
        first = round(start_s * SAMPLE_RATE_HZ)
        envelope[first : first + round(duration_s * SAMPLE_RATE_HZ)] = pu
    volts = envelope * 120.0 * math.sqrt(2) * np.sin(2 * np.pi * 60 * np.arange(n) / SAMPLE_RATE_HZ)
    return np.round(volts * CALIBRATION).astype(np.int16)


def add_event(store: Store, waveforms: Mapping[str, npt.NDArray[np.int16]], start_ms: int = T0) -> int:
    """A completed event with one waveform per box, stored as Makai stores them; its id."""
    boxes = tuple(waveforms)
    longest_ms = max(len(w) for w in waveforms.values()) * 1000 // SAMPLE_RATE_HZ
    event_id = store.allocate_id("event")
    store.events.add(Event(event_id, start_ms, start_ms + longest_ms, boxes, description="test"))
    for box_id, counts in waveforms.items():
        filename = f"event_{event_id}_{box_id}"
        store.files.put(
            filename,
            counts.astype("<i2").tobytes(),
            event_id=event_id,
            box_id=box_id,
            metadata={"format": "int16le", "calibration_constant": CALIBRATION},
        )
        end_ms = start_ms + len(counts) * 1000 // SAMPLE_RATE_HZ
        store.events.record_box_event(
            BoxEvent(event_id, box_id, start_ms, end_ms, (start_ms,), BOX_LOCATIONS.get(box_id), filename),
            latency_ms=end_ms + 100,
        )
    store.events.complete(event_id, start_ms + longest_ms + 200)
    return event_id


def add_measurements(store: Store, box_id: str, start_ms: int, end_ms: int, every_ms: int = 100) -> None:
    """Nominal measurements of a box over [start_ms, end_ms)."""
    store.measurements.insert_many(
        [Measurement(box_id, t, 120.0, 60.0, 0.01) for t in range(start_ms, end_ms, every_ms)]
    )


class SagPlugin:
    """Finds each run of cycles with RMS below `threshold_v` (100 V) as one VOLTAGE_SAG."""

    name = "sag"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.threshold_v = float((settings or {}).get("threshold_v", 100.0))
        if not self.threshold_v > 0:
            raise ConfigError(f"plugin sag: threshold_v {self.threshold_v} must be positive")
        self.seen: list[Waveform] = []

    def analyze(self, waveform: Waveform) -> Sequence[Finding]:
        self.seen.append(waveform)
        rms = waveform.features.cycle_rms_v
        low = np.flatnonzero(rms < self.threshold_v)
        if low.size == 0:
            return []
        runs = np.split(low, np.flatnonzero(np.diff(low) > 1) + 1)
        return [
            Finding(
                box_id=waveform.box_id,
                start_ms=round(waveform.time_ms(run[0] * 200)),
                end_ms=round(waveform.time_ms((run[-1] + 1) * 200)),
                measurement_type="VOLTAGE",
                classifications=("VOLTAGE_SAG",),
                deviation_from_nominal=float(120.0 - rms[run].min()),
                ieee_duration="INSTANTANEOUS",
                # numpy values, as plugins write them: the host makes them plain.
                metadata={"min_v": rms[run].min(), "cycles": np.int64(len(run))},
            )
            for run in runs
        ]


class TaggingPlugin:
    """Finds one UNDEFINED incident over each whole waveform; reads the shared features too."""

    name = "tagging"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.seen: list[Waveform] = []

    def analyze(self, waveform: Waveform) -> Sequence[Finding]:
        self.seen.append(waveform)
        cycles = len(waveform.features.cycle_rms_v)
        return [
            Finding(
                box_id=waveform.box_id,
                start_ms=round(waveform.start_ms),
                end_ms=round(waveform.time_ms(cycles * 200)),
                measurement_type="VOLTAGE",
                classifications=("UNDEFINED",),
            )
        ]


class BrokenPlugin:
    """Raises on every waveform."""

    name = "broken"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        pass

    def analyze(self, waveform: Waveform) -> Sequence[Finding]:
        raise RuntimeError("the broken plugin broke")


class MislabellingPlugin:
    """Returns a finding with a classification the store does not know."""

    name = "mislabelling"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        pass

    def analyze(self, waveform: Waveform) -> Sequence[Finding]:
        start = round(waveform.start_ms)
        return [Finding(waveform.box_id, start, start + 10, "TRANSIENT", ("PERIODIC_NOTCHING_TRANSIENT",))]


class NotAPlugin:
    """Has a name but nothing to analyse with."""

    name = "not_a_plugin"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        pass
