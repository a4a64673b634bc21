"""The store benchmark on a tiny fleet: every figure is reported, and the rows really are stored."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from opq.bench.store import run_store_bench
from opq.cli.bench import app
from opq.errors import StorageError
from opq.store import open_store

ROWS = 20_000
BOXES = 20


def test_store_bench_reports_every_figure_and_stores_the_rows(db_url: str) -> None:
    result = run_store_bench(db_url, rows=ROWS, boxes=BOXES, queries=10)
    figures = json.loads(json.dumps(asdict(result)))

    assert figures["backend"] in ("sqlite", "postgresql")
    assert (figures["rows"], figures["boxes"], figures["batch_size"]) == (ROWS, BOXES, 6 * BOXES)
    assert figures["measurements_before"] == 0
    insert = figures["insert"]
    assert (insert["inserted"], insert["duplicates"]) == (ROWS, 0)
    assert insert["batches"] == -(-ROWS // (6 * BOXES))
    for name in ("seconds", "rows_per_s_median", "rows_per_s_overall", "batch_ms_median"):
        assert insert[name] > 0, name
    trends = figures["trends"]
    assert trends["rows"] > 0
    for name in ("insert_rows_per_s_median", "reupsert_rows_per_s_median"):
        assert trends[name] > 0, name
    query = figures["query"]
    assert query["measurements_present"] == ROWS
    assert query["queries"] == 10
    # The data spans ROWS / BOXES / 6 ≈ 167 s, all inside any hour that covers it.
    assert query["rows_returned_median"] == ROWS // BOXES
    assert 0 < query["ms_median"] <= query["ms_p95"] <= query["ms_max"]
    assert figures["machine"]["cpu_count"] >= 1
    assert figures["machine"]["python"]
    assert figures["database_settings"]

    with open_store(db_url) as store:
        assert store.measurements.count() == ROWS
        assert store.trends.count() == trends["rows"]
        assert {m.box_id for m in store.measurements.for_box("1000", 0, 2**62)} == {"1000"}


def test_store_bench_refuses_a_database_holding_measurements_unless_allowed(db_url: str) -> None:
    run_store_bench(db_url, rows=600, boxes=5, queries=2)

    with pytest.raises(StorageError, match="already holds 600 measurements"):
        run_store_bench(db_url, rows=600, boxes=5, queries=2)

    again = run_store_bench(db_url, rows=600, boxes=5, queries=2, allow_existing=True)
    # The new data starts after the stored data, so none of it is a duplicate.
    assert again.measurements_before == 600
    assert (again.insert.inserted, again.insert.duplicates) == (600, 0)
    assert again.query.measurements_present == 1200


def test_the_command_prints_one_json_object(db_url: str) -> None:
    args = ["store", "--db", db_url, "--rows", "1200", "--boxes", "10", "--queries", "3", "--json"]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["insert"]["inserted"] == 1200
    assert figures["batch_size"] == 60


def test_the_command_says_why_it_refuses_a_database(db_url: str) -> None:
    args = ["store", "--db", db_url, "--rows", "60", "--boxes", "10", "--queries", "1", "--json"]
    assert CliRunner().invoke(app, args).exit_code == 0

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 1
    assert "already holds 60 measurements" in result.output
    assert result.stdout == ""
