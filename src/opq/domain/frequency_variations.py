"""Frequency variations: runs of a per-cycle frequency series beyond the seed's limits, with hysteresis."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from opq.domain.constants import NOMINAL_FREQUENCY_HZ, SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE

FrequencyKind = Literal["FREQUENCY_SWELL", "FREQUENCY_SAG", "FREQUENCY_INTERRUPTION"]
IeeeDuration = Literal["INSTANTANEOUS", "MOMENTARY", "TEMPORARY", "SUSTAINED", "UNDEFINED"]

CYCLE_MS: Final = SAMPLES_PER_CYCLE * 1000 / SAMPLE_RATE_HZ
"""Length of one 200-sample box cycle [ms] (16.67 ms, whatever the grid frequency)."""

_EXTREME_VALUES = 5  # values averaged for the extreme [values]

# OPQ Mauka's mapping of an incident's duration to a category (opq-original §5.6), upper bounds [ms].
_IEEE_DURATIONS: Final[tuple[tuple[float, IeeeDuration], ...]] = (
    (1000 / 120, "UNDEFINED"),
    (500.0, "INSTANTANEOUS"),
    (3_000.0, "MOMENTARY"),
    (60_000.0, "TEMPORARY"),
)


def ieee_duration(duration_ms: float) -> IeeeDuration:
    """IEEE 1159 duration category of a variation lasting `duration_ms` [ms], as OPQ Mauka mapped it.

    (8.33 ms, 500 ms] INSTANTANEOUS, (500 ms, 3 s] MOMENTARY, (3 s, 60 s] TEMPORARY, above SUSTAINED;
    half a cycle or less (or NaN) is UNDEFINED (opq-original §5.6).
    """
    if not duration_ms > _IEEE_DURATIONS[0][0]:
        return "UNDEFINED"
    return next((name for bound, name in _IEEE_DURATIONS[1:] if duration_ms <= bound), "SUSTAINED")


def runs_beyond(
    values: npt.NDArray[np.float64], limit: float, release: float, *, above: bool
) -> list[tuple[int, int]]:
    """Index ranges [first, last + 1) of runs of `values` beyond `limit`, with hysteresis.

    A run is a longest stretch of values beyond `release` (> if `above`, else <; `release` is
    `limit` loosened by the hysteresis) that reaches beyond `limit` somewhere. This is the usual
    enter-at-limit, leave-at-release rule, except that the start, too, is where the values passed
    `release`: the runs are the same read forwards or backwards, and a value hovering at the limit
    neither splits a run nor delays its start. NaN (nothing measured) is skipped: it neither
    starts, extends nor ends a run, so a run carries on across a gap whose neighbours are both
    beyond `release`, and begins and ends at measured values.
    """
    values = np.asarray(values, dtype=np.float64)
    measured = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        beyond = (values > limit) if above else (values < limit)
        holding = (values > release) if above else (values < release)
    inside = np.flatnonzero(measured & holding)
    if inside.size == 0:
        return []
    # Measured values within the release level split the series into stretches.
    stretch = np.searchsorted(np.flatnonzero(measured & ~holding), inside)
    new = np.diff(stretch) != 0
    firsts, lasts = inside[np.r_[True, new]], inside[np.r_[new, True]]
    reached = np.cumsum(beyond & measured)
    keep = reached[lasts] - reached[firsts] + beyond[firsts] > 0
    return list(zip(firsts[keep].tolist(), (lasts[keep] + 1).tolist(), strict=True))


@dataclass(frozen=True)
class FrequencyLimits:
    """When the frequency is a variation: limits [Hz] from the seed's data model, and how long [cycles].

    A swell is a run of values above `swell_hz − hysteresis_hz` that goes above `swell_hz`; a sag
    one below `sag_hz + hysteresis_hz` that goes below `sag_hz` (`runs_beyond`). A sag holding a
    run below `interruption_hz` (same hysteresis, same minimum) is an interruption. Runs with
    fewer than `min_duration_cycles` measured values are dropped. The default, 12 cycles (≈200 ms,
    the IEC 61000-4-30 basic interval at 60 Hz), is far above the one or two values a voltage
    phase jump or a sag edge bends a zero-crossing frequency by (±0.5 to 2.5 Hz over a 2-cycle
    window: a 10° jump reads 62.4 Hz), and above the cycle or two an island grid's ordinary
    ±0.05-0.15 Hz wander pokes past a limit; a grid's inertia keeps a real excursion past a limit
    for far longer. The 0.02 Hz hysteresis is ~6× the 2-cycle estimate's noise (3 mHz rms with
    0.4 V rms noise on 120 V) and 20 % of the ±0.1 Hz band.
    """

    swell_hz: float = 60.1
    sag_hz: float = 59.9
    interruption_hz: float = 58.0
    hysteresis_hz: float = 0.02
    min_duration_cycles: int = 12
    nominal_hz: float = NOMINAL_FREQUENCY_HZ

    def __post_init__(self) -> None:
        values = (
            f"interruption_hz={self.interruption_hz}, sag_hz={self.sag_hz}, nominal_hz={self.nominal_hz}, "
            f"swell_hz={self.swell_hz}, hysteresis_hz={self.hysteresis_hz}"
        )
        limits = (self.interruption_hz, self.sag_hz, self.nominal_hz, self.swell_hz, self.hysteresis_hz)
        if not all(math.isfinite(v) for v in limits):
            raise ValueError(f"frequency limits must be finite ({values})")
        if not self.hysteresis_hz >= 0:
            raise ValueError(f"hysteresis_hz must be >= 0 ({values})")
        # Hysteresis must not carry a sag past nominal, nor an interruption past the sag limit.
        if not (
            0 < self.interruption_hz + self.hysteresis_hz <= self.sag_hz
            and self.sag_hz + self.hysteresis_hz <= self.nominal_hz <= self.swell_hz - self.hysteresis_hz
        ):
            raise ValueError(
                f"need 0 < interruption_hz < sag_hz < nominal_hz < swell_hz, hysteresis_hz apart ({values})"
            )
        if self.min_duration_cycles < 1:
            raise ValueError(f"min_duration_cycles is {self.min_duration_cycles}; expected at least 1")


@dataclass(frozen=True)
class FrequencyVariation:
    """One frequency variation: box cycles [start_cycle, end_cycle) and its extreme [Hz].

    `open_start` / `open_end` say it was already in progress at the first measured value / still at
    the last one, which makes the duration a lower bound.
    """

    kind: FrequencyKind
    start_cycle: int
    end_cycle: int
    extreme_hz: float
    """The highest frequency of a swell, the lowest of a sag or an interruption [Hz], of the mean of
    5 consecutive values (6 cycles): 1.3 mHz rms of noise instead of a 2-cycle value's 3 mHz."""
    deviation_hz: float
    """`extreme_hz` minus nominal [Hz]: positive for a swell, negative otherwise."""
    open_start: bool = False
    open_end: bool = False

    @property
    def duration_cycles(self) -> int:
        """Duration [box cycles of 200 samples]."""
        return self.end_cycle - self.start_cycle

    @property
    def duration_ms(self) -> float:
        """Duration [ms]."""
        return self.duration_cycles * CYCLE_MS


