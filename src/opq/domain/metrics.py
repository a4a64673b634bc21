"""The OPQ Box metrics: per-cycle RMS and transient, and all four metrics of a waveform at once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from opq.domain.constants import (
    FREQUENCY_WINDOW_CYCLES,
    INTERRUPTION_VRMS_V,
    SAMPLES_PER_CYCLE,
    THD_WINDOW_CYCLES,
)
from opq.domain.filters import EDGE_SAMPLES, decimate, interpolate
from opq.domain.frequency import frequency_of_decimated
from opq.domain.harmonics import thd_per_window
from opq.domain.synchronous_rms import synchronous_rms_per_cycle
from opq.domain.waveform import as_blocks


def rms_per_cycle(
    samples_v: npt.ArrayLike, fundamental_hz: npt.ArrayLike | None = None
) -> npt.NDArray[np.float64]:
    """RMS [V] of each consecutive 200-sample box cycle, along the last axis: OPQ's `rms` metric.

    With `fundamental_hz` [Hz] (a scalar or one per cycle, as `frequency_per_window` measures it),
    each value is the RMS over one period of that fundamental centred on the box cycle
    (`synchronous_rms`): exact for a steady waveform at any frequency, as IEC 61000-4-30 Class A
    asks; NaN there falls back to the box cycle. Without it, sqrt(mean(v²)) over the 200 samples
    of each box cycle, as the OPQ Box computed it: the blocks are not synchronised to the grid, so
    off 60 Hz a block is not exactly one period and a sine's block RMS wanders around its true
    value (±0.08 % at 59.9 Hz, ±0.42 % at 59.5 Hz, ±2.6 % at 57 Hz).
    """
    if fundamental_hz is not None:
        return synchronous_rms_per_cycle(samples_v, fundamental_hz)
    samples = as_blocks(samples_v)
    cycles = samples.reshape(*samples.shape[:-1], -1, SAMPLES_PER_CYCLE)
    rms_v: npt.NDArray[np.float64] = np.sqrt(np.einsum("...i,...i->...", cycles, cycles) / SAMPLES_PER_CYCLE)
    return rms_v


def transient_per_cycle(samples_v: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Largest |high-passed sample| [V] in each 200-sample cycle, along the last axis.

    OPQ's `trans` metric (OPQ reported it per 7 cycles), with a sharper filter. OPQ ran a 125-tap
    FIR high-pass (gain 0.08 at 300 Hz, 0.5 at 400 Hz); here the high-pass is the waveform minus
    its linear-phase low-pass round trip through 1.2 kHz (`filters.lowpass_taps`, delays
    cancelled): it keeps under 4 mV of a 120 V fundamental anywhere in 57–63 Hz and 0.25 % of
    harmonics 2–5, has gain 0.5 at 500 Hz and 1 from 700 Hz, and costs ~20 multiplications a
    sample instead of 125. An impulse shows at most of its height: the low-frequency part of its
    area goes with the fundamental, as with any such high-pass, so a 50 V spike of 1 sample
    (0.08 ms) reads ≈46 V and one of 2 samples (0.17 ms) ≈41 V.

    The filters span 80 samples on each side, so the first and last 80 samples of the array are
    not examined: pass a cycle of context at each end for seamless coverage of a stream.
    """
    samples = as_blocks(samples_v)
    return transient_of_decimated(samples, decimate(samples))


def transient_v(samples_v: npt.ArrayLike) -> float:
    """Largest |high-passed sample| [V] over a waveform of whole cycles; see `transient_per_cycle`."""
    per_cycle = transient_per_cycle(samples_v)
    return float(np.max(per_cycle)) if per_cycle.size else math.nan


