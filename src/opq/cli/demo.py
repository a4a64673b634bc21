"""`opq demo`: a demo site on the embedded database, Makai, Mauka and simulated boxes, live."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
import zmq
from rich.console import Group
from rich.live import Live
from rich.table import Table

from opq.app.cloud import Cloud
from opq.box.config import BoxConfig
from opq.box.runtime import Box as RunningBox
from opq.box.scenario import load_scenario
from opq.box.simulator import Simulator
from opq.cli.context import DbOption, database_url, settings_of
from opq.config import MakaiSettings
from opq.domain.constants import DEFAULT_CALIBRATION_COUNTS_PER_V
from opq.errors import NotFound, ProtocolError
from opq.protocol import BoxMeasurement
from opq.protocol.columns import decode_measurements
from opq.protocol.internal import EVENT_TOPIC, parse_event_announcement, parse_live_measurements
from opq.protocol.keys import KeyPair, generate_keypair, read_certificate, write_certificate
from opq.store import Store, open_store
from opq.store.engine import redact
from opq.store.models import Box, Event, Incident, Location, UserProfile

logger = logging.getLogger(__name__)

ADMIN = "admin@opq.example"
DEFAULT_SCENARIO = Path("scenarios/grid-disturbances.toml")
# A few places on the University of Hawaii campus, where OPQ was piloted, and a home across the island.
SITE = (
    Location("uh-post", -157.8162, 21.2968, "POST building, University of Hawaii at Manoa"),
    Location("uh-hamilton", -157.8160, 21.3005, "Hamilton Library, University of Hawaii at Manoa"),
    Location("uh-kennedy", -157.8150, 21.2990, "Kennedy Theatre, University of Hawaii at Manoa"),
    Location("kailua-home", -157.7394, 21.4022, "A home in Kailua"),
)
REGIONS = (
    ("uh-manoa", ("uh-post", "uh-hamilton", "uh-kennedy"), ()),
    ("oahu", ("kailua-home",), ("uh-manoa",)),
)


def demo(
    ctx: typer.Context,
    db: DbOption = None,
    boxes: Annotated[int, typer.Option(min=1, max=50, help="Simulated boxes to run.")] = 4,
    scenario: Annotated[Path, typer.Option(help="Scenario of the simulated supply.")] = DEFAULT_SCENARIO,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its keys.")] = Path(".opq-demo"),
    port: Annotated[
        int, typer.Option(help="Measurement port; other ports as Makai's settings (0: all free ports).")
    ] = 9880,
    seconds: Annotated[float | None, typer.Option(help="Stop after this long (default: Ctrl-C).")] = None,
) -> None:
    """Set up a demo site, run Makai, Mauka and simulated boxes; show measurements, events, incidents live."""
    supply = load_scenario(scenario)
    # The services' notices would scroll the live view away; warnings still show.
    for name in ("opq.box", "opq.makai", "opq.mauka", "opq.app"):
        logging.getLogger(name).setLevel(logging.WARNING)
    url = database_url(ctx, db)
    with open_store(url, upgrade=True) as store:
        password = _seed_site(store)
        server, box_keys = _keys(workdir, boxes)
        box_ids = _register_boxes(store, box_keys)
        locations = {box.box_id: box.location or "" for box in store.boxes.list()}
    config = settings_of(ctx)
    settings = _makai_settings(config.makai, port)
    mauka = config.mauka.model_copy(update={"health_port": 0} if port == 0 else {})
    cloud = Cloud(config.model_copy(update={"makai": settings, "mauka": mauka}), url, server.secret or "")
    cloud.start()
    typer.echo(
        f"database: {redact(url)}\nlogin: {ADMIN} / {password}\n"
        f"makai health: http://{settings.service_host}:{cloud.makai.health.port}/"
    )
    running = [
        RunningBox(
            _box_config(box_id, workdir, server.public, settings),
            Simulator(supply, box_seed=index, start_ms=int(time.time() * 1000)),
        )
        for index, box_id in enumerate(box_ids)
    ]
    view = _LiveView(settings, url, box_ids, locations)
    try:
        for box in running:
            box.start()
        view.run(seconds)
    finally:
        view.close()
        for box in running:
            box.stop()
        cloud.stop()
    received = sum(seen.count for seen in view.latest.values())
    typer.echo(
        f"\nreceived {received} measurements from {len(view.latest)} boxes; "
        f"{len(view.events)} events; {len(view.incidents)} incidents"
    )


def _makai_settings(settings: MakaiSettings, port: int) -> MakaiSettings:
    """Makai for the demo: box endpoints on loopback; with port 0, every port a free one."""
    changes: dict[str, object] = {"box_host": "127.0.0.1"}
    if port == 0:
        names = ("measurement", "command", "response", "live", "event", "capture", "relay")
        changes |= {f"{name}_port": free for name, free in zip(names, _free_ports(len(names)), strict=True)}
        changes["health_port"] = 0
    else:
        changes["measurement_port"] = port
    return settings.model_copy(update=changes)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _seed_site(store: Store) -> str:
    """Locations, regions and an admin on first run; a fresh admin password every run."""
    known = {location.slug for location in store.locations.list()}
    for location in SITE:
        if location.slug not in known:
            store.locations.add(location)
    regions = {region.slug for region in store.regions.list()}
    for slug, locations, subregions in REGIONS:
        if slug not in regions:
            store.regions.add(slug, locations=locations, subregions=subregions)
    password = secrets.token_urlsafe(12)
    try:
        store.users.get(ADMIN)
        store.users.set_password(ADMIN, password)
    except NotFound:
        store.users.add(UserProfile(ADMIN, role="admin", first_name="Demo"), password)
    return password


def _keys(workdir: Path, count: int) -> tuple[KeyPair, list[tuple[str, KeyPair]]]:
    """The cloud's key pair and one per box, made on first use and kept in the work directory."""
    directory = workdir / "keys"
    directory.mkdir(parents=True, exist_ok=True)

    def pair(name: str) -> KeyPair:
        secret_file = directory / f"{name}.key_secret"
        if not secret_file.exists():
            write_certificate(directory, name, generate_keypair())
        return read_certificate(secret_file)

    return pair("server"), [(str(1000 + n), pair(f"box{1000 + n}")) for n in range(count)]


