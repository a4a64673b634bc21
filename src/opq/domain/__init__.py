"""Pure signal processing and power-quality standards: numpy, scipy, numba; no I/O, clock or logging."""

from __future__ import annotations

from opq.domain.constants import (
    FREQUENCY_WINDOW_CYCLES,
    INTERRUPTION_VRMS_V,
    NOMINAL_FREQUENCY_HZ,
    NOMINAL_VOLTAGE_V,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
    THD_MAX_HARMONIC,
    THD_WINDOW_CYCLES,
)
from opq.domain.frequency import frequency_hz, frequency_per_window
from opq.domain.harmonics import thd_per_window, thd_ratio
from opq.domain.metrics import (
    Summary,
    WaveformMetrics,
    highpass_residual_v,
    rms_per_cycle,
    summarize,
    transient_per_cycle,
    transient_v,
    waveform_metrics,
)
from opq.domain.synchronous_rms import rms_per_window

__all__ = [
    "FREQUENCY_WINDOW_CYCLES",
    "INTERRUPTION_VRMS_V",
    "NOMINAL_FREQUENCY_HZ",
    "NOMINAL_VOLTAGE_V",
    "SAMPLES_PER_CYCLE",
    "SAMPLE_RATE_HZ",
    "THD_MAX_HARMONIC",
    "THD_WINDOW_CYCLES",
    "Summary",
    "WaveformMetrics",
    "frequency_hz",
    "frequency_per_window",
    "highpass_residual_v",
    "rms_per_cycle",
    "rms_per_window",
    "summarize",
    "thd_per_window",
    "thd_ratio",
    "transient_per_cycle",
    "transient_v",
    "waveform_metrics",
]