def highpass_residual_v(samples_v: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The waveform minus its fundamental [V], sample by sample, along the last axis.

    The same high-pass as `transient_per_cycle` (the waveform minus its linear-phase low-pass round
    trip through 1.2 kHz): what is left is transients, ringing and harmonics above ~500 Hz. The
    first and last `EDGE_SAMPLES` (80) samples are outside the filters' reach and read 0.
    """
    samples = as_blocks(samples_v)
    residual = np.zeros_like(samples)
    lowpassed = interpolate(decimate(samples))
    covered = slice(EDGE_SAMPLES, EDGE_SAMPLES + lowpassed.shape[-1])
    residual[..., covered] = samples[..., covered] - lowpassed
    return residual


def transient_of_decimated(
    samples: npt.NDArray[np.float64], decimated: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """`transient_per_cycle` of `samples` [V] whose `filters.decimate` the caller already has."""
    lowpassed = interpolate(decimated)
    if lowpassed.shape[-1] == 0:
        return np.full((*samples.shape[:-1], samples.shape[-1] // SAMPLES_PER_CYCLE), np.nan)
    # Interpolated output n is input sample n + EDGE_SAMPLES.
    excursion = np.subtract(
        samples[..., EDGE_SAMPLES : EDGE_SAMPLES + lowpassed.shape[-1]], lowpassed, out=lowpassed
    )
    np.abs(excursion, out=excursion)
    # Cycle c spans samples 200·c to 200·(c + 1), which is excursion[200·c − 80, ...).
    n_cycles = samples.shape[-1] // SAMPLES_PER_CYCLE
    starts = np.maximum(np.arange(n_cycles) * SAMPLES_PER_CYCLE - EDGE_SAMPLES, 0)
    return np.asarray(np.maximum.reduceat(excursion, starts, axis=-1), dtype=np.float64)


@dataclass(frozen=True)
class WaveformMetrics:
    """The four OPQ Box metrics of a waveform, shape (..., cycles) or (..., windows)."""

    rms_v: npt.NDArray[np.float64]
    """RMS over one period of the fundamental centred on each cycle [V] (its frequency window's)."""
    frequency_hz: npt.NDArray[np.float64]
    """Frequency of each frequency window [Hz] (NaN in an interruption)."""
    thd_ratio: npt.NDArray[np.float64]
    """THD of each THD window [ratio] (NaN in an interruption)."""
    transient_v: npt.NDArray[np.float64]
    """Largest high-passed excursion in each cycle [V]."""


def waveform_metrics(
    samples_v: npt.ArrayLike,
    *,
    frequency_window_cycles: int = FREQUENCY_WINDOW_CYCLES,
    thd_window_cycles: int = THD_WINDOW_CYCLES,
    min_vrms_v: float = INTERRUPTION_VRMS_V,
) -> WaveformMetrics:
    """All four metrics of a waveform [V] (e.g. one 60-cycle measurement), filtering it once.

    The length must be a whole number of both windows (60 cycles suits the defaults 10 and 12).
    Each cycle's RMS is over one period of its frequency window's fundamental, as a box measures it.
    Works along the last axis, so a 2-D array computes a fleet of boxes together.
    """
    block_cycles = math.lcm(frequency_window_cycles, thd_window_cycles)
    samples = as_blocks(samples_v, block_cycles)
    decimated = decimate(samples)
    n_cycles = samples.shape[-1] // SAMPLES_PER_CYCLE
    frequency = frequency_of_decimated(
        decimated, samples.shape[-1], n_cycles // frequency_window_cycles, min_vrms_v
    )
    return WaveformMetrics(
        rms_v=synchronous_rms_per_cycle(samples, np.repeat(frequency, frequency_window_cycles, axis=-1)),
        frequency_hz=frequency,
        thd_ratio=thd_per_window(samples, thd_window_cycles, min_vrms_v=min_vrms_v),
        transient_v=transient_of_decimated(samples, decimated),
    )


class Summary(NamedTuple):
    """Minimum, maximum and average of a metric over a measurement, as OPQ's `Metric` carries."""

    min: float
    max: float
    average: float


def summarize(values: npt.ArrayLike) -> Summary:
    """(min, max, average) of all the values, ignoring NaN; all NaN if none is a number."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    numbers = flat[~np.isnan(flat)]
    if numbers.size == 0:
        return Summary(math.nan, math.nan, math.nan)
    return Summary(float(numbers.min()), float(numbers.max()), float(numbers.mean()))
