"""Makai end to end: real processes, CURVE sockets and boxes; a sag becomes a stored, announced event."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from opq.box.config import BoxConfig
from opq.box.runtime import Box as RunningBox
from opq.box.scenario import load_scenario
from opq.box.simulator import Simulator
from opq.config import MakaiSettings, RetentionSettings
from opq.makai.service import Makai, MakaiConfig
from opq.protocol import decode_measurement, generate_keypair, write_certificate
from opq.protocol.internal import EVENT_TOPIC, CaptureRequest, parse_event_announcement
from opq.store import Store, open_store
from opq.store.models import Box, Location

SCENARIO = """
description = "A sag to 0.5 pu for 0.2 s, three seconds in"
[supply]
noise_v_rms = 0.4
seed = 1
duration_s = 120.0

[[disturbances]]
kind = "sag"
at_s = 3.0
depth_pu = 0.5
duration_s = 0.2
"""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_until(condition: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout_s} s")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """A SQLite site with boxes 1 and 2 at one location; keys for them, the cloud and a stranger."""
    url = f"sqlite:///{tmp_path / 'makai.sqlite3'}"
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("server", "box1", "box2", "stranger"):
        write_certificate(keys, name, generate_keypair())
    with open_store(url, upgrade=True) as store:
        store.locations.add(Location("lab", -157.8, 21.3, "The lab"))
        for box_id in ("1", "2"):
            store.boxes.add(Box(box_id, f"box {box_id}", 152.5, location="lab", location_start_time_ms=0))
            public = (keys / f"box{box_id}.key").read_text()
            store.boxes.set_public_key(box_id, _public_key(public))
    yield url, keys, _public_key((keys / "server.key").read_text())


def _public_key(zcert: str) -> str:
    line = next(line for line in zcert.splitlines() if "public-key" in line)
    return line.split('"')[1]


@pytest.fixture
def makai(site: tuple[str, Path, str]) -> Iterator[Makai]:
    url, keys, _ = site
    ports = free_ports(8)
    settings = MakaiSettings(
        box_host="127.0.0.1",
        measurement_port=ports[0],
        command_port=ports[1],
        response_port=ports[2],
        live_port=ports[3],
        event_port=ports[4],
        capture_port=ports[5],
        relay_port=ports[6],
        health_port=0,
        trend_interval_s=1,
        refresh_s=0.5,
        response_timeout_s=5,
        neighbours="location",
    )
    from opq.protocol import read_certificate

    secret = read_certificate(keys / "server.key_secret").secret
    assert secret is not None
    service = Makai(MakaiConfig(settings, url, RetentionSettings(), secret))
    stop = threading.Event()
    service.start()
    watcher = threading.Thread(target=service.run, args=(stop,))
    watcher.start()
    yield service
    stop.set()
    watcher.join()
    service.stop()


def run_box(
    box_id: str, certificate: Path, server_key: str, settings: MakaiSettings, scenario: Path
) -> RunningBox:
    config = BoxConfig(
        box_id=box_id,
        box_certificate=certificate,
        server_public_key=server_key,
        measurement_port=settings.measurement_port,
        command_port=settings.command_port,
        response_port=settings.response_port,
        buffer_seconds=120,
    )
    box = RunningBox(
        config, Simulator(load_scenario(scenario), box_seed=int(box_id), start_ms=int(time.time() * 1000))
    )
    box.start()
    return box


def test_a_sag_at_one_box_becomes_an_event_with_both_boxes_of_its_location(
    makai: Makai, site: tuple[str, Path, str], tmp_path: Path
) -> None:
    url, keys, server_key = site
    settings = makai.config.settings
    scenario = tmp_path / "sag.toml"
    scenario.write_text(SCENARIO)
    quiet = tmp_path / "clean.toml"
    quiet.write_text(SCENARIO.split("[[disturbances]]")[0])
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    announcements = context.socket(zmq.SUB)
    announcements.setsockopt(zmq.SUBSCRIBE, EVENT_TOPIC)
    announcements.connect(f"tcp://127.0.0.1:{settings.event_port}")
    live = context.socket(zmq.SUB)
    live.setsockopt(zmq.SUBSCRIBE, b"")
    live.connect(f"tcp://127.0.0.1:{settings.live_port}")
    boxes = [
        run_box("1", keys / "box1.key_secret", server_key, settings, scenario),
        run_box("2", keys / "box2.key_secret", server_key, settings, quiet),
        # A box with a key nobody registered, claiming to be box 2.
        run_box("2", keys / "stranger.key_secret", server_key, settings, quiet),
    ]
    try:
        assert announcements.poll(30_000), f"no event announced; makai: {_health(makai)}"
        event_id = parse_event_announcement(announcements.recv_multipart())
        _topic, payload = live.recv_multipart()
        assert decode_measurement(payload).box_id in {"1", "2"}
        health = wait_until(lambda: _health(makai)["ingest"].get("refused_keys"))
        assert sum(health.values()) >= 1
    finally:
        for box in boxes:
            box.stop()
        context.destroy(linger=0)
    with open_store(url) as store:
        event = store.events.get(event_id)
        assert event.boxes_triggered == ("1", "2")
        assert sorted(event.boxes_received) == ["1", "2"]
        assert event.completed_ms is not None
        assert "rms" in event.description
        window = event.target_event_end_timestamp_ms - event.target_event_start_timestamp_ms
        assert 1_000 <= window <= 2_500  # 0.2 s sag, a measurement either side, 0.5 s margins
        for box_id in ("1", "2"):
            box_event = store.events.box_event(event_id, box_id)
            size = len(store.files.read_bytes(box_event.data_fs_filename or ""))
            assert size >= 400 * 50  # at least 50 cycles of 200 int16 samples
        assert _sag_recorded(store, event_id)
        assert store.measurements.count() > 20
        assert store.trends.count() >= 2
    # Each process reports every 2 s: health catches up with the store a little later.
    summary = wait_until(
        lambda: _health(makai) if _health(makai)["acquisition"].get("events_completed") else None
    )
    assert summary["ok"] is True
    assert summary["ingest"]["stored"] > 20


def test_a_manual_capture_through_the_capture_port(
    makai: Makai, site: tuple[str, Path, str], tmp_path: Path
) -> None:
    from opq.cli.makai import request_capture

    url, keys, server_key = site
    settings = makai.config.settings
    quiet = tmp_path / "clean.toml"
    quiet.write_text(SCENARIO.split("[[disturbances]]")[0])
    box = run_box("1", keys / "box1.key_secret", server_key, settings, quiet)
    try:
        wait_until(lambda: _health(makai)["ingest"].get("stored", 0) >= 6)
        now_ms = int(time.time() * 1000)
        event_id = request_capture(settings, CaptureRequest(("1",), now_ms - 1_000, now_ms, reason="test"))
        with open_store(url) as store:
            wait_until(lambda: store.events.get(event_id).completed_ms is not None)
            assert store.events.get(event_id).boxes_received == ("1",)
            assert store.events.get(event_id).description == "test"
    finally:
        box.stop()


def _health(makai: Makai) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{makai.health.port}/", timeout=5) as response:
        return dict(json.load(response))


def _sag_recorded(store: Store, event_id: int) -> bool:
    import numpy as np

    data = np.frombuffer(store.files.read_bytes(f"event_{event_id}_1"), "<i2") / 152.5
    rms = np.sqrt(np.mean(data[: len(data) // 200 * 200].reshape(-1, 200) ** 2, axis=1))
    return bool(rms.min() < 0.6 * 120 and rms.max() > 0.95 * 120)


def test_a_box_posing_as_another_and_a_revoked_box_are_dropped_and_counted(
    makai: Makai, site: tuple[str, Path, str], tmp_path: Path
) -> None:
    url, keys, server_key = site
    settings = makai.config.settings
    quiet = tmp_path / "clean.toml"
    quiet.write_text(SCENARIO.split("[[disturbances]]")[0])
    # Box 1's key, but measurements that say they come from box 2.
    impostor = run_box("2", keys / "box1.key_secret", server_key, settings, quiet)
    honest = run_box("2", keys / "box2.key_secret", server_key, settings, quiet)
    try:
        wait_until(lambda: _health(makai)["ingest"].get("dropped", {}).get("wrong_box", 0) >= 6)
        wait_until(lambda: "2" in _health(makai)["ingest"].get("boxes", {}) or _stored(url, "2"))
        with open_store(url) as store:
            store.boxes.set_public_key("2", None)
        wait_until(lambda: _health(makai)["ingest"].get("dropped", {}).get("revoked", 0) >= 6)
        with open_store(url) as store:
            before = store.measurements.count()
        time.sleep(1.5)
        with open_store(url) as store:
            assert store.measurements.count() == before  # box 2 is out since its key was revoked
    finally:
        impostor.stop()
        honest.stop()


def _stored(url: str, box_id: str) -> bool:
    with open_store(url) as store:
        return store.measurements.latest(box_id) is not None
