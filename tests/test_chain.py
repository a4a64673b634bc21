"""The whole chain with real processes and sockets: a box's sag → Makai → event → Mauka → incident."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from opq.box.config import BoxConfig
from opq.box.runtime import Box as RunningBox
from opq.box.scenario import scenario_from_dict
from opq.box.simulator import Simulator
from opq.protocol import generate_keypair, write_certificate
from opq.store import open_store
from opq.store.models import Box, Incident, Location
from tests.test_makai_service import free_ports, wait_until

REPOSITORY = Path(__file__).resolve().parents[1]
SAG = {
    "supply": {"noise_v_rms": 0.4, "seed": 5, "duration_s": 120.0},
    "disturbances": [{"kind": "sag", "at_s": 4.0, "depth_pu": 0.5, "duration_s": 0.25, "ramp_ms": 1.0}],
}


def write_settings(directory: Path, url: str, certificate: Path) -> dict[str, int]:
    """An opq.toml for Makai and Mauka on free loopback ports; the ports by name."""
    names = ("measurement", "command", "response", "live", "event", "capture", "relay", "health", "mauka")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    (directory / "opq.toml").write_text(
        f'db_url = "{url}"\n\n[makai]\nserver_certificate = "{certificate}"\nbox_host = "127.0.0.1"\n'
        + "".join(f"{name}_port = {ports[name]}\n" for name in names[:8])
        + f'\n[mauka]\nevent_endpoint = "tcp://127.0.0.1:{ports["event"]}"\n'
        f'live_endpoint = "tcp://127.0.0.1:{ports["live"]}"\nhealth_port = {ports["mauka"]}\n'
    )
    return ports


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[str, Path, str, dict[str, int]]]:
    """`opq makai` and `opq mauka` as processes on a new SQLite site with box 1 registered."""
    url = f"sqlite:///{tmp_path / 'chain.sqlite3'}"
    keys = tmp_path / "keys"
    keys.mkdir()
    server, box = generate_keypair(), generate_keypair()
    write_certificate(keys, "server", server)
    write_certificate(keys, "box1", box)
    with open_store(url, upgrade=True) as store:
        store.locations.add(Location("lab", -157.8, 21.3, "The lab"))
        store.boxes.add(
            Box("1", "box 1", 152.5, location="lab", location_start_time_ms=0, public_key=box.public)
        )
    ports = write_settings(tmp_path, url, keys / "server.key_secret")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "opq", "--config", str(tmp_path / "opq.toml"), service],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"{service}.log").open("w"),  # lives as long as the process
        )
        for service in ("mauka", "makai")
    ]
    try:
        yield url, keys, server.public, ports
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            assert process.wait(timeout=30) == 0, (tmp_path / "makai.log").read_text()[-3000:]


def test_a_sag_at_a_box_is_stored_as_a_classified_incident(
    cloud: tuple[str, Path, str, dict[str, int]],
) -> None:
    url, keys, server_key, ports = cloud
    config = BoxConfig(
        box_id="1",
        box_certificate=keys / "box1.key_secret",
        server_public_key=server_key,
        measurement_port=ports["measurement"],
        command_port=ports["command"],
        response_port=ports["response"],
        buffer_seconds=120,
    )
    started_ms = int(time.time() * 1000)
    box = RunningBox(config, Simulator(scenario_from_dict(SAG), box_seed=1, start_ms=started_ms))
    box.start()
    try:
        with open_store(url) as store:

            def sag() -> Incident | None:
                found = store.incidents.list(classification="VOLTAGE_SAG")
                return found[0] if found else None

            incident = wait_until(sag, timeout_s=40)
            event = store.events.get(incident.event_id or 0)
            assert event.boxes_received == ("1",)
            assert store.files.exists(incident.gridfs_filename or "")
    finally:
        box.stop()
    assert incident.box_id == "1" and incident.location == "lab"
    assert incident.ieee_duration == "INSTANTANEOUS"
    assert incident.measurement_type == "VOLTAGE"
    # The sag is 0.25 s long, 4 s after the box started; Urms(1/2) places it within a cycle.
    assert abs(incident.start_timestamp_ms - (started_ms + 4_000)) <= 20
    assert abs((incident.end_timestamp_ms - incident.start_timestamp_ms) - 250) <= 20
    assert incident.deviation_from_nominal is not None and abs(incident.deviation_from_nominal + 60) < 3


def test_opq_serve_runs_both_services_and_stops_cleanly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    write_certificate(tmp_path, "server", generate_keypair())
    with open_store(url, upgrade=True):
        pass
    ports = write_settings(tmp_path, url, tmp_path / "server.key_secret")
    command = [sys.executable, "-m", "opq", "--config", str(tmp_path / "opq.toml"), "serve"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for port in (ports["health"], ports["mauka"]):
            document = wait_until(lambda port=port: _health(port), timeout_s=30)
            assert document["ok"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()[-2000:]


def _health(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return dict(json.load(response))
    except OSError:
        return None
