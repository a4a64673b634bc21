"""The Mauka service against a real SQLite store and real ZeroMQ sockets standing in for Makai."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zmq
from typer.testing import CliRunner

from opq.cli import mauka as mauka_cli
from opq.config import MaukaSettings, Settings
from opq.errors import InvalidValue
from opq.mauka.incidents import outage_incident, store_incident
from opq.mauka.plugin import Plugin
from opq.mauka.registry import registered_plugins
from opq.mauka.service import Mauka
from opq.protocol import BoxMeasurement, MetricStats, encode_measurement
from opq.protocol.internal import LIVE_TOPIC, event_announcement
from opq.store import Store, open_store
from tests.mauka_site import T0, BrokenPlugin, SagPlugin, TaggingPlugin, add_event, add_site, sine_counts

SAG = (1.0, 0.2, 0.5)


def wait_until(
    condition: Callable[[], Any], timeout_s: float = 10.0, every: Callable[[], None] | None = None
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if every is not None:
            every()
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout_s} s")


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'mauka.sqlite3'}"
    with open_store(url, upgrade=True) as store:
        add_site(store)
    return url


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with open_store(url) as opened:
        yield opened


@pytest.fixture
def makai() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    """Makai's two PUB sockets: event announcements and the live measurement stream."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    events, live = context.socket(zmq.PUB), context.socket(zmq.PUB)
    for socket in (events, live):
        socket.bind("tcp://127.0.0.1:*")
    yield events, live
    events.close(linger=0)
    live.close(linger=0)
    context.term()


def settings_for(makai: tuple[zmq.Socket[bytes], zmq.Socket[bytes]], **changes: Any) -> MaukaSettings:
    events, live = makai
    return MaukaSettings(
        event_endpoint=events.getsockopt_string(zmq.LAST_ENDPOINT),
        live_endpoint=live.getsockopt_string(zmq.LAST_ENDPOINT),
        health_port=0,
        **changes,
    )


