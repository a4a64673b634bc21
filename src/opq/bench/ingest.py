"""The ingest benchmark: a fleet against Makai on CURVE sockets into SQLite; rate stored, loss, lag and CPU.

The fleet's boxes are registered (ids, public keys, locations) in a new SQLite store, Makai's
three processes are forked from this one, and the fleet's worker processes are spawned. Once
Makai has subscribed to every box, and a warm-up later, the benchmark measures for `seconds`:
measurements stored (rows counted in the database at both ends), sent (the fleet's counters) and
received (Makai's health), the lag from a measurement's box timestamp to the moment it is visible
in the database (probed, see `LagProbe`), and the CPU of every process (/proc/PID/stat). Then the
fleet stops measuring, sends what it queued, Makai writes what it holds, and the loss is counted.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from opq.bench.machine import machine
from opq.bench.makai_site import (
    CLEAN_SUPPLY,
    MakaiRun,
    ProgressFn,
    endpoints,
    fresh_counters,
    makai_settings,
    open_fds,
    percentiles_ms,
    process_cpu_s,
    read_only,
    register_boxes,
    sqlite_path,
    wait_subscribed,
)
from opq.box.fleet import Fleet, FleetCounters, FleetSettings, fleet_box_ids, fleet_keys, histogram_percentile
from opq.box.fleet_options import FleetOptions, ShardStatus
from opq.box.scenario import scenario_from_dict
from opq.errors import ConfigError
from opq.protocol import generate_keypair

FIRST_ID: Final = 1000
PROBE_BOXES: Final = 64
"""Boxes whose measurements the lag probe follows, spread evenly over the fleet."""
PROBE_INTERVAL_S: Final = 0.05
DRAIN_S: Final = 60.0
"""After measuring, the fleet gets this long to send what it queued."""
CATCH_UP_S: Final = 120.0
"""And Makai this long to take in and write what was sent."""


@dataclass(frozen=True)
class ProcessCpu:
    """One process's CPU over the measured interval [CPU seconds per wall second; 1.0 = a core]."""

    name: str
    pid: int | None
    cores: float


@dataclass(frozen=True)
class IngestBenchResult:
    """Every figure of one run of the ingest benchmark; rates per second over the measured interval."""

    boxes: int
    rate_per_s: int
    """Measurements a box sends a second."""
    fleet_processes: int
    boxes_per_location: int
    neighbours: str
    seconds: float
    """Length of the measured interval [s]."""
    keys_s: float
    register_s: float
    connect_s: float
    """From starting the fleet to Makai subscribed to every box (or the timeout) [s]."""
    boxes_subscribed: int
    expected_per_s: float
    sent_per_s: float
    """Sent by the fleet (its counters)."""
    received_per_s: float
    """Received by ingest (its health, reported every 2 s: approximate)."""
    stored_per_s: float
    """Rows added to the measurements table (counted at both ends of the interval)."""
    lag_ms_p50: float | None
    lag_ms_p99: float | None
    lag_ms_max: float | None
    lag_samples: int
    """Measurements of the probed boxes made during the interval and seen stored (see `LagProbe`)."""
    lag_unseen: int
    """Measurements of the probed boxes made during the interval but never seen stored by the probe."""
    makai_lag_ms: dict[str, float | None]
    """Makai's own figure at the end of the interval (its newest 200,000 sampled measurements)."""
    send_lateness_ms_p50: float
    send_lateness_ms_p99: float
    """The fleet's send time − measurement timestamp, over the interval."""
    buffered_max: int
    """Most measurements waiting for the database, sampled every second of the interval."""
    fleet_queued_max: int
    """Most measurements queued in the fleet's boxes (Makai not taking them fast enough)."""
    sent: int
    received: int
    stored: int
    lost: int
    """Sent − stored, over the whole run (after the drain)."""
    dropped: dict[str, int]
    """Makai's drops by reason, over the whole run."""
    fleet_unsent: int
    fleet_dropped: int
    duplicates_in_store: int
    caught_up: bool
    """Whether Makai had taken in everything sent before it was stopped."""
    cpu: list[ProcessCpu]
    cpu_cores_fleet: float
    cpu_cores_makai: float
    cpu_cores_total: float
    ingest_fds: int
    machine: dict[str, str | int | float | None] = field(default_factory=dict)


