"""A throwaway Makai site for the Makai benchmarks: a fleet's boxes in a SQLite store, Makai on free ports."""

from __future__ import annotations

import contextlib
import math
import os
import selectors
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from opq.box.fleet import Fleet, FleetCounters
from opq.config import MakaiSettings, RetentionSettings
from opq.domain.constants import DEFAULT_CALIBRATION_COUNTS_PER_V
from opq.makai.service import Makai, MakaiConfig
from opq.protocol import KeyPair
from opq.store import open_store
from opq.store.models import Box, Location

ProgressFn = Callable[[str], None]

"""The fleet's calibration constant [counts/V], registered with each box."""
CLEAN_SUPPLY: Final[dict[str, Any]] = {
    "noise_v_rms": 0.3,
    "seed": 1,
    "drift": {"amplitude_v": 0.6, "period_s": 600.0},
    "wander": {"amplitude_hz": 0.02, "period_s": 30.0, "shape": "random"},
    "harmonics": [
        {"order": 3, "percent": 0.8},
        {"order": 5, "percent": 1.2, "phase_deg": 180.0},
        {"order": 7, "percent": 0.6},
    ],
}
"""scenarios/clean.toml's supply: 0.3 V noise, ±0.6 V drift, ±0.02 Hz wander, THD ≈ 1.6 %."""


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (a race with other programs is possible, and unlikely)."""
    probes = [socket.socket() for _ in range(count)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    ports = [int(probe.getsockname()[1]) for probe in probes]
    for probe in probes:
        probe.close()
    return ports


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU time of a process, all its threads [s] (Linux /proc); NaN if it is gone."""
    if pid is None:
        return math.nan
    try:
        with Path(f"/proc/{pid}/stat").open(encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int | None) -> int:
    """File descriptors a process holds now; 0 if it is gone."""
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0


def location_of(index: int, boxes_per_location: int) -> str | None:
    """The location slug of the fleet's `index`-th box: `loc-K` for consecutive groups, None for 0."""
    return None if boxes_per_location <= 0 else f"loc-{index // boxes_per_location}"


def register_boxes(
    db_url: str, box_ids: Sequence[str], keys: Sequence[KeyPair], *, boxes_per_location: int
) -> None:
    """Create or migrate the store and register the boxes with their public keys and locations.

    Consecutive boxes share a location (`boxes_per_location` each; 0: no locations), so that
    Makai's neighbourhoods ask a triggering box's location-mates for their data too.
    """
    with open_store(db_url, upgrade=True) as store:
        known = {box.box_id for box in store.boxes.list()}
        slugs = {location.slug for location in store.locations.list()}
        for index, (box_id, pair) in enumerate(zip(box_ids, keys, strict=True)):
            if box_id in known:
                continue
            location = location_of(index, boxes_per_location)
            if location is not None and location not in slugs:
                store.locations.add(Location(location, -157.8, 21.3, f"bench location {location}"))
                slugs.add(location)
            store.boxes.add(
                Box(
                    box_id,
                    f"fleet box {box_id}",
                    DEFAULT_CALIBRATION_COUNTS_PER_V,
                    location=location,
                    location_start_time_ms=0 if location else None,
                    public_key=pair.public,
                )
            )


def makai_settings(**overrides: Any) -> MakaiSettings:
    """Makai on 127.0.0.1, every port free, health on a port of its own choosing."""
    names = (
        "measurement_port",
        "command_port",
        "response_port",
        "live_port",
        "event_port",
        "capture_port",
        "relay_port",
    )
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    return MakaiSettings(box_host="127.0.0.1", health_port=0, **{**ports, **overrides})


def endpoints(settings: MakaiSettings) -> tuple[str, str, str]:
    """The box-facing endpoints (measurements, commands, responses) a fleet connects to."""
    host = settings.box_host
    return (
        f"tcp://{host}:{settings.measurement_port}",
        f"tcp://{host}:{settings.command_port}",
        f"tcp://{host}:{settings.response_port}",
    )


