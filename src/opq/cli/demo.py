"""`opq demo`: a demo site on the embedded database, simulated boxes, and their live measurements."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
import zmq
import zmq.auth.thread
from rich.live import Live
from rich.table import Table

from opq.box.config import BoxConfig
from opq.box.runtime import Box as RunningBox
from opq.box.scenario import load_scenario
from opq.box.simulator import Simulator
from opq.cli.context import DbOption, database_url
from opq.errors import NotFound, ProtocolError
from opq.protocol import BoxMeasurement, decode_measurement
from opq.protocol.keys import KeyPair, generate_keypair, read_certificate, write_certificate
from opq.store import Store, open_store
from opq.store.models import Box, Location, UserProfile

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
    port: Annotated[int, typer.Option(help="Measurement port (0: any free port).")] = 9880,
    seconds: Annotated[float | None, typer.Option(help="Stop after this long (default: Ctrl-C).")] = None,
) -> None:
    """Set up a demo site, run simulated boxes, and show what they measure, live."""
    supply = load_scenario(scenario)
    # The boxes' connection notices would scroll the live table away.
    logging.getLogger("opq.box").setLevel(logging.WARNING)
    with open_store(database_url(ctx, db), upgrade=True) as store:
        password = _seed_site(store)
        server, box_keys = _keys(workdir, boxes)
        box_ids = _register_boxes(store, box_keys)
        typer.echo(f"database: {store.url}\nlogin: {ADMIN} / {password}")
        context = zmq.Context()
        authenticator = _allow_registered_boxes(context, store)
        receiver = context.socket(zmq.SUB)
        try:
            receiver.curve_server = True
            receiver.curve_secretkey = (server.secret or "").encode()
            receiver.setsockopt(zmq.SUBSCRIBE, b"")
            if port == 0:
                port = receiver.bind_to_random_port("tcp://127.0.0.1")
            else:
                receiver.bind(f"tcp://127.0.0.1:{port}")
            running = [
                RunningBox(
                    _box_config(box_id, workdir, server.public, port),
                    Simulator(supply, box_seed=index, start_ms=int(time.time() * 1000)),
                )
                for index, box_id in enumerate(box_ids)
            ]
            for box in running:
                box.start()
            try:
                latest = _show_live(receiver, store, box_ids, seconds)
            finally:
                for box in running:
                    box.stop()
        finally:
            receiver.close(linger=0)
            authenticator.stop()
            context.term()
    typer.echo(f"\nreceived {sum(s.count for s in latest.values())} measurements from {len(latest)} boxes")


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
                Box(box_id, f"demo box {box_id}", 152.5, location=location, location_start_time_ms=now_ms)
            )
        store.boxes.set_public_key(box_id, keys.public)
    return [box_id for box_id, _ in box_keys]


def _box_config(box_id: str, workdir: Path, server_public_key: str, port: int) -> BoxConfig:
    return BoxConfig(
        box_id=box_id,
        box_certificate=workdir / "keys" / f"box{box_id}.key_secret",
        server_public_key=server_public_key,
        measurement_port=port,
        buffer_seconds=120,
    )


class _RegisteredBoxes:
    """ZAP credentials: a CURVE client gets in only with the public key of a registered box."""

    def __init__(self, store: Store) -> None:
        self._allowed = set(store.boxes.public_keys())
        self._lock = threading.Lock()

    def callback(self, _domain: str, key: bytes) -> bool:
        with self._lock:
            allowed = key.decode() in self._allowed
        if not allowed:
            logger.warning("refused a box with unregistered key %s", key.decode())
        return allowed


def _allow_registered_boxes(
    context: zmq.Context[zmq.Socket[bytes]], store: Store
) -> zmq.auth.thread.ThreadAuthenticator:
    authenticator = zmq.auth.thread.ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve_callback("*", credentials_provider=_RegisteredBoxes(store))
    return authenticator


@dataclass
class _Seen:
    measurement: BoxMeasurement
    count: int


def _show_live(
    receiver: zmq.Socket[bytes], store: Store, box_ids: list[str], seconds: float | None
) -> dict[str, _Seen]:
    locations = {box.box_id: box.location or "" for box in store.boxes.list()}
    latest: dict[str, _Seen] = {}
    deadline = None if seconds is None else time.monotonic() + seconds
    with Live(_table(latest, box_ids, locations), refresh_per_second=4) as live:
        try:
            while deadline is None or time.monotonic() < deadline:
                if not receiver.poll(250):
                    continue
                _topic, payload = receiver.recv_multipart()
                try:
                    measurement = decode_measurement(payload)
                except ProtocolError as err:
                    logger.warning("dropped a malformed measurement: %s", err)
                    continue
                seen = latest.get(measurement.box_id)
                latest[measurement.box_id] = _Seen(measurement, 1 if seen is None else seen.count + 1)
                live.update(_table(latest, box_ids, locations))
        except KeyboardInterrupt:
            pass
    return latest


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
