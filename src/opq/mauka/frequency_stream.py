"""Frequency variations from the live measurement stream: pure, per box, fed measurements and times.

Makai captures a waveform only when a measurement leaves its trigger band (±0.5 % of 60 Hz by
default, ±0.3 Hz), while IEEE 1159 category 7.0 puts power-frequency variations at ±0.1 Hz: a step of
0.1 to 0.3 Hz is never captured. Every measurement carries the box's 10-cycle frequency (min, max and
average of its windows), so the variations are followed here, from the stream alone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Final, Literal

from opq.domain import FREQUENCY_WINDOW_CYCLES, NOMINAL_VOLTAGE_V
from opq.domain.frequency_variations import CYCLE_MS, FrequencyKind, FrequencyLimits
from opq.protocol import BoxMeasurement

logger = logging.getLogger(__name__)

WINDOW_MS: Final = FREQUENCY_WINDOW_CYCLES * CYCLE_MS
"""Length of one of the box's frequency windows [ms] (10 cycles)."""
Side = Literal["swell", "sag"]
_SIDES: Final[tuple[Side, ...]] = ("swell", "sag")

OVERLAP_MARGIN_MS: Final = 200
"""Two frequency findings of one side whose spans come this close [ms] are one variation."""
FLAG_LOW_PU: Final = 0.9
FLAG_HIGH_PU: Final = 1.1
"""A measurement whose per-cycle rms leaves [0.9, 1.1] pu is flagged (IEC 61000-4-30), as the
waveform plugin flags its values: a dip's edges bend the zero crossings its frequency comes from."""


@dataclass(frozen=True)
class StreamLimits:
    """When the stream's frequency is a variation: the plugin's limits [Hz], and how long [ms].

    `min_duration_ms` (400 ms: more than two 10-cycle windows, i.e. at least three measurements at
    the default rate) is longer than the plugin's 12 cycles because a 10-cycle value is a mean: a
    +0.5 Hz step of 6 cycles straddling two windows reads +0.15 Hz in both, as a 20-cycle +0.15 Hz
    step would, and a 10° phase jump reads ±0.17 Hz in one. A variation too short for three
    windows is the waveform plugin's (captured when it leaves Makai's band) or goes unreported.
    `max_gap_ms`: a run whose box sends no frequency for this long is closed at its last value.
    """

    frequency: FrequencyLimits = field(default_factory=FrequencyLimits)
    min_duration_ms: float = 400.0
    max_gap_ms: float = 10_000.0
    nominal_v: float = NOMINAL_VOLTAGE_V

    def __post_init__(self) -> None:
        if not (self.min_duration_ms >= 0 and self.max_gap_ms > 0):
            raise ValueError(
                f"min_duration_ms ({self.min_duration_ms}) must be >= 0 and max_gap_ms "
                f"({self.max_gap_ms}) > 0"
            )


@dataclass(frozen=True)
class StreamVariation:
    """One frequency variation at a box, as its measurements saw it [ms since epoch, Hz].

    `start_ms` is the start of the first measured span beyond the release level (the previous
    measurement's time), `end_ms` the time of the last one. `open_end`: the variation was still in
    progress when it was closed (the box fell silent, or Mauka stopped), so its end is a lower bound.
    """

    box_id: str
    kind: FrequencyKind
    start_ms: int
    end_ms: int
    extreme_hz: float
    deviation_hz: float
    measurements: int
    open_end: bool = False

    @property
    def duration_ms(self) -> int:
        """Duration [ms]."""
        return self.end_ms - self.start_ms


@dataclass
class _Run:
    """Measurements on one side of nominal beyond the release level, in progress."""

    start_ms: int
    last_ms: int
    extreme_hz: float
    measurements: int = 0
    reached: bool = False
    """Whether some value went beyond the limit itself (not only the release level)."""
    deep_start_ms: int | None = None
    """Start of the current stretch below the interruption's release level (sags only)."""
    deep_reached: bool = False
    interruption: bool = False
    """A stretch below the interruption limit lasted `min_duration_ms`: the sag is an interruption."""


