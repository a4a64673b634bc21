"""The box benchmark's metric sections: opq.domain's accuracy against known truth, and its CPU cost.

Accuracy uses simulated supplies whose truth is a parameter of the scenario: the RMS of a sine
with harmonics and noise, a constant (or sinusoidally wandering) frequency, a THD. CPU is process
time per box-second of signal, the median of repeats, for each path a box's metrics can take.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from opq.box.disturbances import SupplyModel
from opq.box.fleet_metrics import BoxRates, FastMeter, retain_freed_memory
from opq.box.measurement_cohort import MeasurementCohort
from opq.box.measuring import MeasurementBuilder
from opq.box.scenario import Scenario, scenario_from_dict
from opq.box.simulator import Simulator, Variations
from opq.box.source import SourceCycle
from opq.domain import (
    frequency_per_window,
    rms_per_cycle,
    rms_per_window,
    thd_per_window,
    waveform_metrics,
)
from opq.domain.constants import DEFAULT_CALIBRATION_COUNTS_PER_V
from opq.domain.span_metrics import span_metrics

NOMINAL_V: Final = 120.0
RMS_WINDOW_CYCLES: Final = 12  # IEC 61000-4-30's 10/12-cycle magnitude interval at 60 Hz
FREQUENCY_WINDOW_CYCLES: Final = 10  # a box's frequency window, which sets its per-cycle RMS period
RMS_NOISE_V: Final = 0.3
_HARMONICS: Final = ((3, 2.0), (5, 3.0))
_THD_PATTERN: Final = ((3, 2.0), (5, 6.0), (7, 4.0), (11, 2.0), (13, 2.0))  # 8 % (scenarios/thd.toml)
CLEAN_SUPPLY: Final[dict[str, Any]] = {
    "noise_v_rms": 0.3,
    "seed": 1,
    "drift": {"amplitude_v": 0.6, "period_s": 600.0},
    "wander": {"amplitude_hz": 0.02, "period_s": 30.0, "shape": "random"},
    "harmonics": [{"order": 3, "percent": 0.8}, {"order": 5, "percent": 1.2}],
}
"""Like `scenarios/clean.toml`: the supply of the CPU figures and of the fleet."""
COHORT_BOXES: Final = 100
"""Boxes measured together in the batched figures: a fleet shard's full-signal boxes."""
BLOCK_CYCLES: Final = 60
"""Cycles per `MeasurementBuilder.add_cycles` call in the block path: one second, as a replay or a
simulated fleet hands its boxes their cycles."""


@dataclass(frozen=True)
class ErrorFigures:
    """|measured − true| of one metric over windows, in `unit`; `cases` is the worst per case."""

    unit: str
    target: float
    windows: int
    median: float
    p99: float
    max: float
    cases: dict[str, float]


@dataclass(frozen=True)
class AccuracyFigures:
    """opq.domain on simulated ADC counts against the scenarios' known truth."""

    rms_near_nominal: ErrorFigures
    """12-cycle RMS over whole periods (`rms_per_window`), 59.9–60.1 Hz, 108–132 V [% of 120 V]."""
    rms_off_nominal: ErrorFigures
    """12-cycle RMS over whole periods, 57–63 Hz [% of 120 V]."""
    rms_cycle_off_nominal: ErrorFigures
    """One-cycle RMS as a box reports it (one period of its 10-cycle window's frequency), 57–63 Hz
    [% of 120 V]; its noise is that of 200 samples."""
    rms_blocks_off_nominal: ErrorFigures
    """The former 12-cycle RMS, √(mean of 12 fixed 200-sample block RMS²), 57–63 Hz [% of 120 V]."""
    frequency: ErrorFigures
    """10-cycle frequency, 57–63 Hz, 0.5 V noise, harmonics [mHz]."""
    thd: ErrorFigures
    """12-cycle THD of 1–20 %, 59.5–60.5 Hz [percentage points]."""