def _register_boxes(store: Store, box_keys: list[tuple[str, KeyPair]]) -> list[str]:
    known = {box.box_id for box in store.boxes.list()}
    now_ms = int(time.time() * 1000)
    for index, (box_id, keys) in enumerate(box_keys):
        if box_id not in known:
            location = SITE[index % len(SITE)].slug
            store.boxes.add(
                Box(
                    box_id,
                    f"demo box {box_id}",
                    DEFAULT_CALIBRATION_COUNTS_PER_V,
                    location=location,
                    location_start_time_ms=now_ms,
                )
            )
        store.boxes.set_public_key(box_id, keys.public)
    return [box_id for box_id, _ in box_keys]


def _box_config(box_id: str, workdir: Path, server_public_key: str, settings: MakaiSettings) -> BoxConfig:
    return BoxConfig(
        box_id=box_id,
        box_certificate=workdir / "keys" / f"box{box_id}.key_secret",
        server_public_key=server_public_key,
        measurement_port=settings.measurement_port,
        command_port=settings.command_port,
        response_port=settings.response_port,
        buffer_seconds=120,
    )


@dataclass
class _Seen:
    measurement: BoxMeasurement
    count: int


class _LiveView:
    """Makai's live measurement stream and its event announcements, shown as two tables."""

    def __init__(
        self, settings: MakaiSettings, url: str, box_ids: list[str], locations: dict[str, str]
    ) -> None:
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._live = self._context.socket(zmq.SUB)
        self._live.setsockopt(zmq.SUBSCRIBE, b"")
        self._live.connect(f"tcp://{settings.service_host}:{settings.live_port}")
        self._events = self._context.socket(zmq.SUB)
        self._events.setsockopt(zmq.SUBSCRIBE, EVENT_TOPIC)
        self._events.connect(f"tcp://{settings.service_host}:{settings.event_port}")
        self._store = open_store(url)
        self._box_ids = box_ids
        self._locations = locations
        self.latest: dict[str, _Seen] = {}
        self.events: list[Event] = []
        self.incidents: dict[int, Incident] = {}
        self._since_ms = int(time.time() * 1000)
        self._next_incident_read = 0.0

    def run(self, seconds: float | None) -> None:
        """Show what arrives until `seconds` pass (or Ctrl-C)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        poller = zmq.Poller()
        poller.register(self._live, zmq.POLLIN)
        poller.register(self._events, zmq.POLLIN)
        with Live(self._render(), refresh_per_second=4) as live:
            try:
                while deadline is None or time.monotonic() < deadline:
                    poller.poll(250)
                    self._read_measurements()
                    self._read_events()
                    self._read_incidents()
                    live.update(self._render())
            except KeyboardInterrupt:
                pass

    def close(self) -> None:
        """Release the sockets and the store."""
        self._context.destroy(linger=0)
        self._store.close()

    def _read_measurements(self) -> None:
        while True:
            try:
                frames = self._live.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                decoded = decode_measurements(parse_live_measurements(frames))
            except ProtocolError as err:
                logger.warning("dropped a malformed live-stream message: %s", err)
                continue
            for row in range(len(decoded.columns)):
                measurement = decoded.columns.measurement(row)
                seen = self.latest.get(measurement.box_id)
                self.latest[measurement.box_id] = _Seen(measurement, 1 if seen is None else seen.count + 1)

    def _read_events(self) -> None:
        while True:
            try:
                frames = self._events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self.events.append(self._store.events.get(parse_event_announcement(frames)))
            except (ProtocolError, NotFound) as err:
                logger.warning("cannot show an announced event: %s", err)

    def _read_incidents(self) -> None:
        # Mauka announces nothing: its incidents are read from the store, once a second.
        if time.monotonic() < self._next_incident_read:
            return
        self._next_incident_read = time.monotonic() + 1.0
        for incident in self._store.incidents.list(start_ms=self._since_ms - 60_000, limit=1000):
            self.incidents.setdefault(incident.incident_id, incident)

    def _render(self) -> Group:
        incidents = sorted(self.incidents.values(), key=lambda i: i.incident_id)[-10:]
        return Group(
            _table(self.latest, self._box_ids, self._locations),
            _event_table(self.events[-6:]),
            _incident_table(incidents),
        )


def _event_table(events: list[Event]) -> Table:
    table = Table(title="events captured by Makai (newest last)")
    for column in ("event", "start (UTC)", "length [s]", "boxes asked", "boxes received", "why"):
        table.add_column(column)
    for event in events:
        start, end = event.target_event_start_timestamp_ms, event.target_event_end_timestamp_ms
        table.add_row(
            str(event.event_id),
            time.strftime("%H:%M:%S", time.gmtime(start / 1000)),
            f"{(end - start) / 1000:.1f}",
            ", ".join(event.boxes_triggered),
            ", ".join(event.boxes_received),
            event.description,
        )
    return table


def _incident_table(incidents: list[Incident]) -> Table:
    table = Table(title="incidents classified by Mauka (newest last)")
    for column in ("incident", "event", "box", "location", "start (UTC)", "class", "duration", "deviation"):
        table.add_column(column)
    for incident in incidents:
        length_ms = incident.end_timestamp_ms - incident.start_timestamp_ms
        deviation = incident.deviation_from_nominal
        table.add_row(
            str(incident.incident_id),
            "" if incident.event_id is None else str(incident.event_id),
            incident.box_id,
            incident.location or "",
            time.strftime("%H:%M:%S", time.gmtime(incident.start_timestamp_ms / 1000)),
            ", ".join(incident.classifications),
            f"{length_ms / 1000:.3f} s {incident.ieee_duration or ''}",
            "" if deviation is None else f"{deviation:+.1f}",
        )
    return table


def _table(latest: dict[str, _Seen], box_ids: list[str], locations: dict[str, str]) -> Table:
    table = Table(title="opq demo: live measurements (Ctrl-C stops)")
    for column in (
        "box",
        "location",
        "time (UTC)",
        "Vrms min–max [V]",
        "f [Hz]",
        "THD [%]",
        "transient [V]",
        "received",
    ):
        table.add_column(column)
    for box_id in box_ids:
        seen = latest.get(box_id)
        if seen is None:
            table.add_row(box_id, locations.get(box_id, ""), "waiting…", "", "", "", "", "0")
            continue
        metrics = seen.measurement.metrics
        rms, f, thd, trans = (metrics.get(key) for key in ("rms", "f", "thd", "trans"))
        abnormal = rms is not None and not (rms.min >= 114 and rms.max <= 126)
        table.add_row(
            box_id,
            locations.get(box_id, ""),
            time.strftime("%H:%M:%S", time.gmtime(seen.measurement.timestamp_ms / 1000)),
            "" if rms is None else f"[{'red' if abnormal else 'green'}]{rms.min:.1f}–{rms.max:.1f}",
            "" if f is None else f"{f.average:.3f}",
            "" if thd is None else f"{thd.average * 100:.2f}",
            "" if trans is None else f"{trans.max:.1f}",
            str(seen.count),
        )
    return table