DEFAULT_LIMITS: Final = FrequencyLimits()


def frequency_variations(
    frequency_hz: npt.ArrayLike, limits: FrequencyLimits = DEFAULT_LIMITS, *, window_cycles: int = 2
) -> list[FrequencyVariation]:
    """The frequency swells, sags and interruptions in a per-cycle frequency series [Hz], by start.

    Value k covers box cycles [k, k + `window_cycles`) (as `Features.cycle_frequency_hz`: 2). A run
    of values k0..k1 beyond the limits spans cycles [k0, k1 + window_cycles): a value straddling a
    step counts once the part of its window past the step pulls it past the limit, so start and
    end are within about one cycle of the truth (two for a step of 2 Hz or more). The classes are
    the seed's: FREQUENCY_SWELL above 60.1 Hz, FREQUENCY_SAG below 59.9 Hz, FREQUENCY_INTERRUPTION
    below 58 Hz (IEEE 1159 category 7.0 puts power-frequency variations at ±0.1 Hz). NaN (no
    voltage) is skipped as `runs_beyond` says: it never starts or ends a variation, nor counts
    toward the minimum duration.
    """
    if window_cycles < 1:
        raise ValueError(f"window_cycles is {window_cycles}; expected at least 1")
    values = np.asarray(frequency_hz, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"frequency_hz has shape {values.shape}; expected a 1-D series")
    lim = limits
    swells = runs_beyond(values, lim.swell_hz, lim.swell_hz - lim.hysteresis_hz, above=True)
    sags = runs_beyond(values, lim.sag_hz, lim.sag_hz + lim.hysteresis_hz, above=False)
    interruptions = _long_enough(
        values,
        runs_beyond(values, lim.interruption_hz, lim.interruption_hz + lim.hysteresis_hz, above=False),
        lim,
    )
    measured = np.flatnonzero(~np.isnan(values))
    found = []
    for first, end in _long_enough(values, swells, lim):
        found.append(_variation(values, first, end, "FREQUENCY_SWELL", lim, measured, window_cycles))
    for first, end in _long_enough(values, sags, lim):
        # An interruption is a sag that went below the interruption limit for long enough.
        inside = any(first <= start < end for start, _ in interruptions)
        kind: FrequencyKind = "FREQUENCY_INTERRUPTION" if inside else "FREQUENCY_SAG"
        found.append(_variation(values, first, end, kind, lim, measured, window_cycles))
    return sorted(found, key=lambda v: v.start_cycle)


def _long_enough(
    values: npt.NDArray[np.float64], runs: list[tuple[int, int]], limits: FrequencyLimits
) -> list[tuple[int, int]]:
    """The runs holding at least `min_duration_cycles` measured values."""
    return [
        (first, end)
        for first, end in runs
        if np.count_nonzero(~np.isnan(values[first:end])) >= limits.min_duration_cycles
    ]


def _variation(
    values: npt.NDArray[np.float64],
    first: int,
    end: int,
    kind: FrequencyKind,
    limits: FrequencyLimits,
    measured: npt.NDArray[np.intp],
    window_cycles: int,
) -> FrequencyVariation:
    run = values[first:end]
    # The extreme of a moving mean: the raw extreme of hundreds of values is their noisiest one.
    measured_run = run[~np.isnan(run)]
    smoothed = np.convolve(measured_run, np.full(_EXTREME_VALUES, 1 / _EXTREME_VALUES), "valid")
    if smoothed.size == 0:
        smoothed = measured_run
    extreme_hz = float(smoothed.max() if kind == "FREQUENCY_SWELL" else smoothed.min())
    return FrequencyVariation(
        kind=kind,
        start_cycle=first,
        end_cycle=end - 1 + window_cycles,
        extreme_hz=extreme_hz,
        deviation_hz=extreme_hz - limits.nominal_hz,
        open_start=bool(first == measured[0]),
        open_end=bool(end - 1 == measured[-1]),
    )