@contextmanager
def running(store: Store, settings: MaukaSettings, plugins: Sequence[Plugin]) -> Iterator[Mauka]:
    mauka = Mauka(store, settings, plugins)
    mauka.start()
    stop = threading.Event()
    thread = threading.Thread(target=mauka.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield mauka
    finally:
        stop.set()
        thread.join(10)
        mauka.close()
    assert not thread.is_alive()


def health(mauka: Mauka) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{mauka.health.port}/", timeout=5) as response:
        document: dict[str, Any] = json.load(response)
    return document


def test_an_announced_event_becomes_incidents_within_seconds(store: Store, makai: Any) -> None:
    # No catch-up during the test: only the announcement can bring the event in.
    settings = settings_for(makai, catch_up_interval_s=3_600)
    with running(store, settings, [SagPlugin()]) as mauka:
        event_id = add_event(store, {"1": sine_counts(sags=[SAG]), "2": sine_counts()})
        announce = lambda: makai[0].send_multipart(event_announcement(event_id))  # noqa: E731
        # A SUB socket misses what is sent before it has connected: Makai's real announcement
        # could be lost the same way, which catch-up covers; here it is repeated until heard.
        incidents = wait_until(lambda: store.incidents.for_event(event_id), every=announce)
        wait_until(lambda: store.events.analysis(event_id))
        document = wait_until(lambda: (d := health(mauka))["events"]["events_analyzed"] == 1 and d)
    assert [i.box_id for i in incidents] == ["1"]
    record = store.events.analysis(event_id)
    assert record is not None and record[1]["sag"]["incidents"] == 1
    assert document["ok"] is True and document["events"]["queue"] == 0
    last = document["events"]["last"]
    assert (last["event_id"], last["source"], last["incidents"]) == (event_id, "announced", 1)
    assert isinstance(last["latency_ms"], int)
    assert document["plugins"]["sag"]["incidents"] == 1


def test_events_stored_while_mauka_was_not_listening_are_caught_up(store: Store, makai: Any) -> None:
    before = add_event(store, {"1": sine_counts(sags=[SAG])})
    settings = settings_for(makai, catch_up_interval_s=0.2)
    with running(store, settings, [SagPlugin()]) as mauka:
        wait_until(lambda: store.events.analysis(before))
        # Stored, never announced: the periodic catch-up finds it.
        during = add_event(store, {"2": sine_counts(sags=[SAG])}, start_ms=T0 + 60_000)
        wait_until(lambda: store.events.analysis(during))
        document = health(mauka)
    assert [i.box_id for i in store.incidents.for_event(before)] == ["1"]
    assert [i.box_id for i in store.incidents.for_event(during)] == ["2"]
    assert document["events"]["events_analyzed"] == 2
    assert store.events.unanalyzed() == []


def test_a_failing_plugin_is_visible_in_health_and_stats(store: Store, makai: Any) -> None:
    event_id = add_event(store, {"1": sine_counts(sags=[SAG])})
    with running(store, settings_for(makai), [BrokenPlugin(), SagPlugin()]) as mauka:
        wait_until(lambda: store.events.analysis(event_id))
        document = wait_until(lambda: (d := health(mauka))["plugins"]["broken"]["failures"] and d)
        mauka.put_stats(int(time.time() * 1000))
    assert document["ok"] is True
    assert "broke" in document["plugins"]["broken"]["last_failure"]
    assert document["plugins"]["sag"]["incidents"] == 1
    assert [i.metadata["plugin"] for i in store.incidents.for_event(event_id)] == ["sag"]
    stats = store.system_stats.get()
    assert stats is not None
    assert stats[1]["plugin_stats"]["broken"]["failures"] == 1
    assert stats[1]["mauka"]["events_analyzed"] == 1


def measurement(box_id: str, timestamp_ms: int) -> list[bytes]:
    stats = MetricStats(119.5, 120.5, 120.0)
    return [LIVE_TOPIC, encode_measurement(BoxMeasurement(box_id, timestamp_ms, {"rms": stats}))]


def test_a_silent_box_is_an_outage_until_its_data_returns(store: Store, makai: Any) -> None:
    store.boxes.set_unplugged("2", True)
    live = makai[1]
    settings = settings_for(makai, outage_after_s=0.5)
    with running(store, settings, []) as mauka:
        sent: list[int] = []

        def report() -> None:
            now = int(time.time() * 1000)
            for box in ("1", "2"):
                live.send_multipart(measurement(box, now))
            sent.append(now)

        wait_until(lambda: "1" in mauka.tracker.last_seen, every=report)
        last = sent[-1]
        [outage] = wait_until(lambda: store.incidents.list(classification="OUTAGE"))
        assert (outage.box_id, outage.start_timestamp_ms, outage.location) == ("1", last, "lab-a")
        assert outage.metadata["open"] is True and outage.event_id is None
        assert wait_until(lambda: health(mauka)["outages"]) == {"1": last}
        back = int(time.time() * 1000)
        live.send_multipart(measurement("1", back))
        ended = wait_until(
            lambda: (i := store.incidents.get(outage.incident_id)).metadata["open"] is False and i
        )
    assert ended.end_timestamp_ms == back and ended.metadata["ended_by"] == "data"
    # Box 2 is unplugged, boxes 3 and 4 never reported: no outage for them.
    assert [i.box_id for i in store.incidents.list(classification="OUTAGE")] == ["1"]


def test_an_outage_open_before_a_restart_is_picked_up_not_repeated(store: Store, makai: Any) -> None:
    start = int(time.time() * 1000) - 120_000
    open_outage = outage_incident(store, "1", start, start + 60_000, "lab-a")
    store_incident(store, open_outage, None)
    with running(store, settings_for(makai, outage_after_s=0.5), []) as mauka:
        assert wait_until(lambda: health(mauka)["outages"]) == {"1": start}
        # Still silent: the open incident runs on to now, and no second one starts.
        wait_until(lambda: store.incidents.get(open_outage.incident_id).end_timestamp_ms > start + 60_000)
        back = int(time.time() * 1000)
        wait_until(
            lambda: store.incidents.get(open_outage.incident_id).metadata["open"] is False,
            every=lambda: makai[1].send_multipart(measurement("1", back)),
        )
    assert store.incidents.get(open_outage.incident_id).end_timestamp_ms == back
    assert len(store.incidents.list(classification="OUTAGE")) == 1


def test_opq_mauka_reanalyze_reports_what_it_replaced(url: str, store: Store) -> None:
    from opq.mauka.analysis import analyze_event

    event_id = add_event(store, {"1": sine_counts(sags=[SAG])})
    analyze_event(store, event_id, [TaggingPlugin()], T0)
    # Every installed plugin off: their incidents are replaced (none), the tagging one stays.
    settings = Settings(db_url=url, mauka=MaukaSettings(disabled_plugins=list(registered_plugins())))
    runner = CliRunner()
    args = ["reanalyze", "--since", "2023-11-14T22:13:00Z", "--until", str(T0 + 10_000), "--json"]
    result = runner.invoke(mauka_cli.app, args, obj=settings)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"event_id": event_id, "replaced": 0, "incidents": [], "plugin_failures": 0, "skipped_boxes": {}}
    ]
    record = store.events.analysis(event_id)
    assert record is not None and record[0] > T0 and "tagging" in record[1]
    assert [i.metadata["plugin"] for i in store.incidents.for_event(event_id)] == ["tagging"]
    table = runner.invoke(mauka_cli.app, args[:-1], obj=settings)
    assert table.exit_code == 0 and "re-analysed" in table.output
    backwards = runner.invoke(
        mauka_cli.app, ["reanalyze", "--since", str(T0), "--until", str(T0 - 1)], obj=settings
    )
    assert isinstance(backwards.exception, InvalidValue)
