"""The detection benchmark: labeled synthetic recordings through the whole offline chain, and a clean day.

Each case of `detection_cases` is simulated with 0.4 V rms noise and several seeds and points on
wave, then measured as a box would, triggered and captured as Makai would, and analysed by every
Mauka plugin (`opq.app.offline.analyze_recording`). Outages are not a plugin's: Mauka's host finds
them from missing measurements, so the `OutageTracker` is driven with the timestamps of the
measurements the box makes of the same recording, checked every heartbeat as the host does.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np

from opq.app.offline import BOX_ID, analyze_recording
from opq.bench.detection_cases import CASES
from opq.bench.detection_clean import CleanFigures, ProgressFn, run_clean
from opq.bench.detection_labels import (
    CYCLE_S,
    CYCLES_PER_MEASUREMENT,
    NOISE_V_RMS,
    START_MS,
    Case,
    Expectation,
    class_keys,
    seconds_of,
)
from opq.bench.machine import machine
from opq.box.measuring import MeasurementBuilder
from opq.box.scenario import scenario_from_dict
from opq.box.simulator import Simulator
from opq.box.source import SampleSource
from opq.config import MakaiSettings, MaukaSettings
from opq.mauka.outage import OutageTracker
from opq.mauka.plugin import Finding, Plugin
from opq.mauka.registry import load_plugins
from opq.store.models import TriggerThresholds

OUTAGE_HEARTBEAT_S: Final = 5.0
"""Mauka's host checks for silent boxes this often at most (opq.mauka.service)."""


@dataclass(frozen=True)
class Found:
    """One finding of a run: its class keys, its span [s from the recording start], the keys not expected."""

    classes: tuple[str, ...]
    start_s: float
    end_s: float
    unexpected: tuple[str, ...]


@dataclass(frozen=True)
class RunResult:
    """One case played with one seed: what it expected, what the chain found, what was missed."""

    case: str
    group: str
    seed: int
    phase_deg: float
    ambiguous: str | None
    measurements: int
    abnormal_measurements: int
    captures: int
    expected: list[str]
    missed: list[str]
    unexpected: list[str]
    found: list[Found]


@dataclass(frozen=True)
class ClassFigures:
    """Recall and precision of one class key over a set of runs."""

    expected: int
    recalled: int
    recall_percent: float | None
    findings: int
    matching: int
    precision_percent: float | None


@dataclass(frozen=True)
class DetectionBenchResult:
    """Everything `opq bench detection` prints."""

    variants: int
    cases: int
    runs: int
    per_class: dict[str, ClassFigures]
    """Over the unambiguous runs: the 100 % target."""
    per_class_ambiguous: dict[str, ClassFigures]
    unambiguous_runs_exact: int
    """Unambiguous runs with every expected class found and no unexpected finding."""
    unambiguous_runs: int
    recall_target_met: bool
    precision_target_met: bool
    clean_target_met: bool | None
    runs_detail: list[RunResult]
    clean: CleanFigures | None
    cases_wall_s: float
    cases_cpu_s: float
    settings: dict[str, Any]
    machine: dict[str, str | int | float | None] = field(default_factory=dict)


def phase_deg(case: Case, seed: int) -> float:
    """The point on wave [degrees] of the fundamental at the start of a case's recording with this seed."""
    rng = np.random.default_rng([zlib.crc32(case.name.encode()), seed])
    return round(float(rng.uniform(0.0, 360.0)), 1)


