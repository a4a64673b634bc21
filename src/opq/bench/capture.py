"""The capture benchmark: disturbances into events (recall, latency), false events, bytes a box sends.

Two phases against one Makai on a new SQLite store. First a fleet of `boxes` boxes, consecutive
boxes sharing a location, on a clean supply; the first box (and, for shared ones, every box) gets
a disturbance every few seconds (`opq.bench.capture_cases`). Stored events are matched to
disturbances by window overlap. Then a second fleet of `clean_boxes` boxes on the clean supply alone, with two
probe boxes (1 and 6 measurements a second) whose three connections pass through byte-counting
relays: the events of that phase are false triggers, the relays give the bytes a box sends.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from opq.bench.capture_cases import DISTURBANCES, Injected
from opq.bench.machine import machine
from opq.bench.makai_site import (
    CLEAN_SUPPLY,
    ByteCountingRelay,
    MakaiRun,
    ProgressFn,
    endpoints,
    fresh_counters,
    makai_settings,
    percentiles_ms,
    register_boxes,
    wait_subscribed,
)
from opq.box.fleet import Fleet, FleetSettings, fleet_box_ids, fleet_keys
from opq.box.fleet_encoding import MeasurementBatch, encode_batch, measurement_prefix
from opq.box.fleet_options import FleetOptions
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.scenario import scenario_from_dict
from opq.errors import ConfigError
from opq.protocol import generate_keypair, measurement_topic
from opq.store import open_store
from opq.store.models import Event

FIRST_ID: Final = 1000
PROBE_FIRST_ID: Final = 9000
"""The probe boxes (rates 6 and 1), registered without a location: nobody's neighbours."""
TRANSIENT_SPAN_MS: Final = round(CYCLE_DURATION_MS)
"""What a transient counts as for matching and latency: the cycle it starts in [ms]."""
DAY_MS: Final = 86_400_000
FRAMES_PER_MEASUREMENT: Final = 2
"""Topic and payload: each its own ZMTP frame, each CURVE-boxed on its own."""


@dataclass(frozen=True)
class DisturbanceFigures:
    """One injected disturbance and the events that overlap it; times in ms since the epoch."""

    name: str
    kind: str
    shared: bool
    expected: bool
    why: str
    start_ms: int
    end_ms: int
    events: list[int]
    reasons: list[str]
    """The overlapping events' descriptions (why the boxes triggered)."""
    detected: bool
    """An overlapping event holds the disturbed box's waveform."""
    covered: bool
    """That waveform spans the whole disturbance."""
    boxes_asked: int
    boxes_received: int
    to_last_waveform_ms: int | None
    """Disturbance end to the arrival of the last asked box's waveform (`latencies_ms`)."""
    to_completed_ms: int | None
    """Disturbance end to the event stored with every asked box's waveform (`completed_ms`)."""
    window_end_to_completed_ms: int | None
    """The requested window's end (`target_event_end_timestamp_ms`) to `completed_ms`: what the
    boxes and Makai take once the window the thresholds and `post_trigger_ms` set is over."""


@dataclass(frozen=True)
class WireFigures:
    """The bytes one probe box sends (box → Makai) and receives, on the wire above TCP."""

    rate_per_s: int
    seconds: float
    measurements: int
    payload_bytes: int
    """Topic + protobuf of one measurement, from the fleet's encoder."""
    wire_bytes_per_measurement: float
    """Measurement connection, box → Makai, per measurement sent (ZMTP, CURVE and heartbeats included)."""
    bytes_per_day_measurements: float
    bytes_per_day_sent: float
    """All three connections, box → Makai."""
    bytes_per_day_received: float
    """All three connections, Makai → box."""


@dataclass(frozen=True)
class CaptureBenchResult:
    """Every figure of one run of the capture benchmark."""

    boxes: int
    boxes_per_location: int
    rate_per_s: int
    connect_s: float
    disturbances: list[DisturbanceFigures]
    expected: int
    detected: int
    recall_percent: float
    covered: int
    to_completed_ms_p50: float | None
    to_completed_ms_p99: float | None
    to_completed_ms_max: float | None
    to_last_waveform_ms_p50: float | None
    to_last_waveform_ms_p99: float | None
    not_expected_with_event: int
    """Disturbances inside the thresholds that caused an event all the same."""
    unmatched_events: int
    """Events of the first phase overlapping no disturbance."""
    uploaded_box_s: float
    """Σ of the box events' windows in the first phase [box-seconds]."""
    raw_fraction_percent: float
    """uploaded_box_s / (boxes × length of the first phase)."""
    clean_boxes: int
    clean_seconds: float
    clean_box_days: float
    clean_events: int
    events_per_box_day: float
    events_per_box_day_95_upper: float
    """One-sided 95 % upper bound (3 / box-days when there were none)."""
    wire: list[WireFigures]
    acquisition: dict[str, Any]
    machine: dict[str, str | int | float | None] = field(default_factory=dict)