@dataclass(frozen=True)
class CpuFigures:
    """Process CPU time per box-second of signal [µs], medians of repeats."""

    builder_rate_10_us: float
    """MeasurementBuilder.add, cycle by cycle (a live box), at 10 cycles per measurement."""
    builder_rate_60_us: float
    """MeasurementBuilder.add at 60 cycles per measurement (OPQ's cadence)."""
    builder_blocks_rate_10_us: float
    """MeasurementBuilder.add_cycles, 60 cycles a call (a replay, a simulated fleet), at 10 cycles."""
    builder_blocks_rate_60_us: float
    """MeasurementBuilder.add_cycles, 60 cycles a call, at 60 cycles per measurement."""
    span_metrics_rate_10_us: float
    """`span_metrics` of each measurement's span, one box at 10 cycles per measurement: the metrics
    a live box computes, without its cycle history, window plan, summaries and message."""
    domain_batched_us: float
    """opq.domain's `waveform_metrics` over 60-cycle blocks of 60 boxes at once: the math alone."""
    synthesis_us: float
    """Simulator.counts: samples of a box, as full-signal mode and GetData pay."""
    fast_path_us: float
    """FastMeter.measure for 1,000 boxes: metrics from the model, summaries and encoding."""
    cohort_tick_10_us: float
    """MeasurementCohort.add_cycles, COHORT_BOXES boxes at once in 10-cycle ticks (the fleet's
    full-signal mode, `SignalMeter`, at its default tick), 10 cycles per measurement."""
    cohort_tick_60_us: float
    """The same in 60-cycle ticks (a one-second block per call), 10 cycles per measurement."""
    box_seconds: int
    repeats: int
    load_average_1min: float
    """At the start of the CPU figures."""


# --- accuracy -----------------------------------------------------------------------------------


def _supply(frequency_hz: float, voltage_v: float, noise_v: float, harmonics: Any, seed: int) -> Scenario:
    supply = {
        "nominal_voltage_v": voltage_v,
        "nominal_frequency_hz": frequency_hz,
        "noise_v_rms": noise_v,
        "seed": seed,
        "harmonics": [{"order": order, "percent": percent} for order, percent in harmonics],
    }
    return scenario_from_dict({"supply": supply})


def _seen_v(scenario: Scenario, cycles: int) -> npt.NDArray[np.float64]:
    simulator = Simulator(scenario, box_seed=0, start_ms=0)
    return simulator.counts(0, cycles * 200) / simulator.calibration_constant


def _figures(unit: str, target: float, errors: dict[str, npt.NDArray[np.float64]]) -> ErrorFigures:
    every = np.concatenate(list(errors.values()))
    return ErrorFigures(
        unit=unit,
        target=target,
        windows=len(every),
        median=float(np.median(every)),
        p99=float(np.percentile(every, 99)),
        max=float(every.max()),
        cases={case: float(values.max()) for case, values in errors.items()},
    )


def accuracy_of_metrics(seconds: int = 10) -> AccuracyFigures:
    """RMS, frequency and THD errors of opq.domain on `seconds` of each simulated supply."""
    cycles = 60 * seconds
    rms_near: dict[str, npt.NDArray[np.float64]] = {}
    for case, (f, u) in enumerate(
        [(59.9, 120.0), (60.0, 108.0), (60.0, 120.0), (60.0, 132.0), (60.1, 120.0)]
    ):
        rms_near[f"{f:g} Hz {u:g} V"] = _rms_errors(f, u, cycles, seed=10 + case)["window"]
    rms_off: dict[str, dict[str, npt.NDArray[np.float64]]] = {"window": {}, "cycle": {}, "blocks": {}}
    for case, f in enumerate([57.0, 58.0, 59.0, 59.5, 60.5, 61.0, 62.0, 63.0]):
        for kind, errors in _rms_errors(f, NOMINAL_V, cycles, seed=20 + case).items():
            rms_off[kind][f"{f:g} Hz"] = errors
    frequency: dict[str, npt.NDArray[np.float64]] = {}
    for case, f in enumerate(np.arange(57.0, 63.01, 0.5)):
        measured = frequency_per_window(
            _seen_v(_supply(float(f), NOMINAL_V, 0.5, _HARMONICS, 30 + case), cycles), 10
        )
        frequency[f"{f:g} Hz"] = 1000 * np.abs(measured - f)
    wander = scenario_from_dict(
        {"supply": {**CLEAN_SUPPLY, "noise_v_rms": 0.5, "wander": {"amplitude_hz": 0.05, "period_s": 5.0}}}
    )
    truth = SupplyModel(wander).frequency_hz(0, cycles).reshape(-1, 10).mean(axis=1)
    frequency["60 Hz ± 0.05 Hz wander"] = 1000 * np.abs(
        frequency_per_window(_seen_v(wander, cycles), 10) - truth
    )
    thd: dict[str, npt.NDArray[np.float64]] = {}
    for case, (percent, f) in enumerate((p, f) for p in (1, 2, 5, 8, 12, 16, 20) for f in (59.5, 60.0, 60.5)):
        harmonics = [(order, share * percent / 8) for order, share in _THD_PATTERN]
        seen_v = _seen_v(_supply(f, NOMINAL_V, 0.2, harmonics, 50 + case), cycles)
        thd[f"{percent} % at {f:g} Hz"] = np.abs(100 * thd_per_window(seen_v, 12) - percent)
    return AccuracyFigures(
        rms_near_nominal=_figures("% of 120 V", 0.1, rms_near),
        rms_off_nominal=_figures("% of 120 V", 0.1, rms_off["window"]),
        # IEC 61000-4-30 Class A asks ±0.2 % of Udin of the one-cycle Urms(1/2).
        rms_cycle_off_nominal=_figures("% of 120 V", 0.2, rms_off["cycle"]),
        rms_blocks_off_nominal=_figures("% of 120 V", 0.1, rms_off["blocks"]),
        frequency=_figures("mHz", 10.0, frequency),
        thd=_figures("percentage points", 0.1, thd),
    )