class MakaiRun:
    """Makai's processes (forked from this one) and its watcher thread, as a context manager.

    Fork it before this process opens ZeroMQ contexts or database connections: the children
    inherit the memory of the parent.
    """

    def __init__(self, settings: MakaiSettings, db_url: str, secret_key: str) -> None:
        self.settings = settings
        self.makai = Makai(MakaiConfig(settings, db_url, RetentionSettings(), secret_key))
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self.makai.run, args=(self._stop,), name="bench-makai")

    def __enter__(self) -> MakaiRun:
        self.makai.start()
        self._watcher.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the processes (each writes what it holds); idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._watcher.join()
        self.makai.stop()

    def summary(self) -> dict[str, Any]:
        """Makai's health document (what `GET /` on its health port answers)."""
        return self.makai.summary()

    def pids(self) -> dict[str, int | None]:
        """The process id of each Makai role."""
        return {role: process["pid"] for role, process in self.summary()["processes"].items()}

    def wait_ingested(self, sent: int, timeout_s: float) -> bool:
        """Wait until ingest has received `sent` measurements and written its buffer (or it stops moving)."""
        deadline = time.monotonic() + timeout_s
        last, still_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            ingest = self.summary()["ingest"]
            received = int(ingest.get("received", 0))
            if received >= sent and int(ingest.get("buffered", 1)) == 0:
                return True
            if received != last:
                last, still_since = received, time.monotonic()
            elif time.monotonic() - still_since > 10.0:  # nothing arrived for 10 s: the rest is lost
                return False
            time.sleep(0.2)
        return False


def wait_subscribed(fleet: Fleet, timeout_s: float) -> float:
    """Wait until Makai has subscribed to every box of the fleet; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        counters = fleet.counters()
        if counters.processes_failed:
            raise RuntimeError(f"a fleet process failed: {[s.error for s in fleet.statuses()]}")
        if counters.boxes_subscribed >= fleet.settings.boxes:
            break
        time.sleep(0.1)
    return time.monotonic() - started


def fresh_counters(fleet: Fleet, timeout_s: float = 5.0) -> FleetCounters:
    """The fleet's counters once every process has reported after this call (they report every second).

    A status that waited in the queue is stale: the statuses are large (two histograms), so an
    unread queue fills its pipe and holds the workers' newer ones back.
    """
    asked_s = time.monotonic()
    deadline = asked_s + timeout_s
    counters = fleet.counters()
    while time.monotonic() < deadline and not all(s.monotonic_s > asked_s for s in fleet.statuses()):
        time.sleep(0.02)
        counters = fleet.counters()
    return counters


def sqlite_path(db_url: str) -> Path:
    """The file of a sqlite:/// URL."""
    prefix = "sqlite:///"
    if not db_url.startswith(prefix):
        raise ValueError(f"the Makai benchmarks use the embedded database, not {db_url!r}")
    return Path(db_url[len(prefix) :])


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the store's SQLite file, for counting and probing."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    connection.execute("PRAGMA query_only=1")
    return connection


def percentiles_ms(values: Sequence[float]) -> tuple[float | None, float | None]:
    """p50 and p99 of some durations [ms], rounded to 0.1 ms; (None, None) if there are none."""
    if not values:
        return None, None
    p50, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 99])
    return round(float(p50), 1), round(float(p99), 1)


class ByteCountingRelay:
    """Plain TCP relays on 127.0.0.1 in front of some endpoints, counting the bytes each way.

    One thread serves them all; meant for a handful of low-rate connections (a probe box's),
    whose bytes on the wire (ZMTP and CURVE included, TCP/IP headers not) it measures.
    """

    def __init__(self, targets: Sequence[int]) -> None:
        self._targets = list(targets)
        self._selector = selectors.DefaultSelector()
        self.ports: list[int] = []
        self.up = [0] * len(targets)
        """Bytes from the connecting side (the box) to the target (Makai), per relay."""
        self.down = [0] * len(targets)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        for index in range(len(targets)):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            self.ports.append(int(listener.getsockname()[1]))
            self._selector.register(listener, selectors.EVENT_READ, ("accept", index, None))
        self._thread = threading.Thread(target=self._serve, name="bench-relay", daemon=True)

    def __enter__(self) -> ByteCountingRelay:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def counts(self) -> tuple[list[int], list[int]]:
        """Bytes so far: (up, down), one entry per relay."""
        with self._lock:
            return list(self.up), list(self.down)

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.1):
                action, index, peer = key.data
                if action == "accept":
                    client, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    upstream = socket.create_connection(("127.0.0.1", self._targets[index]))
                    self._selector.register(client, selectors.EVENT_READ, ("up", index, upstream))
                    self._selector.register(upstream, selectors.EVENT_READ, ("down", index, client))
                    continue
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(1 << 16)
                    if data:
                        peer.sendall(data)
                except OSError:
                    data = b""
                if not data:
                    for end in (source, peer):
                        with contextlib.suppress(KeyError, ValueError):
                            self._selector.unregister(end)
                        end.close()
                    continue
                with self._lock:
                    (self.up if action == "up" else self.down)[index] += len(data)