class LagProbe:
    """When the measurements of some boxes become visible in the database.

    Every `PROBE_INTERVAL_S` it reads the probed boxes' rows newer than the newest it has seen of
    each; a row first seen at poll time P has the lag P − its timestamp (box timestamp to stored),
    an overestimate by at most the poll interval (50 ms). Only rows stamped in [start_ms, end_ms)
    count.
    """

    def __init__(self, db: sqlite3.Connection, box_ids: list[str], start_ms: int) -> None:
        self._db = db
        self._box_ids = box_ids
        self.start_ms = start_ms
        self.end_ms: int | None = None
        self._newest = dict.fromkeys(box_ids, start_ms - 1)
        self.lags_ms: list[float] = []
        marks = ",".join("?" * len(box_ids))
        self._query = (
            f"SELECT box_id, timestamp_ms FROM measurements WHERE box_id IN ({marks}) AND timestamp_ms > ?"
        )

    def poll(self) -> None:
        """Read the probed boxes' new rows and note their lags."""
        rows = self._db.execute(self._query, [*self._box_ids, min(self._newest.values())]).fetchall()
        seen_ms = time.time() * 1000
        end_ms = self.end_ms
        for box_id, timestamp_ms in rows:
            if timestamp_ms <= self._newest[box_id]:
                continue
            self._newest[box_id] = timestamp_ms
            if end_ms is None or timestamp_ms < end_ms:
                self.lags_ms.append(seen_ms - timestamp_ms)

    def complete(self) -> bool:
        """Whether every probed box has a row stamped at or after the end of the interval."""
        return self.end_ms is not None and min(self._newest.values()) >= self.end_ms

    def unseen(self, interval_ms: float) -> int:
        """Measurements of the probed boxes due in the interval but not seen stored (approximate)."""
        if self.end_ms is None:
            return 0
        expected = len(self._box_ids) * (self.end_ms - self.start_ms) / interval_ms
        return max(0, round(expected) - len(self.lags_ms))


@dataclass(frozen=True)
class _Mark:
    at_s: float
    cpu_s: dict[str, float]
    stored: int
    ingest: dict[str, Any]
    statuses: list[ShardStatus]
    counters: FleetCounters


def run_ingest_bench(
    *,
    boxes: int,
    rate_per_s: int = 6,
    seconds: float = 60.0,
    keys_dir: Path,
    processes: int | None = None,
    boxes_per_location: int = 10,
    neighbours: str = "region",
    warmup_s: float = 5.0,
    connect_timeout_s: float = 180.0,
    progress: ProgressFn = lambda _: None,
) -> IngestBenchResult:
    """Run `boxes` boxes sending `rate_per_s` measurements a second into Makai; measure for `seconds`."""
    if rate_per_s < 1 or 60 % rate_per_s:
        raise ConfigError(
            f"--rate {rate_per_s}: a box measures 1, 2, 3, 4, 5, 6, 10, 12, ... 60 times a second"
        )
    with tempfile.TemporaryDirectory(prefix="opq-bench-ingest-") as directory:
        db_url = f"sqlite:///{Path(directory) / 'makai.sqlite3'}"
        started = time.monotonic()
        box_ids = fleet_box_ids(FIRST_ID, boxes)
        keys = fleet_keys(keys_dir, box_ids)
        keys_s = time.monotonic() - started
        progress(f"{boxes} key pairs in {keys_s:.1f} s; registering the boxes")
        started = time.monotonic()
        register_boxes(db_url, box_ids, keys, boxes_per_location=boxes_per_location)
        register_s = time.monotonic() - started
        server = generate_keypair()
        settings = makai_settings(neighbours=neighbours)
        with MakaiRun(settings, db_url, server.secret or "") as makai:
            options = FleetOptions(
                *endpoints(settings), server.public, cycles_per_measurement=60 // rate_per_s
            )
            fleet = Fleet(
                FleetSettings(
                    scenario_from_dict({"supply": CLEAN_SUPPLY}),
                    boxes,
                    options,
                    keys_dir,
                    first_id=FIRST_ID,
                    processes=processes,
                )
            )
            progress(f"registered in {register_s:.1f} s; starting {fleet.processes} fleet processes")
            try:
                fleet.start()
                connect_s = wait_subscribed(fleet, connect_timeout_s)
                subscribed = fleet.counters().boxes_subscribed
                progress(f"{subscribed} boxes subscribed after {connect_s:.1f} s; measuring {seconds:g} s")
                time.sleep(warmup_s)
                figures = _measure(fleet, makai, sqlite_path(db_url), seconds, 1000 / rate_per_s)
            finally:
                progress("draining the fleet")
                final = fleet.stop(drain_s=DRAIN_S)
            caught_up = makai.wait_ingested(final.measurements_sent, CATCH_UP_S)
            makai.stop()
            health = makai.summary()["ingest"]
        with read_only(sqlite_path(db_url)) as db:
            stored_total = int(db.execute("SELECT count(*) FROM measurements").fetchone()[0])
        db.close()
    return IngestBenchResult(
        boxes=boxes,
        rate_per_s=rate_per_s,
        fleet_processes=fleet.processes,
        boxes_per_location=boxes_per_location,
        neighbours=neighbours,
        keys_s=round(keys_s, 2),
        register_s=round(register_s, 2),
        connect_s=round(connect_s, 2),
        boxes_subscribed=subscribed,
        expected_per_s=float(boxes * rate_per_s),
        sent=final.measurements_sent,
        received=int(health.get("received", 0)),
        stored=stored_total,
        lost=final.measurements_sent - stored_total,
        dropped={str(k): int(v) for k, v in health.get("dropped", {}).items()},
        fleet_unsent=final.measurements_queued,
        fleet_dropped=final.measurements_dropped,
        duplicates_in_store=int(health.get("duplicates_in_store", 0)),
        caught_up=caught_up,
        machine=machine(),
        **figures,
    )