def _rms_errors(
    frequency_hz: float, voltage_v: float, cycles: int, seed: int
) -> dict[str, npt.NDArray[np.float64]]:
    """|RMS − true RMS| [% of 120 V] of 12-cycle windows, single cycles and the former fixed blocks.

    True: √(U²·(1 + Σ harmonic²) + σ²).
    """
    truth = math.sqrt(voltage_v**2 * (1 + sum((p / 100) ** 2 for _, p in _HARMONICS)) + RMS_NOISE_V**2)
    seen_v = _seen_v(_supply(frequency_hz, voltage_v, RMS_NOISE_V, _HARMONICS, seed), cycles)
    window_v = rms_per_window(seen_v, RMS_WINDOW_CYCLES)
    frequency = frequency_per_window(seen_v, FREQUENCY_WINDOW_CYCLES)
    cycle_v = rms_per_cycle(seen_v, np.repeat(frequency, FREQUENCY_WINDOW_CYCLES))
    blocks_v = np.sqrt(np.mean(rms_per_cycle(seen_v).reshape(-1, RMS_WINDOW_CYCLES) ** 2, axis=1))
    return {
        kind: np.asarray(100 * np.abs(values - truth) / NOMINAL_V, dtype=np.float64)
        for kind, values in (("window", window_v), ("cycle", cycle_v), ("blocks", blocks_v))
    }


# --- CPU ----------------------------------------------------------------------------------------


def _median_cpu_us(run: Callable[[], object], box_seconds: float, repeats: int) -> float:
    spent = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        spent.append(time.process_time() - started)
    return float(np.median(spent)) / box_seconds * 1e6


