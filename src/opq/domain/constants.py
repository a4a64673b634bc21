"""Constants of the OPQ Box signal chain and of the standards the metrics follow."""

from __future__ import annotations

from typing import Final

SAMPLE_RATE_HZ: Final = 12_000
"""OPQ Box ADC sample rate [samples/s] (STM32F373 SDADC triggered at 72 MHz / 6000)."""

SAMPLES_PER_CYCLE: Final = 200
"""Samples in one box cycle [samples]: a fixed block, not phase-locked to the grid."""

DEFAULT_CALIBRATION_COUNTS_PER_V: Final = 152.5
"""ADC counts per volt of the original OPQ Box's default configuration [counts/V]."""

ADC_FULL_SCALE_COUNTS: Final = 32_767
"""Largest |ADC reading| [counts]: the 16-bit ADC clips beyond it (≈ ±215 V at 152.5 counts/V)."""

NOMINAL_FREQUENCY_HZ: Final = 60.0
"""Nominal grid frequency [Hz] (North America)."""

NOMINAL_VOLTAGE_V: Final = 120.0
"""Nominal (declared) supply voltage Udin [V rms] at a wall outlet."""

FREQUENCY_WINDOW_CYCLES: Final = 10
"""Cycles per frequency value [cycles]: 1/6 s, six values per 60-cycle measurement."""

THD_WINDOW_CYCLES: Final = 12
"""Cycles per THD value [cycles]: the IEC 61000-4-7 / 61000-4-30 basic interval at 60 Hz (≈200 ms)."""

THD_MAX_HARMONIC: Final = 50
"""Highest harmonic order in THD: IEC 61000-4-30 asks for orders to at least 50 (IEEE 519 uses 50)."""

INTERRUPTION_VRMS_V: Final = 0.05 * NOMINAL_VOLTAGE_V
"""Below this fundamental [V rms] there is no frequency or THD to measure: the IEC 61000-4-30
interruption threshold of 5 % of Udin (standards.md §2.1; 10 % is also common)."""
