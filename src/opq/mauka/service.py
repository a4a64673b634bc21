"""`opq mauka`: one loop analysing announced and missed events, watching outages, keeping stats and GC."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any, Final

import zmq

from opq.clock import wall_clock_ms
from opq.config import MaukaSettings
from opq.errors import Conflict, InvalidValue, NotFound, OpqError, ProtocolError, StorageError
from opq.mauka.analysis import PluginCounters, analyze_event
from opq.mauka.frequency_incidents import FrequencyStreamIncidents, stream_limits
from opq.mauka.frequency_stream import FrequencyStreamTracker
from opq.mauka.lifecycle import collect_garbage
from opq.mauka.outage import OutageTracker
from opq.mauka.outage_incidents import OutageIncidents
from opq.mauka.plugin import Plugin
from opq.mauka.stats import SystemStatsCollector
from opq.protocol.columns import MeasurementColumns, decode_measurements
from opq.protocol.health_http import HealthServer
from opq.protocol.internal import EVENT_TOPIC, parse_event_announcement, parse_live_measurements
from opq.store import Store

logger = logging.getLogger(__name__)

OUTAGE_HEARTBEAT_S: Final = 5.0
"""Longest time between two outage checks [s] (shorter when outage_after_s is short)."""
GC_INTERVAL_S: Final = 60.0
MAX_ATTEMPTS: Final = 3
"""An event whose analysis raises (other than the database being unavailable) this often is given up."""
LIVE_BATCH: Final = 20_000
"""Measurements (about) taken from the live stream per pass, so announcements are never starved."""
FREQUENCY_CHECK_S: Final = 1.0
"""How often variations found in the measurements are closed for silent boxes and stored [s]."""
STALLED_S: Final = 30.0
"""Health says not ok when the loop has not come round for this long [s]."""


class Mauka:
    """The Mauka service over one store: call `start`, then `run` until its stop event, then `close`.

    Event ids arrive on a SUB socket (Makai's announcements) and from the store (`unanalyzed`, at start
    and every `catch_up_interval_s`, since PUB/SUB loses what is sent while nobody listens); they are
    analysed one at a time in arrival order, and the sockets are drained between two analyses. The live
    measurement stream feeds the outage tracker; the store is asked before an outage is declared or
    kept open, because the stream can drop messages too.
    """

    def __init__(
        self,
        store: Store,
        settings: MaukaSettings,
        plugins: Sequence[Plugin],
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        health_host: str = "127.0.0.1",
    ) -> None:
        self.store = store
        self.settings = settings
        self.plugins = list(plugins)
        self._clock_ms = clock_ms
        self.counters = PluginCounters([p.name for p in self.plugins])
        self.tracker = OutageTracker(int(settings.outage_after_s * 1000))
        self.outages = OutageIncidents(store, self.tracker)
        self.frequency: FrequencyStreamIncidents | None = None
        if settings.frequency_from_measurements:
            self.frequency = FrequencyStreamIncidents(
                store,
                FrequencyStreamTracker(stream_limits(settings)),
                round(settings.frequency_settle_s * 1000),
            )
        self.stats = SystemStatsCollector(store)
        # /status is where the original's StatusPlugin answered.
        pages = {"/": self.summary, "/status": self.summary}
        self.health = HealthServer(health_host, settings.health_port, pages, name="mauka")
        self._queue: OrderedDict[int, str] = OrderedDict()  # event id → "announced" or "catch-up"
        self._attempts: dict[int, int] = {}
        self._given_up: set[int] = set()
        self._latencies_ms: deque[int] = deque(maxlen=1_000)
        self.figures: dict[str, Any] = {
            "events_analyzed": 0,
            "events_failed": 0,
            "measurements": 0,
            "malformed_messages": 0,
            "task_failures": {},
        }
        self.last_event: dict[str, Any] | None = None
        self.last_gc: dict[str, Any] | None = None
        self._snapshot: dict[str, Any] = {}
        self._loop_s = time.monotonic()
        self._started_ms = clock_ms()
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None

    def start(self) -> None:
        """Subscribe, pick up what was missed while Mauka was down, and start answering health."""
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._context = context
        self._events = context.socket(zmq.SUB)
        self._events.setsockopt(zmq.SUBSCRIBE, EVENT_TOPIC)
        self._events.connect(self.settings.event_endpoint)
        self._live = context.socket(zmq.SUB)
        self._live.setsockopt(zmq.RCVHWM, 200_000)
        self._live.setsockopt(zmq.SUBSCRIBE, b"")
        self._live.connect(self.settings.live_endpoint)
        # Subscribed first, then caught up: an event announced in between is in one or the other.
        self._guarded("outages", self.outages.seed)
        self._guarded("catch-up", self.catch_up)
        self._publish_snapshot()
        self.health.start()
        logger.info(
            "mauka up: %d plugins, events from %s, measurements from %s, health on port %d",
            len(self.plugins),
            self.settings.event_endpoint,
            self.settings.live_endpoint,
            self.health.port,
        )

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set."""
        poller = zmq.Poller()
        poller.register(self._events, zmq.POLLIN)
        poller.register(self._live, zmq.POLLIN)
        settings = self.settings
        heartbeat_s = min(OUTAGE_HEARTBEAT_S, settings.outage_after_s / 4)
        timers: list[tuple[str, float, Callable[[], None]]] = [
            ("catch-up", settings.catch_up_interval_s, self.catch_up),
            ("outages", heartbeat_s, lambda: self.outages.check(self._clock_ms())),
            ("stats", settings.stats_interval_s, lambda: self.put_stats(self._clock_ms())),
            ("gc", GC_INTERVAL_S, lambda: self.collect_garbage(self._clock_ms())),
        ]
        if self.frequency is not None:
            frequency = self.frequency
            timers.append(("frequency", FREQUENCY_CHECK_S, lambda: frequency.check(self._clock_ms())))
        now = time.monotonic()
        due = {name: now + interval for name, interval, _ in timers}
        due["stats"] = now  # a fresh document as soon as Mauka is up
        while not stop.is_set():
            poller.poll(0 if self._queue else 100)
            self._guarded("announcements", self._drain_announcements)
            self._guarded("live", self._drain_live)
            now = time.monotonic()
            for name, interval, task in timers:
                if now >= due[name]:
                    due[name] = now + interval
                    self._guarded(name, task)
            if self._queue:
                self._analyze_next()
            self._loop_s = time.monotonic()
            self._publish_snapshot()

    def close(self) -> None:
        """Store the frequency variations held or still open, stop health and close the sockets."""
        if self.frequency is not None:
            self._guarded("frequency", self.frequency.close)
        self.health.stop()
        if self._context is not None:
            self._events.close(linger=0)
            self._live.close(linger=0)
            self._context.term()
            self._context = None
        logger.info("mauka stopped")

    # --- events -----------------------------------------------------------------------------------

    def catch_up(self) -> None:
        """Queue the completed events that no analysis has finished with."""
        for event_id in self.store.events.unanalyzed(limit=1_000):
            if event_id not in self._given_up:
                self._queue.setdefault(event_id, "catch-up")

    def _drain_announcements(self) -> None:
        while (frames := _receive(self._events)) is not None:
            try:
                event_id = parse_event_announcement(frames)
            except ProtocolError as err:
                self.figures["malformed_messages"] += 1
                logger.warning("ignoring an event announcement: %s", err)
                continue
            self._queue.setdefault(event_id, "announced")

    def _analyze_next(self) -> None:
        event_id, source = self._queue.popitem(last=False)
        if event_id in self._given_up:
            return
        try:
            event = self.store.events.get(event_id)
            if self.store.events.analysis(event_id) is not None:
                return  # told twice, or analysed by `opq mauka reanalyze`
            result = analyze_event(
                self.store, event_id, self.plugins, self._clock_ms(), counters=self.counters
            )
        except NotFound as err:
            logger.warning("event %d is gone before it was analysed: %s", event_id, err)
            return
        except StorageError as err:
            if isinstance(err, InvalidValue | Conflict):  # refused, not unavailable: trying again won't help
                self._failed(event_id, err)
            else:  # the database: the next catch-up brings the event back
                self.figures["events_failed"] += 1
                logger.error("event %d not analysed, the database failed: %s", event_id, err)
            return
        except Exception as err:  # a bug must not stop the analysis of later events
            logger.exception("analysis of event %d failed", event_id)
            self._failed(event_id, err)
            return
        done_ms = self._clock_ms()
        latency_ms = None if event.completed_ms is None else done_ms - event.completed_ms
        if latency_ms is not None and source == "announced":
            self._latencies_ms.append(latency_ms)
        self.figures["events_analyzed"] += 1
        self._attempts.pop(event_id, None)
        self.last_event = {
            "event_id": event_id,
            "source": source,
            "analyzed_ms": done_ms,
            "incidents": len(result.incident_ids),
            "plugin_failures": result.failures,
            "latency_ms": latency_ms,
        }

    def _failed(self, event_id: int, err: BaseException) -> None:
        self.figures["events_failed"] += 1
        attempts = self._attempts[event_id] = self._attempts.get(event_id, 0) + 1
        if attempts < MAX_ATTEMPTS:
            return
        self._given_up.add(event_id)
        logger.error("giving up event %d after %d failed analyses: %r", event_id, attempts, err)
        record = {"_host": {"error": repr(err), "attempts": attempts}}
        try:
            self.store.events.record_analysis(event_id, self._clock_ms(), record)
        except OpqError:
            logger.exception("cannot record that event %d was given up", event_id)

    # --- the live stream: outages and frequency variations ---------------------------------------

    def _drain_live(self) -> None:
        payloads: list[bytes] = []
        while len(payloads) < LIVE_BATCH:
            frames = _receive(self._live)
            if frames is None:
                break
            try:
                payloads += parse_live_measurements(frames)
            except ProtocolError:
                self.figures["malformed_messages"] += 1
        if not payloads:
            return
        decoded = decode_measurements(payloads)
        self.figures["malformed_messages"] += len(decoded.malformed)
        columns = decoded.columns
        self.figures["measurements"] += len(columns)
        self._guarded("outages", functools.partial(self._seen_by_outages, columns))
        if self.frequency is not None:
            self._guarded("frequency", functools.partial(self._seen_by_frequency, columns, self.frequency))

    def _seen_by_outages(self, columns: MeasurementColumns) -> None:
        seen = self.outages.seen
        for box_id, timestamp_ms in zip(columns.box_ids, columns.timestamps_ms.tolist(), strict=True):
            seen(box_id, timestamp_ms)

    def _seen_by_frequency(self, columns: MeasurementColumns, frequency: FrequencyStreamIncidents) -> None:
        now_ms = self._clock_ms()
        for row in range(len(columns)):
            frequency.seen(columns.measurement(row), now_ms)

    # --- stats, GC, health ------------------------------------------------------------------------

    def put_stats(self, now_ms: int) -> None:
        """Store a fresh system_stats document."""
        self.stats.put(
            now_ms,
            plugin_stats=self.counters.snapshot(),
            last_seen_ms=dict(self.tracker.last_seen),
            mauka=self._figures(),
        )

    def collect_garbage(self, now_ms: int) -> None:
        """Delete what expired (the original's LahaGcPlugin)."""
        self.last_gc = {"at_ms": now_ms, "deleted": collect_garbage(self.store, now_ms)}

    def summary(self) -> dict[str, Any]:
        """The health document: ok while the loop comes round, and what it has done."""
        stalled_s = time.monotonic() - self._loop_s
        return {
            "name": "mauka",
            "ok": stalled_s < STALLED_S,
            "loop_age_s": round(stalled_s, 3),
            "timestamp_ms": self._clock_ms(),
            **self._snapshot,
        }

    def _figures(self) -> dict[str, Any]:
        latencies = sorted(self._latencies_ms)
        return {
            **{k: v if not isinstance(v, dict) else dict(v) for k, v in self.figures.items()},
            "queue": len(self._queue),
            "given_up": sorted(self._given_up),
            "latency_ms": {
                "count": len(latencies),
                "median": latencies[len(latencies) // 2] if latencies else None,
                "max": latencies[-1] if latencies else None,
            },
        }

    def _publish_snapshot(self) -> None:
        # Built by the loop's thread, read whole by the health thread.
        self._snapshot = {
            "started_ms": self._started_ms,
            "plugins": self.counters.snapshot(),
            "events": {**self._figures(), "last": self.last_event},
            "outages": dict(sorted(self.tracker.open.items())),
            "boxes_seen": len(self.tracker.last_seen),
            "frequency": None
            if self.frequency is None
            else {
                **self.frequency.figures,
                "settling": self.frequency.settling,
                "open": self.frequency.tracker.open_runs(),
            },
            "gc": self.last_gc,
        }

    def _guarded(self, task: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:  # one failing task must not stop the others or the loop
            failures = self.figures["task_failures"]
            failures[task] = failures.get(task, 0) + 1
            logger.exception("mauka task %s failed", task)


def _receive(socket: zmq.Socket[bytes]) -> list[bytes] | None:
    try:
        return socket.recv_multipart(zmq.NOBLOCK)
    except zmq.Again:
        return None