def cpu_of_metrics(repeats: int = 5, box_seconds: int = 60) -> CpuFigures:
    """CPU per box-second of the full-signal paths, opq.domain alone, synthesis and the fast path."""
    clean = scenario_from_dict({"supply": CLEAN_SUPPLY})
    simulator = Simulator(clean, box_seed=1000, start_ms=0)
    cycles = 60 * box_seconds
    counts = simulator.counts(0, cycles * 200).reshape(cycles, 200)
    timestamps_ms = [simulator.timestamp_ms_of_cycle(i) for i in range(cycles)]
    taken = [SourceCycle(timestamps_ms[i], counts[i]) for i in range(cycles)]

    def build(rate: int) -> Callable[[], object]:
        def run() -> None:
            builder = MeasurementBuilder("1000", DEFAULT_CALIBRATION_COUNTS_PER_V, rate)
            for cycle in taken:
                builder.add(cycle)

        return run

    def build_blocks(rate: int) -> Callable[[], object]:
        def run() -> None:
            builder = MeasurementBuilder("1000", DEFAULT_CALIBRATION_COUNTS_PER_V, rate)
            for first in range(0, cycles, BLOCK_CYCLES):
                builder.add_cycles(
                    timestamps_ms[first : first + BLOCK_CYCLES], counts[first : first + BLOCK_CYCLES]
                )

        return run

    samples_v = counts.ravel() / DEFAULT_CALIBRATION_COUNTS_PER_V
    blocks_v = samples_v.reshape(box_seconds, 60 * 200)

    def measure_spans() -> None:
        # Each measurement's span: its 12-cycle THD window, which holds its 10 cycles, and a cycle
        # of filter context on each side, as `MeasurementBuilder` plans it.
        for stop in range(13, cycles, 10):
            span_v = samples_v[(stop - 13) * 200 : (stop + 1) * 200]
            span_metrics(span_v, [(3, 13)], [(1, 13)], period_windows=_SPAN_PERIOD_WINDOWS)

    ids = [str(1000 + i) for i in range(1000)]
    model = SupplyModel(clean)
    fast_seconds = 10

    def fast() -> None:
        meter = FastMeter(
            [model],
            [0] * len(ids),
            Variations.for_boxes(range(1000, 2000)),
            ids,
            BoxRates(len(ids), 10),
            start_ms=0,
            calibration_constant=DEFAULT_CALIBRATION_COUNTS_PER_V,
        )
        for cycle in range(0, 60 * fast_seconds, 10):
            meter.measure(cycle, 10)

    load_average_1min = round(os.getloadavg()[0], 2)
    figures = dict(
        builder_rate_10_us=_median_cpu_us(build(10), box_seconds, repeats),
        builder_rate_60_us=_median_cpu_us(build(60), box_seconds, repeats),
        builder_blocks_rate_10_us=_median_cpu_us(build_blocks(10), box_seconds, repeats),
        builder_blocks_rate_60_us=_median_cpu_us(build_blocks(60), box_seconds, repeats),
        span_metrics_rate_10_us=_median_cpu_us(measure_spans, box_seconds, repeats),
        domain_batched_us=_median_cpu_us(lambda: waveform_metrics(blocks_v), box_seconds, repeats),
        synthesis_us=_median_cpu_us(lambda: simulator.counts(0, cycles * 200), box_seconds, repeats),
        fast_path_us=_median_cpu_us(fast, len(ids) * fast_seconds, max(1, repeats // 2)),
    )
    # Last: the allocator setting `SignalMeter` makes for its process stays for the rest of this one.
    retain_freed_memory()
    return CpuFigures(
        **figures,
        cohort_tick_10_us=_cohort_cpu_us(simulator, 10, min(box_seconds, 10), repeats),
        cohort_tick_60_us=_cohort_cpu_us(simulator, 60, min(box_seconds, 10), repeats),
        box_seconds=box_seconds,
        repeats=repeats,
        load_average_1min=load_average_1min,
    )


_SPAN_PERIOD_WINDOWS: Final = [-1, -1, -1] + [0] * 10 + [-1]
"""The period each cycle of a 14-cycle measurement span takes: its frequency window's, or nominal."""


def _cohort_cpu_us(simulator: Simulator, tick_cycles: int, seconds: int, repeats: int) -> float:
    """CPU per box-second of COHORT_BOXES boxes measured together, `tick_cycles` cycles a call."""
    cycles = 60 * seconds
    # Each box its own signal (seeds of the fleet's boxes), so no two rows are alike.
    counts = np.stack(
        [
            Simulator(simulator.model, box_seed=1000 + box, start_ms=0).counts(0, cycles * 200)
            for box in range(COHORT_BOXES)
        ]
    ).reshape(COHORT_BOXES, cycles, 200)
    timestamps_ms = [simulator.timestamp_ms_of_cycle(i) for i in range(cycles)]

    def run() -> None:
        cohort = MeasurementCohort([DEFAULT_CALIBRATION_COUNTS_PER_V] * COHORT_BOXES, 10)
        for first in range(0, cycles, tick_cycles):
            cohort.add_cycles(
                timestamps_ms[first : first + tick_cycles], counts[:, first : first + tick_cycles]
            )

    return _median_cpu_us(run, COHORT_BOXES * seconds, repeats)
