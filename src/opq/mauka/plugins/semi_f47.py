"""The SEMI F47 plugin: voltage sags below the SEMI F47-0706 ride-through curve."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opq.domain.semi_f47 import ride_through_percent, semi_f47_violation
from opq.mauka.plugin import Finding, Waveform
from opq.mauka.plugins.ieee1159 import variation_finding, voltage_settings


class SemiF47Plugin:
    """SEMI_F47_VIOLATION findings: one per voltage sag deeper or longer than equipment must ride through.

    Each IEEE 1159 variation is evaluated at its residual voltage over its whole duration; SEMI F47
    concerns sags only, and a swell (residual above nominal) never falls below its ≤ 90 % curve.
    The original segmented per-cycle RMS with PELT change-point detection instead.
    """

    name = "semi_f47"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.thresholds = voltage_settings(self.name, settings).thresholds()

    def analyze(self, waveform: Waveform) -> list[Finding]:
        """One finding per sag below the curve; [] if none."""
        findings = []
        for variation in waveform.features.rms_variations(self.thresholds):
            magnitude_percent = variation.residual_pu * 100
            if semi_f47_violation(variation.duration_ms, magnitude_percent):
                findings.append(
                    variation_finding(
                        waveform,
                        variation,
                        self.thresholds.nominal_v,
                        "SEMI_F47_VIOLATION",
                        magnitude_percent=magnitude_percent,
                        ride_through_percent=ride_through_percent(variation.duration_ms),
                    )
                )
        return findings
