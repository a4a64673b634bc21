"""Replay a recorded waveform as an OPQ Box would have sampled it: 200-sample cycles of ADC counts."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from scipy import signal

from opq.box.recordings import Recording, Scale, read_recording
from opq.box.source import SourceCycle
from opq.clock import wall_clock_ms
from opq.domain import SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE, frequency_hz
from opq.domain.constants import ADC_FULL_SCALE_COUNTS, DEFAULT_CALIBRATION_COUNTS_PER_V
from opq.errors import ConfigError

logger = logging.getLogger(__name__)

FREQUENCY_ESTIMATE_CYCLES = 120
"""Cycles (2 s) at the start of a recording its line frequency is estimated over."""

FREQUENCY_MISMATCH_HZ = 0.5
"""Estimated and declared line frequency this far apart [Hz] or more, to the estimate's 10 mHz
accuracy (IEC 61000-4-30 Class A), earn a warning."""

MAX_RATIO_TERM = 10_000
"""Largest term of the resampling ratio up/down; a ratio needing more is approximated (≲ 1 ppm)."""


def resample_to_box_rate(samples_v: npt.ArrayLike, sample_rate_hz: float) -> npt.NDArray[np.float64]:
    """Samples [V] at `sample_rate_hz` [Hz] resampled to the box's 12 kS/s with a polyphase FIR.

    `scipy.signal.resample_poly` with the ratio 12 000 / rate as the nearest fraction whose terms are at
    most 10 000: exact for the usual rates (4.8, 6, 7.68, 12.8, 15.36, 44.1 kHz, 1 MHz, ...), otherwise
    within about 1 ppm (a 60 Hz tone off by µHz).
    """
    samples = np.asarray(samples_v, dtype=np.float64)
    exact = Fraction(SAMPLE_RATE_HZ) / Fraction(sample_rate_hz)
    if exact < 1:
        ratio = exact.limit_denominator(MAX_RATIO_TERM)
    else:
        ratio = 1 / (1 / exact).limit_denominator(MAX_RATIO_TERM)
    if ratio == 1:
        return samples.copy()
    resampled: npt.NDArray[np.float64] = signal.resample_poly(samples, ratio.numerator, ratio.denominator)
    return resampled


def counts_from_volts(
    samples_v: npt.NDArray[np.float64], calibration: float
) -> tuple[npt.NDArray[np.int16], int]:
    """ADC counts of samples [V] at `calibration` [counts/V], clipped to ±32 767, and how many clipped."""
    counts = np.rint(samples_v * calibration)
    clipped = int(np.count_nonzero(np.abs(counts) > ADC_FULL_SCALE_COUNTS))
    return np.clip(counts, -ADC_FULL_SCALE_COUNTS, ADC_FULL_SCALE_COUNTS).astype(np.int16), clipped


def cycle_timestamp_ms(start_us: int, index: int) -> int:
    """Time of cycle `index`'s first sample [ms], rounded, from the first cycle's start [µs].

    Computed from the sample index in integers, so rounding never accumulates.
    """
    numerator = start_us * SAMPLE_RATE_HZ + index * SAMPLES_PER_CYCLE * 1_000_000
    denominator = SAMPLE_RATE_HZ * 1000
    return (numerator + denominator // 2) // denominator


class RecordingSource:
    """A recording replayed as box cycles: a `SampleSource` for testing the box without hardware.

    The recording is read whole, resampled to 12 kS/s, converted to ADC counts and cut into
    200-sample cycles (an incomplete last cycle is dropped). Its line frequency is estimated from
    the signal over the first 2 s (`frequency_hz`), not taken from the header. Cycle timestamps
    run from the recording's own start time, else `start_ms`, else the clock when `cycles()` starts.
    With `loop` the recording repeats and the timestamps keep counting. Pacing is the caller's.
    """

    def __init__(
        self,
        recording: Recording,
        *,
        calibration_constant: float = DEFAULT_CALIBRATION_COUNTS_PER_V,
        start_ms: int | None = None,
        loop: bool = False,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if not (math.isfinite(calibration_constant) and calibration_constant > 0):
            raise ConfigError(f"calibration constant {calibration_constant!r} counts/V is not positive")
        self.recording = recording
        self.loop = loop
        self.start_ms = start_ms
        self._calibration = float(calibration_constant)
        self._clock_ms = clock_ms
        where = f"recording {recording.path}"
        if len(recording.samples_v) == 0:
            raise ConfigError(f"{where}: empty recording (no samples)")
        samples_v = resample_to_box_rate(recording.samples_v, recording.sample_rate_hz)
        n_cycles = len(samples_v) // SAMPLES_PER_CYCLE
        if n_cycles == 0:
            raise ConfigError(
                f"{where}: {len(samples_v)} samples at {SAMPLE_RATE_HZ} S/s after resampling, "
                f"fewer than one cycle ({SAMPLES_PER_CYCLE})"
            )
        samples_v = samples_v[: n_cycles * SAMPLES_PER_CYCLE]
        counts, self.clipped_samples = counts_from_volts(samples_v, self._calibration)
        self._counts = counts.reshape(n_cycles, SAMPLES_PER_CYCLE)
        self._counts.setflags(write=False)
        self.frequency_hz = frequency_hz(samples_v[: FREQUENCY_ESTIMATE_CYCLES * SAMPLES_PER_CYCLE])
        self.warnings = recording.notes + tuple(self._doubts(where))
        for warning in self.warnings:
            logger.warning("%s", warning)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        channel: str | int | None = None,
        sample_rate_hz: float | None = None,
        scale: Scale = "recorded",
        calibration_constant: float = DEFAULT_CALIBRATION_COUNTS_PER_V,
        start_ms: int | None = None,
        loop: bool = False,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> RecordingSource:
        """Replay a `.csv` or COMTRADE `.cfg` file; see `opq.box.recordings.read_recording`."""
        recording = read_recording(path, channel=channel, sample_rate_hz=sample_rate_hz, scale=scale)
        return cls(
            recording,
            calibration_constant=calibration_constant,
            start_ms=start_ms,
            loop=loop,
            clock_ms=clock_ms,
        )

    @property
    def calibration_constant(self) -> float:
        """ADC counts per volt the recording was converted with [counts/V]."""
        return self._calibration

    @property
    def cycle_count(self) -> int:
        """Whole cycles in one pass of the recording."""
        return len(self._counts)

    def cycles(self) -> Iterator[SourceCycle]:
        """The cycles in time order, once or (with `loop`) forever; each call starts over."""
        if self.recording.start_us is not None:
            start_us = self.recording.start_us
        else:
            start_us = 1000 * (self.start_ms if self.start_ms is not None else self._clock_ms())
        index = 0
        while True:
            for counts in self._counts:
                yield SourceCycle(timestamp_ms=cycle_timestamp_ms(start_us, index), counts=counts)
                index += 1
            if not self.loop:
                return

    def _doubts(self, where: str) -> Iterator[str]:
        if self.clipped_samples:
            full_scale_v = ADC_FULL_SCALE_COUNTS / self._calibration
            yield (
                f"{where}: {self.clipped_samples} samples beyond the ADC's ±{full_scale_v:.1f} V "
                f"(±{ADC_FULL_SCALE_COUNTS} counts at {self._calibration:g} counts/V) were clipped"
            )
        declared = self.recording.nominal_frequency_hz
        if math.isnan(self.frequency_hz):
            yield f"{where}: no line frequency found in the first {FREQUENCY_ESTIMATE_CYCLES} cycles"
        elif declared is not None and round(abs(self.frequency_hz - declared), 2) >= FREQUENCY_MISMATCH_HZ:
            yield (
                f"{where}: the signal's line frequency is {self.frequency_hz:.3f} Hz, "
                f"the header says {declared:g} Hz"
            )
