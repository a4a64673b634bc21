"""Mauka plugin: excessive total harmonic distortion (THD) in one box's waveform."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from opq.domain.frequency_variations import ieee_duration
from opq.domain.thd_variations import (
    EXCESSIVE_THD,
    THD_WINDOW_SAMPLES,
    ThdLimits,
    ThdVariation,
    thd_variations,
)
from opq.mauka.plugin import Finding, Waveform, plugin_settings

NAME = "thd"


class ThdSettings(BaseModel):
    """THD limit and hysteresis [% of the fundamental] and minimum duration [12-cycle windows]."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    threshold_percent: float = Field(default=5.0, gt=0, lt=100)
    hysteresis_percent: float = Field(default=0.2, ge=0)
    min_duration_windows: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _hysteresis_below_threshold(self) -> ThdSettings:
        if self.hysteresis_percent >= self.threshold_percent:
            raise ValueError(
                f"hysteresis_percent={self.hysteresis_percent} must be below "
                f"threshold_percent={self.threshold_percent}"
            )
        return self

    def limits(self) -> ThdLimits:
        """The domain's limits, as ratios."""
        return ThdLimits(
            threshold_ratio=self.threshold_percent / 100,
            hysteresis_ratio=self.hysteresis_percent / 100,
            min_duration_windows=self.min_duration_windows,
        )


class ThdPlugin:
    """Runs of 12-cycle windows with THD above the limit, from `Features.window_thd_ratio`, as THD findings.

    `deviation_from_nominal` is the highest THD [%] (nominal is 0 %); the measurements' `thd` is a
    ratio, so the metadata names its unit in every key.
    """

    name: str = NAME

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = plugin_settings(NAME, ThdSettings, settings)
        self._limits = self.settings.limits()

    def analyze(self, waveform: Waveform) -> list[Finding]:
        """One finding per run of excessive THD in the waveform; [] if none.

        Windows overlapping a dip, swell or interruption are flagged (IEC 61000-4-30) and left out.
        """
        features = waveform.features
        thd = features.window_thd_ratio.copy()
        starts = np.arange(len(thd), dtype=np.int64) * THD_WINDOW_SAMPLES
        thd[features.flagged(starts, THD_WINDOW_SAMPLES)] = np.nan
        found = thd_variations(thd, self._limits)
        return [self._finding(waveform, variation) for variation in found]

    def _finding(self, waveform: Waveform, variation: ThdVariation) -> Finding:
        return Finding(
            box_id=waveform.box_id,
            start_ms=math.floor(waveform.time_ms(variation.start_sample)),
            end_ms=math.ceil(waveform.time_ms(variation.end_sample)),
            measurement_type="THD",
            classifications=(EXCESSIVE_THD,),
            deviation_from_nominal=100 * float(variation.max_thd_ratio),
            ieee_duration=ieee_duration(variation.duration_ms),
            metadata={
                "max_thd_percent": 100 * float(variation.max_thd_ratio),
                "mean_thd_percent": 100 * float(variation.mean_thd_ratio),
                "threshold_percent": float(self.settings.threshold_percent),
                "duration_ms": float(variation.duration_ms),
                "duration_windows": int(variation.duration_windows),
                "open_start": bool(variation.open_start),
                "open_end": bool(variation.open_end),
            },
        )
