"""Mauka plugin: impulsive and oscillatory transients and extra zero crossings in one box's waveform."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from opq.domain.transients import MAX_LULL_MS, NOISE_FLOOR_V, Transient, transients
from opq.mauka.plugin import SAMPLE_PERIOD_MS, Finding, Waveform, plugin_settings

NAME = "transient"


class TransientSettings(BaseModel):
    """Least residual that starts a transient [V] and longest lull inside one [ms] (`transients`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    noise_floor_v: float = Field(default=NOISE_FLOOR_V, gt=0)
    max_lull_ms: float = Field(default=MAX_LULL_MS, ge=SAMPLE_PERIOD_MS, le=100)


class TransientPlugin:
    """Transients from `Features.residual_v` and the samples, as TRANSIENT findings.

    `deviation_from_nominal` is the signed peak deviation from the steady state [V]. There is no
    `ieee_duration` (its categories are for RMS variations); the metadata carries the IEEE 1159
    transient category instead (1.1.2 / 1.1.3 impulsive, 1.2.1 / 1.2.2 oscillatory).
    """

    name: str = NAME

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = plugin_settings(NAME, TransientSettings, settings)

    def analyze(self, waveform: Waveform) -> list[Finding]:
        """One finding per transient with at least one classification; [] if none."""
        features = waveform.features
        found = transients(
            features.samples_v,
            features.residual_v,
            noise_floor_v=self.settings.noise_floor_v,
            max_lull_ms=self.settings.max_lull_ms,
        )
        return [self._finding(waveform, t) for t in found if t.classifications]

    def _finding(self, waveform: Waveform, transient: Transient) -> Finding:
        metadata: dict[str, Any] = {
            "peak_v": float(transient.peak_v),
            "threshold_v": float(transient.threshold_v),
            "duration_ms": (transient.end_sample - transient.start_sample) * SAMPLE_PERIOD_MS,
            "start_sample": int(transient.start_sample),
            "end_sample": int(transient.end_sample),
            "extra_zero_crossings": int(transient.extra_zero_crossings),
        }
        if transient.impulse is not None:
            impulse = transient.impulse
            metadata |= {
                "polarity": impulse.polarity,
                "rise_time_ms": float(impulse.rise_time_ms),
                "decay_time_ms": None if impulse.decay_time_ms is None else float(impulse.decay_time_ms),
                "ieee1159_category": impulse.category,
            }
        if transient.oscillation is not None:
            ringing = transient.oscillation
            metadata |= {
                "frequency_hz": float(ringing.frequency_hz),
                "decay_time_constant_ms": (
                    None if ringing.decay_time_constant_ms is None else float(ringing.decay_time_constant_ms)
                ),
                "sign_changes": int(ringing.sign_changes),
                "ieee1159_category": ringing.category,
            }
        return Finding(
            box_id=waveform.box_id,
            start_ms=math.floor(waveform.time_ms(transient.start_sample)),
            end_ms=math.ceil(waveform.time_ms(transient.end_sample)),
            measurement_type="TRANSIENT",
            classifications=transient.classifications,
            deviation_from_nominal=float(transient.peak_v),
            metadata=metadata,
        )