def run_case(
    case: Case, seed: int, plugins: Sequence[Plugin], makai: MakaiSettings, mauka: MaukaSettings
) -> RunResult:
    """Play one case with one seed through the chain and match what it found against what it expects."""
    phase = phase_deg(case, seed)
    supply = {
        "noise_v_rms": NOISE_V_RMS,
        "seed": seed,
        "phase_deg": phase,
        "duration_s": case.duration_s,
        **case.supply,
    }
    scenario = scenario_from_dict(
        {"supply": supply, "disturbances": [dict(d) for d in case.disturbances]}, case.name
    )
    simulator = Simulator(scenario, start_ms=START_MS)
    analysis = analyze_recording(
        simulator,
        plugins,
        settings=makai,
        cycles_per_measurement=CYCLES_PER_MEASUREMENT,
        mauka=mauka,
    )
    times_ms = measurement_times_ms(simulator)
    findings = analysis.findings + outage_findings(
        times_ms, round(mauka.outage_after_s * 1000), _heartbeat_ms(mauka)
    )
    missed = [
        key for e in case.expected for key in e.classes if not any(_matches(f, key, e) for f in findings)
    ]
    found = []
    for f in findings:
        keys = class_keys(f)
        unexpected = tuple(
            k for k in keys if not any(k in _accepted(e) and _overlaps(f, e) for e in case.expected)
        )
        found.append(Found(keys, seconds_of(f.start_ms), seconds_of(f.end_ms), unexpected))
    return RunResult(
        case=case.name,
        group=case.group,
        seed=seed,
        phase_deg=phase,
        ambiguous=case.ambiguous,
        measurements=analysis.measurements,
        abnormal_measurements=analysis.abnormal_measurements,
        captures=len(analysis.captures),
        expected=[key for e in case.expected for key in e.classes],
        missed=missed,
        unexpected=[k for item in found for k in item.unexpected],
        found=found,
    )


def _overlaps(f: Finding, e: Expectation) -> bool:
    """Whether a finding's span meets the expectation's, give or take one cycle."""
    return seconds_of(f.start_ms) <= e.end_s + CYCLE_S and seconds_of(f.end_ms) >= e.start_s - CYCLE_S


def _matches(f: Finding, key: str, e: Expectation) -> bool:
    """Whether a finding has the class key (or one of its "|" alternatives) and meets the expectation."""
    return not set(key.split("|")).isdisjoint(class_keys(f)) and _overlaps(f, e)


def _accepted(e: Expectation) -> set[str]:
    """Class keys a finding over the expectation's span may carry."""
    return {alternative for key in e.classes for alternative in key.split("|")} | set(e.allowed)


def _heartbeat_ms(mauka: MaukaSettings) -> int:
    # As opq.mauka.service: the outage check runs every min(5 s, outage_after_s / 4).
    return round(min(OUTAGE_HEARTBEAT_S, mauka.outage_after_s / 4) * 1000)


def measurement_times_ms(source: SampleSource) -> list[int]:
    """The timestamps of the measurements a box makes of `source` (as the offline chain makes them)."""
    builder = MeasurementBuilder(BOX_ID, source.calibration_constant, CYCLES_PER_MEASUREMENT)
    times = [m.timestamp_ms for cycle in source.cycles() if (m := builder.add(cycle)) is not None]
    last = builder.flush()
    return times if last is None else [*times, last.timestamp_ms]


def outage_findings(times_ms: Sequence[int], outage_after_ms: int, heartbeat_ms: int) -> list[Finding]:
    """The outages Mauka's host would record from a box's measurement times, checked every heartbeat.

    An outage runs from the last measurement before the silence to the first one after it, as the
    host's incident does once the box reports again (HEALTH, OUTAGE, SUSTAINED).
    """
    if not times_ms:
        return []
    tracker = OutageTracker(outage_after_ms)
    plugged = {BOX_ID: False}
    findings = []
    starts: dict[str, int] = {}
    check_ms = times_ms[0] + heartbeat_ms
    for timestamp_ms in times_ms:
        while check_ms < timestamp_ms:
            opened, _ = tracker.check(check_ms, plugged)
            starts |= {o.box_id: o.start_ms for o in opened}
            check_ms += heartbeat_ms
        end = tracker.seen(BOX_ID, timestamp_ms)
        if end is not None:
            findings.append(
                Finding(
                    BOX_ID, starts.pop(BOX_ID), end.end_ms, "HEALTH", ("OUTAGE",), ieee_duration="SUSTAINED"
                )
            )
    return findings


