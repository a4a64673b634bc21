"""The ITIC plugin: RMS variations outside the ITIC (CBEMA) curve's no-interruption region."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opq.domain.itic import itic_region
from opq.mauka.plugin import Finding, Waveform
from opq.mauka.plugins.ieee1159 import variation_finding, voltage_settings


class IticPlugin:
    """ITIC_PROHIBITED and ITIC_NO_DAMAGE findings, one per RMS variation outside no-interruption.

    Each IEEE 1159 variation is placed on the curve as a rectangle: its whole duration at its
    residual voltage (lowest Urms(1/2) of a dip, highest of a swell), which errs towards severity
    where the voltage moved during the variation. The original segmented per-cycle RMS with PELT
    change-point detection instead.
    """

    name = "itic"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.thresholds = voltage_settings(self.name, settings).thresholds()

    def analyze(self, waveform: Waveform) -> list[Finding]:
        """One finding per variation in the prohibited or no-damage region; [] if none."""
        findings = []
        for variation in waveform.features.rms_variations(self.thresholds):
            magnitude_percent = variation.residual_pu * 100
            region = itic_region(variation.duration_ms, magnitude_percent)
            if region != "NO_INTERRUPTION":
                findings.append(
                    variation_finding(
                        waveform,
                        variation,
                        self.thresholds.nominal_v,
                        f"ITIC_{region}",
                        itic_region=region,
                        magnitude_percent=magnitude_percent,
                    )
                )
        return findings