@dataclass
class _Box:
    last_ms: int | None = None
    """Box time of the newest measurement [ms]."""
    received_ms: int = 0
    """When (on the caller's clock) the newest measurement was fed [ms]."""
    swell: _Run | None = None
    sag: _Run | None = None


class FrequencyStreamTracker:
    """Per box, the frequency swell and sag in progress, closed with hysteresis.

    A run is a stretch of measurements beyond the release level (the limit loosened by the
    hysteresis: 60.08 / 59.92 Hz by default) that goes beyond the limit (60.1 / 59.9 Hz) somewhere;
    it starts where the values passed the release level, so a frequency hovering at the limit gives
    one run, not a stream of them (as `opq.domain.frequency_variations.runs_beyond`). A swell is
    judged on each measurement's `f.max`, a sag on `f.min`. A measurement without a usable frequency
    (none sent: an interruption; NaN, out of range, min above max; or flagged by its rms) neither
    starts, extends nor ends a run. A run lasting at least `min_duration_ms` is a variation; a sag
    holding such a stretch below the interruption limit is a FREQUENCY_INTERRUPTION.
    """

    def __init__(self, limits: StreamLimits | None = None) -> None:
        self.limits = limits or StreamLimits()
        self._boxes: dict[str, _Box] = {}
        self.rejected = 0
        """Measurements ignored because they were older than the box's newest."""

    def feed(self, measurement: BoxMeasurement, received_ms: int | None = None) -> list[StreamVariation]:
        """Take a box's next measurement; the variations it closes. `received_ms` defaults to its time."""
        box = self._boxes.setdefault(measurement.box_id, _Box())
        now_ms, previous_ms = measurement.timestamp_ms, box.last_ms
        box.received_ms = now_ms if received_ms is None else received_ms
        if previous_ms is not None and now_ms <= previous_ms:
            self.rejected += 1  # a replayed or reordered message: the runs already moved past it
            return []
        # The span this measurement covers: back to the previous one, or one window after a gap.
        contiguous = previous_ms is not None and now_ms - previous_ms <= 2 * WINDOW_MS
        span_start_ms = previous_ms if contiguous and previous_ms is not None else round(now_ms - WINDOW_MS)
        box.last_ms = now_ms
        # A run whose box sent no usable frequency for max_gap_ms (box time) ended where it was last seen.
        closed = self._close(measurement.box_id, box, last_before_ms=now_ms - self.limits.max_gap_ms)
        frequency = _usable_frequency(measurement, self.limits)
        if frequency is None:
            return closed
        low_hz, high_hz = frequency
        closed += self._step(measurement.box_id, box, "swell", high_hz, span_start_ms, now_ms)
        closed += self._step(measurement.box_id, box, "sag", low_hz, span_start_ms, now_ms)
        return closed

    def expire(self, now_ms: int) -> list[StreamVariation]:
        """Close the runs of boxes nothing was fed from for `max_gap_ms` (by `received_ms`)."""
        closed = []
        for box_id, box in self._boxes.items():
            if now_ms - box.received_ms >= self.limits.max_gap_ms:
                closed += self._close(box_id, box)
        return closed

    def close_all(self) -> list[StreamVariation]:
        """Close every run (the stream ends: Mauka stops, a recording ends); marked `open_end`."""
        closed = []
        for box_id, box in self._boxes.items():
            closed += self._close(box_id, box)
        return closed

    def open_runs(self) -> dict[str, list[str]]:
        """The boxes with a run in progress, and its side(s)."""
        return {
            box_id: [side for side in _SIDES if getattr(box, side) is not None]
            for box_id, box in sorted(self._boxes.items())
            if box.swell is not None or box.sag is not None
        }

    def _close(self, box_id: str, box: _Box, *, last_before_ms: float | None = None) -> list[StreamVariation]:
        """Close the box's runs (only those last extended at or before `last_before_ms`, if given),
        as open-ended: whatever happened after their last value is unknown."""
        closed = []
        for side in _SIDES:
            run: _Run | None = getattr(box, side)
            if run is not None and (last_before_ms is None or run.last_ms <= last_before_ms):
                setattr(box, side, None)
                closed += self._variation(box_id, side, run, open_end=True)
        return closed

    def _step(
        self, box_id: str, box: _Box, side: Side, value_hz: float, span_start_ms: int, now_ms: int
    ) -> list[StreamVariation]:
        lim = self.limits.frequency
        above = side == "swell"
        limit, release = (
            (lim.swell_hz, lim.swell_hz - lim.hysteresis_hz)
            if above
            else (lim.sag_hz, lim.sag_hz + lim.hysteresis_hz)
        )
        run: _Run | None = getattr(box, side)
        holding = value_hz > release if above else value_hz < release
        if not holding:
            if run is None:
                return []
            setattr(box, side, None)
            return self._variation(box_id, side, run, open_end=False)
        if run is None:
            run = _Run(start_ms=span_start_ms, last_ms=now_ms, extreme_hz=value_hz)
            setattr(box, side, run)
        run.last_ms = now_ms
        run.measurements += 1
        run.reached |= value_hz > limit if above else value_hz < limit
        run.extreme_hz = max(run.extreme_hz, value_hz) if above else min(run.extreme_hz, value_hz)
        if not above:
            self._step_deep(run, value_hz, span_start_ms, now_ms)
        return []

    def _step_deep(self, run: _Run, value_hz: float, span_start_ms: int, now_ms: int) -> None:
        """Follow the stretch below the interruption limit inside a sag, with the same hysteresis."""
        lim = self.limits.frequency
        if value_hz < lim.interruption_hz + lim.hysteresis_hz:
            if run.deep_start_ms is None:
                run.deep_start_ms, run.deep_reached = span_start_ms, False
            run.deep_reached |= value_hz < lim.interruption_hz
        else:
            run.deep_start_ms = None
        if (
            run.deep_start_ms is not None
            and run.deep_reached
            and now_ms - run.deep_start_ms >= self.limits.min_duration_ms
        ):
            run.interruption = True

    def _variation(self, box_id: str, side: Side, run: _Run, *, open_end: bool) -> list[StreamVariation]:
        if not run.reached or run.last_ms - run.start_ms < self.limits.min_duration_ms:
            return []
        kind: FrequencyKind = (
            "FREQUENCY_SWELL"
            if side == "swell"
            else "FREQUENCY_INTERRUPTION"
            if run.interruption
            else "FREQUENCY_SAG"
        )
        return [
            StreamVariation(
                box_id=box_id,
                kind=kind,
                start_ms=run.start_ms,
                end_ms=run.last_ms,
                extreme_hz=run.extreme_hz,
                deviation_hz=run.extreme_hz - self.limits.frequency.nominal_hz,
                measurements=run.measurements,
                open_end=open_end,
            )
        ]


