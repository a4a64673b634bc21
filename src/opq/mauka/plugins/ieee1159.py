"""The IEEE 1159 voltage plugin, and the settings and findings the ITIC and SEMI F47 plugins share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from opq.domain import NOMINAL_VOLTAGE_V
from opq.domain.ieee1159 import Variation, VariationThresholds
from opq.mauka.plugin import Finding, Waveform, plugin_settings


class VoltageSettings(BaseModel):
    """Settings of the voltage plugins: nominal voltage [V] and IEC 61000-4-30 thresholds [pu of nominal]."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    nominal_v: float = Field(default=NOMINAL_VOLTAGE_V, gt=0, allow_inf_nan=False)
    dip_pu: float = Field(default=0.9, gt=0, lt=1)
    swell_pu: float = Field(default=1.1, gt=1, allow_inf_nan=False)
    interruption_pu: float = Field(default=0.1, ge=0, lt=1)
    hysteresis_pu: float = Field(default=0.02, ge=0, lt=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self.thresholds()  # its ValueError names the settings that do not fit together
        return self

    def thresholds(self) -> VariationThresholds:
        """The detection thresholds these settings describe."""
        return VariationThresholds(**self.model_dump())


def voltage_settings(plugin_name: str, settings: Mapping[str, Any] | None) -> VoltageSettings:
    """A voltage plugin's validated settings; ConfigError names the plugin, each bad key and its value."""
    return plugin_settings(plugin_name, VoltageSettings, settings)


def variation_finding(
    waveform: Waveform, variation: Variation, nominal_v: float, classification: str, **metadata: Any
) -> Finding:
    """A finding for one variation: its span in the waveform's time and its residual's deviation [V]."""
    return Finding(
        box_id=waveform.box_id,
        start_ms=round(waveform.time_ms(variation.start_sample)),
        end_ms=round(waveform.time_ms(variation.end_sample)),
        measurement_type="VOLTAGE",
        classifications=(classification,),
        deviation_from_nominal=variation.residual_v - nominal_v,
        ieee_duration=variation.ieee_duration,
        metadata={
            "residual_v": variation.residual_v,
            "residual_pu": variation.residual_pu,
            "duration_ms": variation.duration_ms,
            "ieee1159_category": variation.category,
            "open_start": variation.open_start,
            "open_end": variation.open_end,
            **metadata,
        },
    )


class Ieee1159VoltagePlugin:
    """Sags, swells, interruptions, under- and overvoltages: IEEE 1159 categories 2.1.1 to 3.3.

    Each variation IEC 61000-4-30 finds in the waveform's Urms(1/2) becomes one finding, classed by
    `opq.domain.ieee1159.classify_variation`; `metadata.open_end` marks one still going at the end.
    """

    name = "ieee1159_voltage"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.thresholds = voltage_settings(self.name, settings).thresholds()

    def analyze(self, waveform: Waveform) -> list[Finding]:
        """One finding per RMS variation in the waveform; [] if none."""
        variations = waveform.features.rms_variations(self.thresholds)
        return [
            variation_finding(waveform, variation, self.thresholds.nominal_v, variation.classification)
            for variation in variations
        ]
