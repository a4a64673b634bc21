"""`opq bench ingest` and `opq bench capture`: small runs report every figure with sane values (no timing)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from opq.bench.capture import run_capture_bench
from opq.bench.capture_cases import DISTURBANCES
from opq.cli import bench
from opq.cli.main import OpqGroup


def test_ingest_of_a_small_fleet_stores_everything_and_reports_lag_and_cpu(tmp_path: Path) -> None:
    app = typer.Typer(cls=OpqGroup)
    app.add_typer(bench.app, name="bench")
    args = [
        "bench",
        "ingest",
        "--boxes",
        "20",
        "--seconds",
        "3",
        "--keys-dir",
        str(tmp_path / "keys"),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert (figures["boxes"], figures["rate_per_s"], figures["expected_per_s"]) == (20, 6, 120.0)
    assert figures["boxes_subscribed"] == 20
    assert figures["sent"] == figures["received"] == figures["stored"] > 0
    assert figures["lost"] == 0 and figures["dropped"] == {} and figures["caught_up"]
    assert figures["stored_per_s"] > 0 and figures["sent_per_s"] > 0
    assert 0 < figures["lag_ms_p50"] <= figures["lag_ms_p99"] <= figures["lag_ms_max"]
    assert figures["lag_samples"] > 0
    names = {cpu["name"] for cpu in figures["cpu"]}
    assert {"fleet-0", "makai-ingest", "makai-relay", "makai-acquisition"} <= names
    assert figures["cpu_cores_total"] >= figures["cpu_cores_makai"] > 0
    assert figures["ingest_fds"] >= 20
    assert figures["machine"]["open_files_limit"]


def test_capture_finds_the_sag_ignores_the_flicker_and_counts_the_bytes(tmp_path: Path) -> None:
    chosen = [d for d in DISTURBANCES if d.name.startswith(("sag to 0.5 pu", "flicker"))]
    result = run_capture_bench(
        boxes=6,
        boxes_per_location=3,
        lead_s=4.0,
        gap_s=2.5,
        clean_boxes=6,
        clean_seconds=4.0,
        disturbances=chosen,
        keys_dir=tmp_path / "keys",
    )
    sag, flicker = result.disturbances
    assert sag.expected and sag.detected and sag.covered
    assert (sag.boxes_asked, sag.boxes_received) == (3, 3)  # the sagging box and its location-mates
    assert sag.to_completed_ms is not None and 0 < sag.to_completed_ms < 15_000
    # The window ends after the disturbance (post_trigger_ms after the first nominal measurement).
    assert sag.window_end_to_completed_ms is not None and sag.window_end_to_completed_ms < sag.to_completed_ms
    assert result.acquisition.get("batch_failures", 0) == result.acquisition.get("storage_failures", 0) == 0
    assert not flicker.expected and not flicker.events
    assert (result.expected, result.detected, result.recall_percent) == (1, 1, 100.0)
    assert result.unmatched_events == 0
    assert 0 < result.raw_fraction_percent < 100
    assert result.clean_events == 0 and result.events_per_box_day_95_upper > 0
    six, one = result.wire
    assert (six.rate_per_s, one.rate_per_s) == (6, 1)
    assert six.measurements > one.measurements > 0
    assert six.wire_bytes_per_measurement > six.payload_bytes > 50
    assert six.bytes_per_day_sent > one.bytes_per_day_sent > 0