def _mark(fleet: Fleet, makai: MakaiRun, db: sqlite3.Connection, pids: dict[str, int | None]) -> _Mark:
    at_s = time.monotonic()
    cpu = {name: process_cpu_s(pid) for name, pid in pids.items()}
    stored = int(db.execute("SELECT count(*) FROM measurements").fetchone()[0])
    counters = fresh_counters(fleet)
    return _Mark(at_s, cpu, stored, makai.summary()["ingest"], fleet.statuses(), counters)


def _pids(fleet: Fleet, makai: MakaiRun) -> dict[str, int | None]:
    pids: dict[str, int | None] = {f"fleet-{i}": pid for i, pid in enumerate(fleet.pids())}
    pids.update({f"makai-{role}": pid for role, pid in makai.pids().items()})
    pids["bench (makai parent, probe)"] = os.getpid()
    return pids


def _measure(
    fleet: Fleet, makai: MakaiRun, db_path: Path, seconds: float, interval_ms: float
) -> dict[str, Any]:
    """The figures of the measured interval."""
    pids = _pids(fleet, makai)
    step = max(1, fleet.settings.boxes // PROBE_BOXES)
    probed = fleet.box_ids[::step][:PROBE_BOXES]
    with read_only(db_path) as db:
        start_ms = int(time.time() * 1000)
        probe = LagProbe(db, probed, start_ms)
        first = _mark(fleet, makai, db, pids)
        buffered_max = queued_max = 0
        next_sample = time.monotonic()
        end_s = first.at_s + seconds
        while time.monotonic() < end_s:
            probe.poll()
            if time.monotonic() >= next_sample:
                next_sample += 1.0
                buffered_max = max(buffered_max, int(makai.summary()["ingest"].get("buffered", 0)))
                queued_max = max(queued_max, fleet.counters().measurements_queued)
            time.sleep(PROBE_INTERVAL_S)
        probe.end_ms = int(time.time() * 1000)
        last = _mark(fleet, makai, db, pids)
        # Rows stamped in the interval but stored after it still count: follow them a while.
        deadline = time.monotonic() + 30
        while not probe.complete() and time.monotonic() < deadline:
            probe.poll()
            time.sleep(PROBE_INTERVAL_S)
    db.close()
    elapsed_s = last.at_s - first.at_s
    cpu = [
        ProcessCpu(name, pids[name], round((last.cpu_s[name] - first.cpu_s[name]) / elapsed_s, 3))
        for name in pids
    ]
    p50, p99 = percentiles_ms(probe.lags_ms)
    send = last.counters.send_lateness - first.counters.send_lateness
    return {
        "seconds": round(elapsed_s, 2),
        "sent_per_s": round(_shard_rate(first.statuses, last.statuses), 1),
        "received_per_s": round(
            (int(last.ingest.get("received", 0)) - int(first.ingest.get("received", 0))) / elapsed_s, 1
        ),
        "stored_per_s": round((last.stored - first.stored) / elapsed_s, 1),
        "lag_ms_p50": p50,
        "lag_ms_p99": p99,
        "lag_ms_max": round(max(probe.lags_ms), 1) if probe.lags_ms else None,
        "lag_samples": len(probe.lags_ms),
        "lag_unseen": probe.unseen(interval_ms),
        "makai_lag_ms": dict(last.ingest.get("lag_ms", {})),
        "send_lateness_ms_p50": histogram_percentile(send, 50),
        "send_lateness_ms_p99": histogram_percentile(send, 99),
        "buffered_max": buffered_max,
        "fleet_queued_max": queued_max,
        "cpu": cpu,
        "cpu_cores_fleet": round(sum(c.cores for c in cpu if c.name.startswith("fleet")), 3),
        "cpu_cores_makai": round(sum(c.cores for c in cpu if c.name.startswith("makai")), 3),
        "cpu_cores_total": round(sum(c.cores for c in cpu), 3),
        "ingest_fds": open_fds(pids.get("makai-ingest")),
    }


def _shard_rate(before: list[ShardStatus], after: list[ShardStatus]) -> float:
    """Measurements sent a second, each shard over its own reporting interval, summed."""
    by_shard = {s.shard: s for s in before}
    total = 0.0
    for status in after:
        earlier = by_shard.get(status.shard)
        if earlier is not None and status.monotonic_s > earlier.monotonic_s:
            total += (status.measurements_sent - earlier.measurements_sent) / (
                status.monotonic_s - earlier.monotonic_s
            )
    return total