def class_figures(runs: Sequence[RunResult]) -> dict[str, ClassFigures]:
    """Recall and precision of each class key over `runs`, by key."""
    expected: Counter[str] = Counter(k for r in runs for k in r.expected)
    missed: Counter[str] = Counter(k for r in runs for k in r.missed)
    findings: Counter[str] = Counter(k for r in runs for f in r.found for k in f.classes)
    unexpected: Counter[str] = Counter(k for r in runs for f in r.found for k in f.unexpected)
    figures = {}
    for key in sorted(expected.keys() | findings.keys()):
        recalled = expected[key] - missed[key]
        matching = findings[key] - unexpected[key]
        figures[key] = ClassFigures(
            expected=expected[key],
            recalled=recalled,
            recall_percent=_percent(recalled, expected[key]),
            findings=findings[key],
            matching=matching,
            precision_percent=_percent(matching, findings[key]),
        )
    return figures


def _percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100 * part / whole, 1)


def run_detection_bench(
    *,
    variants: int = 3,
    clean_hours: float = 24.0,
    clean_boxes: int = 1,
    cases: Sequence[Case] = CASES,
    only: Sequence[str] = (),
    progress: ProgressFn = lambda _step: None,
) -> DetectionBenchResult:
    """Every case played with seeds 1..`variants`, then `clean_hours` of a clean supply (0: none).

    `only`: play just the cases whose name contains one of these strings.
    """
    if only:
        cases = [case for case in cases if any(part in case.name for part in only)]
    makai, mauka = MakaiSettings(), MaukaSettings()
    plugins = load_plugins(mauka)
    runs: list[RunResult] = []
    wall, cpu = time.perf_counter(), time.process_time()
    for index, case in enumerate(cases):
        progress(f"case {index + 1}/{len(cases)}: {case.name}")
        runs += [run_case(case, seed, plugins, makai, mauka) for seed in range(1, variants + 1)]
    cases_wall_s, cases_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    clean = run_clean(clean_hours, clean_boxes, plugins, makai, progress, mauka) if clean_hours > 0 else None
    plain = [r for r in runs if r.ambiguous is None]
    per_class = class_figures(plain)
    return DetectionBenchResult(
        variants=variants,
        cases=len(cases),
        runs=len(runs),
        per_class=per_class,
        per_class_ambiguous=class_figures([r for r in runs if r.ambiguous is not None]),
        unambiguous_runs_exact=sum(1 for r in plain if not r.missed and not r.unexpected),
        unambiguous_runs=len(plain),
        recall_target_met=all(c.recall_percent in (None, 100.0) for c in per_class.values()),
        precision_target_met=all(c.precision_percent in (None, 100.0) for c in per_class.values()),
        clean_target_met=None if clean is None else clean.incidents_per_box_day <= 1.0,
        runs_detail=runs,
        clean=clean,
        cases_wall_s=round(cases_wall_s, 1),
        cases_cpu_s=round(cases_cpu_s, 1),
        settings={
            "trigger_thresholds": asdict(TriggerThresholds()),
            "pre_trigger_ms": makai.pre_trigger_ms,
            "post_trigger_ms": makai.post_trigger_ms,
            "max_piece_ms": makai.max_piece_ms,
            "outage_after_s": mauka.outage_after_s,
            "outage_heartbeat_ms": _heartbeat_ms(mauka),
            "frequency_from_measurements": mauka.frequency_from_measurements,
            "frequency_min_duration_ms": mauka.frequency_min_duration_ms,
            "plugins": [p.name for p in plugins],
            "noise_v_rms": NOISE_V_RMS,
            "cycles_per_measurement": CYCLES_PER_MEASUREMENT,
        },
        machine=machine(),
    )
