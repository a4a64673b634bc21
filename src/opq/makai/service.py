"""`opq makai`: one process per box endpoint (ingest, command relay, acquisition) and their health.

A binding ZeroMQ socket holds a file descriptor per connected box, and a process may hold 20,000:
so each box endpoint gets its own process, as the original split its brokers. The parent starts
them, restarts one that dies, collects their reports and serves them as health.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.process
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import zmq

from opq.config import MakaiSettings, RetentionSettings
from opq.makai.acquirer import Acquirer, CommandRelay
from opq.makai.ingest import Ingest
from opq.protocol.health_http import HealthServer
from opq.store import open_store

logger = logging.getLogger(__name__)

ROLES: Final = ("relay", "acquisition", "ingest")
"""Started in this order: each connects to the ones before."""
_RESTART_PAUSE_S: Final = 2.0
_REPORTING_WINDOW_MS: Final = 10_000


@dataclass(frozen=True)
class MakaiConfig:
    """What each Makai process needs to start on its own."""

    settings: MakaiSettings
    db_url: str
    retention: RetentionSettings
    secret_key: str


def run_role(role: str, config: MakaiConfig, stop: Any, reports: Any) -> None:
    """Body of one Makai process: open the store and a ZeroMQ context, serve until `stop` is set."""

    def report(document: dict[str, Any]) -> None:
        with contextlib.suppress(queue.Full):  # a report is replaced by the next one anyway
            reports.put_nowait((role, time.time(), document))

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    context.setsockopt(zmq.MAX_SOCKETS, 65_536)
    stopping = threading.Event()

    def watch() -> None:
        stop.wait()
        stopping.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        with open_store(config.db_url, config.retention) as store:
            makers: dict[str, Callable[[], Any]] = {
                "ingest": lambda: Ingest(config.settings, store, config.secret_key, context),
                "relay": lambda: CommandRelay(config.settings, store, config.secret_key, context),
                "acquisition": lambda: Acquirer(config.settings, store, config.secret_key, context),
            }
            part = makers[role]()
            try:
                part.run(stopping, report)
            finally:
                part.close()
    except KeyboardInterrupt:
        pass
    finally:
        context.term()


@dataclass
class _Child:
    role: str
    process: multiprocessing.process.BaseProcess
    started_s: float
    restarts: int = 0
    report: dict[str, Any] = field(default_factory=dict)
    reported_s: float = 0.0


class Makai:
    """The three Makai processes, restarted when one dies, and their health on HTTP."""

    def __init__(self, config: MakaiConfig) -> None:
        self.config = config
        # fork: children inherit the CLI's logging set-up; the parent holds no ZeroMQ context.
        self._mp = multiprocessing.get_context("fork")
        self._stop = self._mp.Event()
        self._reports: Any = self._mp.Queue(maxsize=1_000)
        self._children: dict[str, _Child] = {}
        self._lock = threading.Lock()
        self._rate = (0.0, 0)
        self.measurements_per_s = 0.0
        settings = config.settings
        self.health = HealthServer(
            settings.service_host,
            settings.health_port,
            {"/": self.summary, "/boxes": self.boxes},
            name="makai",
        )

    def start(self) -> None:
        """Start the processes and the health server."""
        for role in ROLES:
            self._spawn(role)
            time.sleep(0.05)
        self.health.start()
        logger.info(
            "makai up: measurements on %d, commands on %d, responses on %d, health on http://%s:%d/",
            self.config.settings.measurement_port,
            self.config.settings.command_port,
            self.config.settings.response_port,
            self.config.settings.service_host,
            self.health.port,
        )

    def run(self, stop: threading.Event) -> None:
        """Watch the processes and collect their reports until `stop` is set."""
        while not stop.is_set():
            self._collect(timeout_s=0.2)
            for child in list(self._children.values()):
                if not child.process.is_alive() and time.monotonic() - child.started_s > _RESTART_PAUSE_S:
                    logger.error(
                        "makai %s process exited (code %s): restarting it", child.role, child.process.exitcode
                    )
                    self._spawn(child.role, restarts=child.restarts + 1)

    def stop(self) -> None:
        """Stop every process (each writes what it still holds) and the health server."""
        self._stop.set()
        # A child exits only once its last report is through the pipe: keep reading while waiting.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(c.process.is_alive() for c in self._children.values()):
            self._collect(timeout_s=0.1)
        stuck = [c for c in self._children.values() if c.process.is_alive()]
        for child in stuck:
            logger.error("makai %s process did not stop: terminating it", child.role)
            child.process.terminate()
            child.process.join(timeout=5)
        if not stuck:  # a terminated child may have left half a report in the pipe: not read then
            self._collect(timeout_s=0)
        self.health.stop()

    def report(self, role: str) -> dict[str, Any]:
        """The newest report of one process."""
        with self._lock:
            child = self._children.get(role)
            return {} if child is None else dict(child.report)

    def summary(self) -> dict[str, Any]:
        """The health document: processes, rates, drops, buffer, lag, acquisition."""
        now_s = time.time()
        ingest = self.report("ingest")
        boxes = ingest.get("boxes", {})
        now_ms = int(now_s * 1000)
        with self._lock:
            processes = {
                role: {
                    "alive": child.process.is_alive(),
                    "pid": child.process.pid,
                    "restarts": child.restarts,
                    "report_age_s": round(now_s - child.reported_s, 1) if child.reported_s else None,
                }
                for role, child in self._children.items()
            }
        ok = all(p["alive"] for p in processes.values()) and bool(ingest.get("database_ok", True))
        return {
            "name": "makai",
            "ok": ok,
            "timestamp_ms": now_ms,
            "processes": processes,
            "boxes_known": len(boxes),
            "boxes_reporting": sum(
                1 for b in boxes.values() if now_ms - b["last_measurement_ms"] <= _REPORTING_WINDOW_MS
            ),
            "measurements_per_s": round(self.measurements_per_s, 1),
            "ingest": {key: value for key, value in ingest.items() if key != "boxes"},
            "acquisition": self.report("acquisition"),
            "relay": self.report("relay"),
        }

    def boxes(self) -> dict[str, Any]:
        """Each box's newest measurement time and count."""
        return {"boxes": self.report("ingest").get("boxes", {})}

    def _spawn(self, role: str, restarts: int = 0) -> None:
        process = self._mp.Process(
            target=run_role, args=(role, self.config, self._stop, self._reports), name=f"makai-{role}"
        )
        process.start()
        with self._lock:
            self._children[role] = _Child(role, process, time.monotonic(), restarts)

    def _collect(self, timeout_s: float) -> None:
        try:
            role, at_s, document = (
                self._reports.get(timeout=timeout_s) if timeout_s else self._reports.get_nowait()
            )
        except queue.Empty:
            return
        while True:
            with self._lock:
                child = self._children.get(role)
                if child is not None:
                    child.report, child.reported_s = document, at_s
            if role == "ingest":
                self._update_rate(at_s, int(document.get("stored", 0)))
            try:
                role, at_s, document = self._reports.get_nowait()
            except queue.Empty:
                return

    def _update_rate(self, at_s: float, stored: int) -> None:
        last_s, last_stored = self._rate
        if last_s and at_s > last_s and stored >= last_stored:
            self.measurements_per_s = (stored - last_stored) / (at_s - last_s)
        self._rate = (at_s, stored)
