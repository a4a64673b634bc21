"""IEEE 1159 RMS variations: the category table, and sags, swells and interruptions found in Urms(1/2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from opq.domain.constants import NOMINAL_VOLTAGE_V, SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE

Classification = Literal[
    "VOLTAGE_SAG", "VOLTAGE_SWELL", "VOLTAGE_INTERRUPTION", "UNDERVOLTAGE", "OVERVOLTAGE"
]
IeeeDuration = Literal["INSTANTANEOUS", "MOMENTARY", "TEMPORARY", "SUSTAINED"]
Kind = Literal["sag", "swell", "interruption", "undervoltage", "overvoltage"]
Family = Literal["sag", "swell", "interruption"]

HALF_CYCLE_SAMPLES: Final = SAMPLES_PER_CYCLE // 2
"""Samples between two Urms(1/2) values [samples]: value k covers samples [100k, 100k + 200)."""

IEEE1159_SOURCE: Final = (
    "IEEE Std 1159-2019 (and 2009), categories and typical characteristics of electromagnetic "
    "phenomena, 2.1-3.3 (RMS variations); as in standards.md §2.2 and OPQ Mauka's ieee1159_voltage.rs"
)

_KINDS: Final[dict[Classification, Kind]] = {
    "VOLTAGE_SAG": "sag",
    "VOLTAGE_SWELL": "swell",
    "VOLTAGE_INTERRUPTION": "interruption",
    "UNDERVOLTAGE": "undervoltage",
    "OVERVOLTAGE": "overvoltage",
}
_GENERIC: Final[dict[Family, Classification]] = {
    "sag": "VOLTAGE_SAG",
    "swell": "VOLTAGE_SWELL",
    "interruption": "VOLTAGE_INTERRUPTION",
}


@dataclass(frozen=True)
class Ieee1159Row:
    """One RMS-variation category of IEEE 1159: typical duration [cycles] and residual voltage [pu]."""

    category: str
    name: str
    classification: Classification
    ieee_duration: IeeeDuration
    min_cycles: float
    max_cycles: float
    min_pu: float
    max_pu: float

    @property
    def family(self) -> Family:
        """Whether the row is a kind of sag, swell or interruption."""
        return _FAMILIES[self.classification]


_FAMILIES: Final[dict[Classification, Family]] = {
    "VOLTAGE_SAG": "sag",
    "UNDERVOLTAGE": "sag",
    "VOLTAGE_SWELL": "swell",
    "OVERVOLTAGE": "swell",
    "VOLTAGE_INTERRUPTION": "interruption",
}
_30C: Final = 30.0
_3S: Final = 3 * 60.0  # cycles at 60 Hz
_1MIN: Final = 60 * 60.0

IEEE1159_TABLE: Final = (
    Ieee1159Row("2.1.1", "Instantaneous sag", "VOLTAGE_SAG", "INSTANTANEOUS", 0.5, _30C, 0.1, 0.9),
    Ieee1159Row("2.1.2", "Instantaneous swell", "VOLTAGE_SWELL", "INSTANTANEOUS", 0.5, _30C, 1.1, 1.8),
    Ieee1159Row("2.2.1", "Momentary interruption", "VOLTAGE_INTERRUPTION", "MOMENTARY", 0.5, _3S, 0.0, 0.1),
    Ieee1159Row("2.2.2", "Momentary sag", "VOLTAGE_SAG", "MOMENTARY", _30C, _3S, 0.1, 0.9),
    Ieee1159Row("2.2.3", "Momentary swell", "VOLTAGE_SWELL", "MOMENTARY", _30C, _3S, 1.1, 1.4),
    Ieee1159Row("2.3.1", "Temporary interruption", "VOLTAGE_INTERRUPTION", "TEMPORARY", _3S, _1MIN, 0.0, 0.1),
    Ieee1159Row("2.3.2", "Temporary sag", "VOLTAGE_SAG", "TEMPORARY", _3S, _1MIN, 0.1, 0.9),
    Ieee1159Row("2.3.3", "Temporary swell", "VOLTAGE_SWELL", "TEMPORARY", _3S, _1MIN, 1.1, 1.2),
    # IEEE 1159 lists 0.0 pu for a sustained interruption; like the shorter ones we take < 0.1 pu.
    Ieee1159Row(
        "3.1", "Sustained interruption", "VOLTAGE_INTERRUPTION", "SUSTAINED", _1MIN, math.inf, 0.0, 0.1
    ),
    Ieee1159Row("3.2", "Undervoltage", "UNDERVOLTAGE", "SUSTAINED", _1MIN, math.inf, 0.8, 0.9),
    Ieee1159Row("3.3", "Overvoltage", "OVERVOLTAGE", "SUSTAINED", _1MIN, math.inf, 1.1, 1.2),
)
"""IEEE 1159 categories 2.1.1-3.3 (see IEEE1159_SOURCE), in order of duration within each family."""


@dataclass(frozen=True)
class Ieee1159Class:
    """How IEEE 1159 names one variation; `category` is None where the table lists no such variation."""

    kind: Kind
    classification: Classification
    ieee_duration: IeeeDuration
    category: str | None


def classify_variation(
    duration_cycles: float, residual_pu: float, *, interruption_pu: float = 0.1
) -> Ieee1159Class:
    """The IEEE 1159 class of an RMS variation from its duration [cycles] and residual voltage [pu].

    The family comes from the residual: an interruption below `interruption_pu` (IEEE 1159: < 0.1 pu),
    otherwise a sag below 1 pu and a swell above. Within the family the duration picks the row:
    upper bounds are inclusive and lower bounds exclusive, as IEEE 1159 writes "> 3 s" and "> 1 min"
    (and OPQ's ieee_duration of §5.6 does). So exactly 30 cycles is INSTANTANEOUS (the original
    Rust picked MOMENTARY there), exactly 3 s MOMENTARY, exactly 1 min TEMPORARY. IEEE's 0.5-cycle
    lower bound is the shortest variation Urms(1/2) can see; anything shorter counts as the first row.
    Magnitude bounds are inclusive (an interruption's is "< 0.1"), so a sustained 0.8 pu or 0.9 pu
    sag is UNDERVOLTAGE.

    Every variation gets a class. A residual outside its row's range (a sustained sag below 0.8 pu,
    a swell above 1.8 / 1.4 / 1.2 pu, or one inside custom thresholds) keeps the row's duration and
    gets category None: if it is more severe than the row, the family's generic class (a long deep
    sag is VOLTAGE_SAG / SUSTAINED, a long high swell VOLTAGE_SWELL / SUSTAINED); if milder, the
    row's class. Hence a deeper sag never gets a milder class, nor a longer one a shorter duration.
    """
    if math.isnan(duration_cycles) or math.isnan(residual_pu):
        raise ValueError(f"duration_cycles={duration_cycles} and residual_pu={residual_pu} must be numbers")
    if residual_pu < interruption_pu:
        family: Family = "interruption"
    elif residual_pu < 1.0:
        family = "sag"
    else:
        family = "swell"
    row = next(r for r in IEEE1159_TABLE if r.family == family and duration_cycles <= r.max_cycles)
    if _within(row, residual_pu):
        return Ieee1159Class(_KINDS[row.classification], row.classification, row.ieee_duration, row.category)
    more_severe = residual_pu > row.max_pu if family == "swell" else residual_pu < row.min_pu
    classification = _GENERIC[family] if more_severe else row.classification
    return Ieee1159Class(_KINDS[classification], classification, row.ieee_duration, None)


def _within(row: Ieee1159Row, residual_pu: float) -> bool:
    if row.family == "interruption":
        return residual_pu < row.max_pu
    return row.min_pu <= residual_pu <= row.max_pu


@dataclass(frozen=True)
class VariationThresholds:
    """When Urms(1/2) is a variation (IEC 61000-4-30): nominal Udin [V], thresholds [pu of Udin].

    A dip starts when Urms(1/2) < `dip_pu` and ends when it is ≥ `dip_pu + hysteresis_pu`; a swell
    starts when Urms(1/2) > `swell_pu` and ends when it is ≤ `swell_pu - hysteresis_pu`. The
    defaults are IEC's typical 90 % / 110 % / 2 % and IEEE 1159's interruption (< 0.1 pu).
    """

    nominal_v: float = NOMINAL_VOLTAGE_V
    dip_pu: float = 0.9
    swell_pu: float = 1.1
    interruption_pu: float = 0.1
    hysteresis_pu: float = 0.02

    def __post_init__(self) -> None:
        # The two bands must not overlap, or a voltage could be in a dip and a swell at once.
        values = f"nominal_v={self.nominal_v}, interruption_pu={self.interruption_pu}, dip_pu={self.dip_pu}, "
        values += f"swell_pu={self.swell_pu}, hysteresis_pu={self.hysteresis_pu}"
        if not all(
            math.isfinite(v) for v in (self.nominal_v, self.dip_pu, self.swell_pu, self.hysteresis_pu)
        ):
            raise ValueError(f"thresholds must be finite ({values})")
        if self.nominal_v <= 0:
            raise ValueError(f"nominal_v must be > 0 ({values})")
        if not 0 <= self.interruption_pu < self.dip_pu:
            raise ValueError(f"need 0 <= interruption_pu < dip_pu ({values})")
        if self.hysteresis_pu < 0:
            raise ValueError(f"hysteresis_pu must be >= 0 ({values})")
        if not self.dip_pu + self.hysteresis_pu <= 1 <= self.swell_pu - self.hysteresis_pu:
            raise ValueError(f"need dip_pu + hysteresis_pu <= 1 <= swell_pu - hysteresis_pu ({values})")


@dataclass(frozen=True)
class Variation:
    """One RMS variation: Urms(1/2) values [start_index, end_index), its residual and IEEE 1159 class.

    `end_index` is the first value back past the threshold plus hysteresis, or the series length if
    the variation is still in progress at the end (`open_end`); `open_start` says it was already in
    progress at the first value. Either makes `duration_ms` a lower bound.
    """

    start_index: int
    end_index: int
    residual_v: float
    residual_pu: float
    kind: Kind
    classification: Classification
    ieee_duration: IeeeDuration
    category: str | None
    open_start: bool = False
    open_end: bool = False

    @property
    def start_sample(self) -> int:
        """First sample of the first window past the threshold [samples]: the variation's start."""
        return self.start_index * HALF_CYCLE_SAMPLES

    @property
    def end_sample(self) -> int:
        """First sample of the window that ended the variation [samples]: the variation's end."""
        return self.end_index * HALF_CYCLE_SAMPLES

    @property
    def duration_cycles(self) -> float:
        """Duration [cycles], a multiple of half a cycle."""
        return (self.end_index - self.start_index) / 2

    @property
    def duration_ms(self) -> float:
        """Duration [ms] at the box's 12 kHz, 200 samples a cycle (exact at 200 ms, 500 ms, 3 s, …)."""
        # One division of integers, so round durations compare exactly against curve vertices.
        return (self.end_sample - self.start_sample) * 1000 / SAMPLE_RATE_HZ


