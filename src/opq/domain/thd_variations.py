"""Excessive THD: runs of 12-cycle (≈200 ms) THD windows above the IEEE 1159 / seed limit of 5 %."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from opq.domain.constants import SAMPLES_PER_CYCLE, THD_WINDOW_CYCLES
from opq.domain.frequency_variations import CYCLE_MS, runs_beyond

EXCESSIVE_THD: Final = "EXCESSIVE_THD"

THD_WINDOW_SAMPLES: Final = THD_WINDOW_CYCLES * SAMPLES_PER_CYCLE
"""Samples in one THD window [samples]: value k covers samples [2400k, 2400k + 2400)."""


@dataclass(frozen=True)
class ThdLimits:
    """When THD is excessive: above `threshold_ratio` [ratio, 0.05 = 5 %] for `min_duration_windows`.

    5 % is the seed's EXCESSIVE_THD ("exceeds IEEE 1159 recommendations, 5 % over 200 ms windows";
    IEEE 519 also sets 5 % for voltage THD at ≤ 1 kV). A variation is a run of windows above
    `threshold_ratio − hysteresis_ratio` that goes above `threshold_ratio` (`runs_beyond`). The
    0.2 pp hysteresis is ~3× the THD estimate's error with 0.5 V rms noise (0.06 pp) and 4 % of
    the limit, so THD hovering at 5 % gives one variation. One window (200 ms) is enough by
    default: the window is already IEC 61000-4-30's basic interval, and THD, unlike a 2-cycle
    frequency value, is not bent by a phase jump.
    """

    threshold_ratio: float = 0.05
    hysteresis_ratio: float = 0.002
    min_duration_windows: int = 1

    def __post_init__(self) -> None:
        values = f"threshold_ratio={self.threshold_ratio}, hysteresis_ratio={self.hysteresis_ratio}"
        if not (math.isfinite(self.threshold_ratio) and math.isfinite(self.hysteresis_ratio)):
            raise ValueError(f"THD limits must be finite ({values})")
        if not 0 <= self.hysteresis_ratio < self.threshold_ratio:
            raise ValueError(f"need 0 <= hysteresis_ratio < threshold_ratio ({values})")
        if self.min_duration_windows < 1:
            raise ValueError(f"min_duration_windows is {self.min_duration_windows}; expected at least 1")


@dataclass(frozen=True)
class ThdVariation:
    """One run of excessive THD: windows [start_window, end_window) and its highest THD [ratio].

    `open_start` / `open_end` say it was already in progress at the first measured window / still
    at the last one, which makes the duration a lower bound.
    """

    start_window: int
    end_window: int
    max_thd_ratio: float
    mean_thd_ratio: float
    open_start: bool = False
    open_end: bool = False

    @property
    def start_sample(self) -> int:
        """First sample of the first window above the limit [samples]."""
        return self.start_window * THD_WINDOW_SAMPLES

    @property
    def end_sample(self) -> int:
        """First sample after the last window above the limit [samples]."""
        return self.end_window * THD_WINDOW_SAMPLES

    @property
    def duration_windows(self) -> int:
        """Duration [12-cycle windows]."""
        return self.end_window - self.start_window

    @property
    def duration_ms(self) -> float:
        """Duration [ms]: 200 ms a window."""
        return self.duration_windows * THD_WINDOW_CYCLES * CYCLE_MS


DEFAULT_LIMITS: Final = ThdLimits()


def thd_variations(thd_ratio: npt.ArrayLike, limits: ThdLimits = DEFAULT_LIMITS) -> list[ThdVariation]:
    """The runs of excessive THD in a series of 12-cycle THD windows [ratio], by start.

    A window straddling the start or end of the distortion reads part of it and counts only if that
    part alone is over the limit, so the duration is within a window (200 ms) of the truth. NaN (an
    interrupted window) never starts or ends a run, nor counts toward the minimum duration
    (`frequency_variations.runs_beyond`).
    """
    values = np.asarray(thd_ratio, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"thd_ratio has shape {values.shape}; expected a 1-D series")
    lim = limits
    runs = runs_beyond(values, lim.threshold_ratio, lim.threshold_ratio - lim.hysteresis_ratio, above=True)
    measured = np.flatnonzero(~np.isnan(values))
    found = []
    for first, end in runs:
        run = values[first:end]
        if np.count_nonzero(~np.isnan(run)) < lim.min_duration_windows:
            continue
        found.append(
            ThdVariation(
                start_window=first,
                end_window=end,
                max_thd_ratio=float(np.nanmax(run)),
                mean_thd_ratio=float(np.nanmean(run)),
                open_start=bool(first == measured[0]),
                open_end=bool(end - 1 == measured[-1]),
            )
        )
    return found
