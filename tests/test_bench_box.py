"""`opq bench box`: the accuracy figures meet their targets and a small fleet run reports sane figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from typer.testing import CliRunner

from opq.bench.box import accuracy_of_metrics, cpu_of_metrics, run_box_bench
from opq.cli import bench
from opq.cli.main import OpqGroup


def test_opq_domain_meets_class_a_accuracy_on_known_signals_near_60_hz() -> None:
    figures = accuracy_of_metrics(seconds=2)
    assert figures.rms_near_nominal.max < figures.rms_near_nominal.target
    assert figures.frequency.max < figures.frequency.target
    assert figures.thd.max < figures.thd.target
    # Over whole periods of the measured fundamental the RMS meets class A off 60 Hz too; the
    # former fixed 200-sample blocks, still reported, do not.
    assert figures.rms_off_nominal.max < figures.rms_off_nominal.target
    assert figures.rms_cycle_off_nominal.max < figures.rms_cycle_off_nominal.target
    assert figures.rms_blocks_off_nominal.max > figures.rms_blocks_off_nominal.target
    assert figures.rms_off_nominal.windows == 8 * 10
    assert set(figures.thd.cases) >= {"1 % at 60 Hz", "20 % at 59.5 Hz"}
    assert figures.frequency.windows == 14 * 12


def test_cpu_figures_are_positive_per_box_second() -> None:
    figures = cpu_of_metrics(repeats=1, box_seconds=2)
    assert figures.box_seconds == 2
    for value in (
        figures.builder_rate_10_us,
        figures.builder_rate_60_us,
        figures.builder_blocks_rate_10_us,
        figures.builder_blocks_rate_60_us,
        figures.span_metrics_rate_10_us,
        figures.domain_batched_us,
        figures.cohort_tick_10_us,
        figures.cohort_tick_60_us,
    ):
        assert 0 < value < math.inf
    assert figures.load_average_1min >= 0
    assert 0 < figures.fast_path_us < figures.builder_rate_10_us


def test_a_small_fleet_run_loses_nothing_and_reports_its_rates(tmp_path: Path) -> None:
    result = run_box_bench(
        accuracy=False,
        cpu=False,
        fleet_boxes=10,
        fleet_seconds=1.0,
        processes=1,
        keys_dir=tmp_path / "keys",
        fleet_warmup_s=0.2,
    )
    fleet = result.fleet
    assert fleet is not None
    assert (fleet.boxes, fleet.processes) == (10, 1)
    assert fleet.lost == 0
    assert fleet.gaps == 0
    assert fleet.boxes_missing_first == 0
    assert fleet.received == fleet.sent > 0
    assert fleet.expected_per_s == 60.0
    assert fleet.sent_per_s > 0 and fleet.received_per_s > 0
    assert fleet.fds_max > 0
    assert (tmp_path / "keys" / "fleet-boxes.csv").exists()
    assert result.machine["open_files_limit"]


def test_the_cli_prints_one_json_object() -> None:
    root = typer.Typer(cls=OpqGroup)
    root.add_typer(bench.app, name="bench")
    result = CliRunner().invoke(
        root, ["bench", "box", "--json", "--no-fleet", "--no-cpu", "--signal-seconds", "1"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["fleet"] is None and figures["cpu"] is None
    assert figures["accuracy"]["frequency"]["unit"] == "mHz"