def same_variation(kind_a: str, span_a: tuple[int, int], kind_b: str, span_b: tuple[int, int]) -> bool:
    """Whether two frequency findings at one box are one variation: same side of nominal, spans that
    meet within `OVERLAP_MARGIN_MS` (the stream's bounds are one 10-cycle window coarse)."""
    swell_a, swell_b = kind_a == "FREQUENCY_SWELL", kind_b == "FREQUENCY_SWELL"
    return (
        swell_a == swell_b
        and span_a[0] <= span_b[1] + OVERLAP_MARGIN_MS
        and span_b[0] <= span_a[1] + OVERLAP_MARGIN_MS
    )


def _usable_frequency(measurement: BoxMeasurement, limits: StreamLimits) -> tuple[float, float] | None:
    """The measurement's lowest and highest frequency [Hz], or None if it has none worth judging."""
    f = measurement.metrics.get("f")
    if f is None:
        return None  # no voltage to measure a frequency on: the box left `f` out
    low, high = float(f.min), float(f.max)
    nominal = limits.frequency.nominal_hz
    # A counter glitch or a corrupt value is not a variation: no grid runs at half or twice nominal.
    if not (math.isfinite(low) and math.isfinite(high) and 0.5 * nominal < low <= high < 2 * nominal):
        return None
    rms = measurement.metrics.get("rms")
    if rms is not None and not (
        FLAG_LOW_PU * limits.nominal_v <= rms.min and rms.max <= FLAG_HIGH_PU * limits.nominal_v
    ):
        return None
    return low, high