DEFAULT_THRESHOLDS: Final = VariationThresholds()


def rms_variations(
    urms_half_v: npt.NDArray[np.float64], thresholds: VariationThresholds = DEFAULT_THRESHOLDS
) -> list[Variation]:
    """The sags, swells and interruptions in a Urms(1/2) series [V], in order of start.

    Detection follows IEC 61000-4-30's dips and swells, with hysteresis, so a voltage hovering at a
    threshold gives one variation; classification is IEEE 1159's (`classify_variation`) from the
    duration and the residual voltage (the lowest Urms(1/2) of a dip, the highest of a swell).
    A dip that falls below the interruption threshold is one variation, from the dip's start to its
    end, classed as an interruption (IEC: an interruption is a dip below that threshold); how long
    it stayed that low is not reported separately.

    Value k covers samples [100k, 100k + 200). A variation starts at the first sample of the first
    window past the threshold and ends at the first sample of the first window back past threshold
    plus hysteresis, so for a step change both are within one cycle of the truth. (Stamping the
    end at the end of that window, as we read IEC 61000-4-30 to do, would put it more than a cycle
    late with a one-cycle window.) NaN values neither start nor end a variation.
    """
    urms_v = np.asarray(urms_half_v, dtype=np.float64)
    urms_pu = urms_v / thresholds.nominal_v
    t = thresholds
    dips = _runs(urms_pu < t.dip_pu, urms_pu >= t.dip_pu + t.hysteresis_pu)
    swells = _runs(urms_pu > t.swell_pu, urms_pu <= t.swell_pu - t.hysteresis_pu)
    variations = [_variation(urms_v, start, end, is_dip=True, thresholds=t) for start, end in dips]
    variations += [_variation(urms_v, start, end, is_dip=False, thresholds=t) for start, end in swells]
    return sorted(variations, key=lambda v: v.start_index)