def _timeline(
    disturbances: Sequence[Injected], lead_s: float, gap_s: float
) -> tuple[list[tuple[Injected, float, float]], float]:
    """(disturbance, start [s], end [s]) from the fleet's start, and the end of the last one."""
    placed, at_s = [], lead_s
    for injected in disturbances:
        duration_s = float(injected.spec.get("duration_s", TRANSIENT_SPAN_MS / 1000))
        placed.append((injected, at_s, at_s + duration_s))
        at_s += duration_s + gap_s
    return placed, at_s - gap_s


def _scenarios(placed: list[tuple[Injected, float, float]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fleet's supply with the shared disturbances, and the first box's with all of them."""
    shared = [{**i.spec, "at_s": at_s} for i, at_s, _ in placed if i.shared]
    local = [{**i.spec, "at_s": at_s} for i, at_s, _ in placed if not i.shared]
    return (
        {"supply": CLEAN_SUPPLY, "disturbances": shared},
        {"supply": CLEAN_SUPPLY, "disturbances": shared + local},
    )


def run_capture_bench(
    *,
    boxes: int = 50,
    boxes_per_location: int = 5,
    rate_per_s: int = 6,
    lead_s: float = 15.0,
    gap_s: float = 4.0,
    clean_boxes: int = 500,
    clean_seconds: float = 300.0,
    disturbances: Sequence[Injected] = DISTURBANCES,
    keys_dir: Path,
    progress: ProgressFn = lambda _: None,
) -> CaptureBenchResult:
    """Run both phases; see the module docstring."""
    if rate_per_s < 1 or 60 % rate_per_s:
        raise ConfigError(
            f"rate {rate_per_s}: a box measures 1, 2, 3, 4, 5, 6, 10, 12, ... 60 times a second"
        )
    box_ids = fleet_box_ids(FIRST_ID, max(boxes, clean_boxes))
    probe_ids = fleet_box_ids(PROBE_FIRST_ID, 2)
    keys = fleet_keys(keys_dir, box_ids)
    probe_keys = fleet_keys(keys_dir, probe_ids)
    placed, end_s = _timeline(disturbances, lead_s, gap_s)
    with tempfile.TemporaryDirectory(prefix="opq-bench-capture-") as directory:
        db_url = f"sqlite:///{Path(directory) / 'makai.sqlite3'}"
        register_boxes(db_url, box_ids, keys, boxes_per_location=boxes_per_location)
        register_boxes(db_url, probe_ids, probe_keys, boxes_per_location=0)
        server = generate_keypair()
        settings = makai_settings(neighbours="location")
        with MakaiRun(settings, db_url, server.secret or "") as makai:
            options = FleetOptions(
                *endpoints(settings), server.public, cycles_per_measurement=60 // rate_per_s
            )
            shared, local = _scenarios(placed)
            fleet = Fleet(
                FleetSettings(
                    scenario_from_dict(shared),
                    boxes,
                    options,
                    keys_dir,
                    first_id=FIRST_ID,
                    local_scenario=scenario_from_dict(local),
                    local_boxes=1,
                )
            )
            progress(f"phase 1: {len(placed)} disturbances at {boxes} boxes, {end_s:.0f} s")
            try:
                fleet.start()
                connect_s = wait_subscribed(fleet, lead_s)
                _sleep_until(fleet.start_ms + end_s * 1000 + 2_000)
                _wait_acquired(makai, settings.response_timeout_s + 5)
                first_end_ms = int(time.time() * 1000)
            finally:
                fleet.stop(drain_s=5)
            progress(f"phase 2: {clean_boxes} boxes on a clean supply, {clean_seconds:g} s")
            clean, wire = _clean_phase(makai, keys_dir, clean_boxes, clean_seconds, server.public)
            _wait_acquired(makai, settings.response_timeout_s + 5)
            acquisition = makai.summary()["acquisition"]
        with open_store(db_url) as store:
            events = store.events.list(start_ms=fleet.start_ms, limit=1_000_000)
            windows = {
                e.event_id: {
                    b.box_id: (b.event_start_timestamp_ms, b.event_end_timestamp_ms)
                    for b in store.events.box_events(e.event_id)
                }
                for e in events
            }
    figures = [
        _match(
            injected, fleet.start_ms + round(a_s * 1000), fleet.start_ms + round(b_s * 1000), events, windows
        )
        for injected, a_s, b_s in placed
    ]
    first = [e for e in events if e.target_event_start_timestamp_ms < first_end_ms]
    matched = {event_id for f in figures for event_id in f.events}
    uploaded_ms = sum(
        end - start + CYCLE_DURATION_MS for e in first for start, end in windows[e.event_id].values()
    )
    clean_start_ms, clean_end_ms = clean
    clean_events = [
        e
        for e in events
        if e.target_event_end_timestamp_ms >= clean_start_ms
        and e.target_event_start_timestamp_ms <= clean_end_ms
    ]
    box_days = clean_boxes * (clean_end_ms - clean_start_ms) / DAY_MS
    expected = [f for f in figures if f.expected]
    detected = [f for f in expected if f.detected]
    completed = [float(f.to_completed_ms) for f in detected if f.to_completed_ms is not None]
    last = [float(f.to_last_waveform_ms) for f in detected if f.to_last_waveform_ms is not None]
    return CaptureBenchResult(
        boxes=boxes,
        boxes_per_location=boxes_per_location,
        rate_per_s=rate_per_s,
        connect_s=round(connect_s, 2),
        disturbances=figures,
        expected=len(expected),
        detected=len(detected),
        recall_percent=round(100 * len(detected) / max(1, len(expected)), 1),
        covered=sum(f.covered for f in detected),
        to_completed_ms_p50=percentiles_ms(completed)[0],
        to_completed_ms_p99=percentiles_ms(completed)[1],
        to_completed_ms_max=max(completed, default=None),
        to_last_waveform_ms_p50=percentiles_ms(last)[0],
        to_last_waveform_ms_p99=percentiles_ms(last)[1],
        not_expected_with_event=sum(bool(f.events) for f in figures if not f.expected),
        unmatched_events=sum(e.event_id not in matched for e in first),
        uploaded_box_s=round(uploaded_ms / 1000, 2),
        raw_fraction_percent=round(100 * uploaded_ms / (boxes * (first_end_ms - fleet.start_ms)), 3),
        clean_boxes=clean_boxes,
        clean_seconds=round((clean_end_ms - clean_start_ms) / 1000, 1),
        clean_box_days=round(box_days, 3),
        clean_events=len(clean_events),
        events_per_box_day=round(len(clean_events) / box_days, 3),
        events_per_box_day_95_upper=round(_poisson_upper_95(len(clean_events)) / box_days, 3),
        wire=wire,
        acquisition=acquisition,
        machine=machine(),
    )


def _sleep_until(wall_ms: float) -> None:
    while (remaining_s := wall_ms / 1000 - time.time()) > 0:
        time.sleep(min(remaining_s, 0.5))


def _wait_acquired(makai: MakaiRun, timeout_s: float) -> None:
    """Wait until no event is waiting for its boxes (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and makai.summary()["acquisition"].get("in_progress", 1):
        time.sleep(0.2)


def _match(
    injected: Injected,
    start_ms: int,
    end_ms: int,
    events: list[Event],
    windows: dict[int, dict[str, tuple[int, int]]],
) -> DisturbanceFigures:
    """The events overlapping one disturbance, and whether and when they hold the disturbed box's data."""
    disturbed = str(FIRST_ID)
    overlapping = sorted(
        (
            e
            for e in events
            if e.target_event_start_timestamp_ms <= end_ms and e.target_event_end_timestamp_ms >= start_ms
        ),
        key=lambda e: e.event_id,
    )
    holding = [e for e in overlapping if disturbed in windows[e.event_id]]
    covered = any(
        windows[e.event_id][disturbed][0] <= start_ms
        and windows[e.event_id][disturbed][1] + CYCLE_DURATION_MS >= end_ms
        for e in holding
    )
    complete = bool(holding) and all(set(e.boxes_triggered) <= set(e.boxes_received) for e in overlapping)
    to_last = max((max(e.latencies_ms) for e in overlapping if e.latencies_ms), default=None)
    last = max(overlapping, key=lambda e: e.completed_ms or 0, default=None)
    to_completed = None if last is None else last.completed_ms
    return DisturbanceFigures(
        name=injected.name,
        kind=str(injected.spec["kind"]),
        shared=injected.shared,
        expected=injected.expected,
        why=injected.why,
        start_ms=start_ms,
        end_ms=end_ms,
        events=[e.event_id for e in overlapping],
        reasons=[e.description for e in overlapping],
        detected=bool(holding),
        covered=covered,
        boxes_asked=len({b for e in overlapping for b in e.boxes_triggered}),
        boxes_received=len({b for e in overlapping for b in e.boxes_received}),
        to_last_waveform_ms=None if to_last is None or not complete else to_last - end_ms,
        to_completed_ms=None if not to_completed or not complete else to_completed - end_ms,
        window_end_to_completed_ms=None
        if last is None or not to_completed or not complete
        else to_completed - last.target_event_end_timestamp_ms,
    )


def _clean_phase(
    makai: MakaiRun, keys_dir: Path, boxes: int, seconds: float, server_public: str
) -> tuple[tuple[int, int], list[WireFigures]]:
    """The clean fleet and the two probe boxes through relays; (start, end) of the window, wire figures."""
    settings = makai.settings
    targets = [settings.measurement_port, settings.command_port, settings.response_port]
    clean = scenario_from_dict({"supply": CLEAN_SUPPLY})
    with ByteCountingRelay(targets * 2) as relay:
        fleets = [
            Fleet(FleetSettings(clean, boxes, FleetOptions(*endpoints(settings), server_public), keys_dir))
        ]
        for probe, rate in enumerate((6, 1)):
            m, c, r = (f"tcp://127.0.0.1:{port}" for port in relay.ports[3 * probe : 3 * probe + 3])
            options = FleetOptions(m, c, r, server_public, cycles_per_measurement=60 // rate)
            fleets.append(
                Fleet(
                    FleetSettings(clean, 1, options, keys_dir, first_id=PROBE_FIRST_ID + probe, processes=1)
                )
            )
        try:
            for fleet in fleets:
                fleet.start()
            for fleet in fleets:
                wait_subscribed(fleet, 120.0)
            time.sleep(3.0)  # the handshakes are over; what follows is the steady state
            sent_a = [fresh_counters(f).measurements_sent for f in fleets[1:]]
            up_a, down_a = relay.counts()
            start_ms, started_s = int(time.time() * 1000), time.monotonic()
            while time.monotonic() - started_s < seconds:
                for fleet in fleets:
                    fleet.counters()  # read the statuses as they come, or they pile up and go stale
                time.sleep(0.5)
            sent_b = [fresh_counters(f).measurements_sent for f in fleets[1:]]
            up_b, down_b = relay.counts()
            end_ms, elapsed_s = int(time.time() * 1000), time.monotonic() - started_s
        finally:
            for fleet in fleets:
                fleet.stop(drain_s=2)
    wire = []
    for probe, rate in enumerate((6, 1)):
        span = slice(3 * probe, 3 * probe + 3)
        up = [b - a for a, b in zip(up_a[span], up_b[span], strict=True)]
        down = [b - a for a, b in zip(down_a[span], down_b[span], strict=True)]
        sent = sent_b[probe] - sent_a[probe]
        per_day = DAY_MS / 1000 / elapsed_s
        wire.append(
            WireFigures(
                rate_per_s=rate,
                seconds=round(elapsed_s, 1),
                measurements=sent,
                payload_bytes=_payload_bytes(str(PROBE_FIRST_ID + probe)),
                wire_bytes_per_measurement=round(up[0] / max(1, sent), 1),
                bytes_per_day_measurements=round(up[0] * per_day),
                bytes_per_day_sent=round(sum(up) * per_day),
                bytes_per_day_received=round(sum(down) * per_day),
            )
        )
    return (start_ms, end_ms), wire


def _payload_bytes(box_id: str) -> int:
    """Topic + protobuf of one measurement with all four metrics, as the fleet encodes it."""
    stats = np.array([[[119.8, 120.2, 120.0], [59.99, 60.01, 60.0], [0.015, 0.017, 0.016], [1.0, 2.0, 1.5]]])
    batch = MeasurementBatch(np.array([0]), int(time.time() * 1000), stats)
    payload = encode_batch(batch, [measurement_prefix(box_id)], [box_id])[0]
    return len(measurement_topic(box_id)) + len(payload)


def _poisson_upper_95(count: int) -> float:
    """One-sided 95 % upper bound of a Poisson mean given `count` events (3.0 for none)."""
    if count == 0:
        return 3.0
    # Wilson–Hilferty approximation of the chi-square quantile: within 1 % from one event up.
    k = count + 1
    return float(k * (1 - 1 / (9 * k) + 1.645 / (3 * np.sqrt(k))) ** 3)
