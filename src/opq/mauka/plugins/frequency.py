"""Mauka plugin: frequency swells, sags and interruptions in one box's waveform."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from opq.domain import SAMPLES_PER_CYCLE
from opq.domain.frequency_variations import (
    FrequencyLimits,
    FrequencyVariation,
    frequency_variations,
    ieee_duration,
)
from opq.mauka.plugin import Finding, Waveform, plugin_settings

NAME = "frequency_variation"


class FrequencyVariationSettings(BaseModel):
    """Limits [Hz] and minimum duration [cycles] of a frequency variation (`FrequencyLimits`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    swell_hz: float = 60.1
    sag_hz: float = 59.9
    interruption_hz: float = 58.0
    hysteresis_hz: float = Field(default=0.02, ge=0)
    min_duration_cycles: int = Field(default=12, ge=1)
    nominal_hz: float = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> FrequencyVariationSettings:
        FrequencyLimits(**self.model_dump())  # raises ValueError naming the values out of order
        return self


class FrequencyVariationPlugin:
    """Frequency variations from `Features.cycle_frequency_hz`, as FREQUENCY findings."""

    name: str = NAME

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = plugin_settings(NAME, FrequencyVariationSettings, settings)
        self._limits = FrequencyLimits(**self.settings.model_dump())

    def analyze(self, waveform: Waveform) -> list[Finding]:
        """One finding per frequency variation in the waveform; [] if none.

        Values over a dip, swell or interruption are flagged (IEC 61000-4-30) and left out: a sag's
        edges bend the zero crossings by up to ±0.7 Hz.
        """
        features = waveform.features
        frequency = features.cycle_frequency_hz.copy()
        starts = np.arange(len(frequency), dtype=np.int64) * SAMPLES_PER_CYCLE
        frequency[features.flagged(starts, 2 * SAMPLES_PER_CYCLE)] = np.nan
        found = frequency_variations(frequency, self._limits)
        return [self._finding(waveform, variation) for variation in found]

    def _finding(self, waveform: Waveform, variation: FrequencyVariation) -> Finding:
        start_ms = math.floor(waveform.time_ms(variation.start_cycle * SAMPLES_PER_CYCLE))
        end_ms = math.ceil(waveform.time_ms(variation.end_cycle * SAMPLES_PER_CYCLE))
        return Finding(
            box_id=waveform.box_id,
            start_ms=start_ms,
            end_ms=end_ms,
            measurement_type="FREQUENCY",
            classifications=(variation.kind,),
            deviation_from_nominal=float(variation.deviation_hz),
            ieee_duration=ieee_duration(variation.duration_ms),
            metadata={
                "extreme_hz": float(variation.extreme_hz),
                "deviation_hz": float(variation.deviation_hz),
                "duration_ms": float(variation.duration_ms),
                "duration_cycles": int(variation.duration_cycles),
                "start_cycle": int(variation.start_cycle),
                "end_cycle": int(variation.end_cycle),
                "open_start": bool(variation.open_start),
                "open_end": bool(variation.open_end),
            },
        )
