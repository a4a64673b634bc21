"""`opq demo` end to end: a site on a new SQLite file, simulated boxes, measurements received."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from opq.store import open_store

REPOSITORY = Path(__file__).resolve().parents[1]


def test_demo_runs_makai_and_mauka_and_classifies_the_scenarios_first_sag(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    command = [
        sys.executable,
        "-m",
        "opq",
        "demo",
        "--db",
        url,
        "--boxes",
        "2",
        "--port",
        "0",
        "--seconds",
        "14",
        "--workdir",
        str(tmp_path / "work"),
    ]
    result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    received = re.search(
        r"received (\d+) measurements from (\d+) boxes; (\d+) events; (\d+) incidents", result.stdout
    )
    assert received is not None, (result.stdout, result.stderr)
    assert int(received.group(2)) == 2
    assert int(received.group(1)) >= 2 * 6 * 10  # six a second per box, minus start-up
    assert int(received.group(3)) >= 1  # the sag 10 s in ...
    assert int(received.group(4)) >= 1  # ... classified by Mauka
    assert "login: admin@opq.example / " in result.stdout
    with open_store(url) as store:
        assert [box.box_id for box in store.boxes.list()] == ["1000", "1001"]
        assert all(box.public_key for box in store.boxes.list())
        assert store.regions.locations_within("oahu") == [
            "kailua-home",
            "uh-hamilton",
            "uh-kennedy",
            "uh-post",
        ]
        assert store.users.get("admin@opq.example").role == "admin"
        first = store.events.get(1)
        assert sorted(first.boxes_received) == ["1000", "1001"]
        assert "rms min" in first.description
        assert store.measurements.count() >= 2 * 6 * 10
        assert store.incidents.list(classification="VOLTAGE_SAG", limit=10)
