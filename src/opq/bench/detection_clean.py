"""The clean-supply part of `opq bench detection`: a day of a clean island grid through the whole chain."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from scipy import stats

from opq.app.offline import analyze_recording
from opq.bench.detection_labels import CYCLES_PER_MEASUREMENT, ISLAND_SUPPLY, START_MS, class_keys, seconds_of
from opq.box.scenario import scenario_from_dict
from opq.box.simulator import Simulator
from opq.box.source import SourceCycle
from opq.config import MakaiSettings, MaukaSettings
from opq.domain.constants import SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE
from opq.mauka.plugin import Finding, Plugin

ProgressFn = Callable[[str], None]

CLEAN_SEED: Final = 1159
CLEAN_CHUNK_S: Final = 3600
"""The clean supply is played an hour at a time: the offline chain holds its whole input in memory."""


@dataclass(frozen=True)
class CleanFigures:
    """Incidents on a clean supply: how many, per box-day, and what the chain cost per box-second."""

    hours: float
    boxes: int
    box_days: float
    scaled_from_hours: float | None
    """Set when fewer than 24 hours were run: the per-box-day figures are scaled from this many."""
    supply: dict[str, Any]
    measurements: int
    abnormal_measurements: int
    captures: int
    incidents: int
    incidents_by_class: dict[str, int]
    incidents_per_box_day: float
    incidents_per_box_day_95_upper: float
    """One-sided 95 % upper bound of the rate (3 / box-days when there were none)."""
    longest_gap_ms: int
    """Longest time between two cycles: an outage needs a silence of outage_after_s."""
    first_incidents: list[dict[str, Any]]
    wall_s: float
    cpu_s: float
    us_per_box_s: float
    """CPU of the chain (synthesis included) per simulated box-second [µs]."""


class CycleRange:
    """Cycles [first, stop) of a simulator as a SampleSource, noting the longest gap between two cycles."""

    def __init__(self, simulator: Simulator, first_cycle: int, stop_cycle: int) -> None:
        self.simulator = simulator
        self.first_cycle = first_cycle
        self.stop_cycle = stop_cycle
        self.longest_gap_ms = 0

    @property
    def calibration_constant(self) -> float:
        """ADC counts per volt."""
        return self.simulator.calibration_constant

    def cycles(self) -> Iterator[SourceCycle]:
        """The range's cycles in time order (the supply has no outage, so one per cycle index)."""
        previous_ms = None
        stop_ms = self.simulator.timestamp_ms_of_cycle(self.stop_cycle)
        for cycle in self.simulator.cycles(self.first_cycle):
            if cycle.timestamp_ms >= stop_ms:
                return
            if previous_ms is not None:
                self.longest_gap_ms = max(self.longest_gap_ms, cycle.timestamp_ms - previous_ms)
            previous_ms = cycle.timestamp_ms
            yield cycle


def run_clean(
    hours: float,
    boxes: int,
    plugins: Sequence[Plugin],
    makai: MakaiSettings,
    progress: ProgressFn,
    mauka: MaukaSettings | None = None,
) -> CleanFigures:
    """Incidents of `boxes` boxes (each its own supply seed) on `hours` of a clean supply.

    The supply is played an hour at a time (CLEAN_CHUNK_S), so the box's metrics and Makai's planner
    start afresh each hour, as after a reconnect: the per-cycle work is the same. The measurements
    go through Mauka's frequency tracker too, with `mauka`'s settings (the defaults if None).
    """
    mauka = mauka or MaukaSettings()
    cycles_per_chunk = CLEAN_CHUNK_S * SAMPLE_RATE_HZ // SAMPLES_PER_CYCLE
    total_cycles = round(hours * 3600 * SAMPLE_RATE_HZ / SAMPLES_PER_CYCLE)
    measurements = abnormal = captures = longest_gap_ms = 0
    incidents: list[Finding] = []
    wall, cpu = time.perf_counter(), time.process_time()
    for box in range(boxes):
        scenario = scenario_from_dict({"supply": {**ISLAND_SUPPLY, "seed": CLEAN_SEED + box}}, "clean")
        simulator = Simulator(scenario, start_ms=START_MS)
        for first in range(0, total_cycles, cycles_per_chunk):
            source = CycleRange(simulator, first, min(first + cycles_per_chunk, total_cycles))
            analysis = analyze_recording(
                source,
                plugins,
                settings=makai,
                cycles_per_measurement=CYCLES_PER_MEASUREMENT,
                mauka=mauka,
            )
            measurements += analysis.measurements
            abnormal += analysis.abnormal_measurements
            captures += len(analysis.captures)
            incidents += analysis.findings
            longest_gap_ms = max(longest_gap_ms, source.longest_gap_ms)
            done_h = min(first + cycles_per_chunk, total_cycles) * SAMPLES_PER_CYCLE / SAMPLE_RATE_HZ / 3600
            progress(
                f"clean supply, box {box + 1}/{boxes}: {done_h:.1f} of {hours:g} h, "
                f"{captures} captures, {len(incidents)} incidents, {time.perf_counter() - wall:.0f} s"
            )
    wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    box_days = boxes * hours / 24
    return CleanFigures(
        hours=hours,
        boxes=boxes,
        box_days=round(box_days, 4),
        scaled_from_hours=None if hours >= 24 else hours,
        supply=dict(ISLAND_SUPPLY),
        measurements=measurements,
        abnormal_measurements=abnormal,
        captures=captures,
        incidents=len(incidents),
        incidents_by_class=dict(Counter(k for f in incidents for k in class_keys(f))),
        incidents_per_box_day=round(len(incidents) / box_days, 3),
        incidents_per_box_day_95_upper=round(_poisson_upper_95(len(incidents)) / box_days, 3),
        longest_gap_ms=longest_gap_ms,
        first_incidents=[
            {"at_s": seconds_of(f.start_ms), "end_s": seconds_of(f.end_ms), "classes": list(class_keys(f))}
            for f in incidents[:20]
        ],
        wall_s=round(wall_s, 1),
        cpu_s=round(cpu_s, 1),
        us_per_box_s=round(cpu_s * 1e6 / (boxes * hours * 3600), 1),
    )


def _poisson_upper_95(count: int) -> float:
    """One-sided 95 % upper bound of a Poisson mean given `count` events (3.0 for none)."""
    return float(stats.chi2.ppf(0.95, 2 * count + 2) / 2)