def _runs(enter: npt.NDArray[np.bool_], leave: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Half-open index ranges during which a state entered on `enter` and left on `leave` holds."""
    # The state at k is set by the latest index ≤ k that enters or leaves (they never coincide).
    marks = np.where(enter | leave, np.arange(enter.size), -1)
    latest = np.maximum.accumulate(marks) if marks.size else marks
    active = (latest >= 0) & enter[np.maximum(latest, 0)]
    edges = np.flatnonzero(np.diff(active.astype(np.int8), prepend=0, append=0))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def _variation(
    urms_v: npt.NDArray[np.float64], start: int, end: int, *, is_dip: bool, thresholds: VariationThresholds
) -> Variation:
    window = urms_v[start:end]
    residual_v = float(np.nanmin(window) if is_dip else np.nanmax(window))
    residual_pu = residual_v / thresholds.nominal_v
    found = classify_variation((end - start) / 2, residual_pu, interruption_pu=thresholds.interruption_pu)
    return Variation(
        start_index=start,
        end_index=end,
        residual_v=residual_v,
        residual_pu=residual_pu,
        kind=found.kind,
        classification=found.classification,
        ieee_duration=found.ieee_duration,
        category=found.category,
        open_start=start == 0,
        open_end=end == urms_v.size,
    )
