"""The OPQ Box metrics: per-cycle RMS and transient, and all four metrics of a waveform at once."""

from __future__ import annotations

import functools
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
from opq.domain.filters import DECIMATION, EDGE_SAMPLES, decimate, interpolate, lowpass_taps
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
    samples: npt.NDArray[np.float64],
    decimated: npt.NDArray[np.float64],
    cycles: tuple[int, int] | None = None,
) -> npt.NDArray[np.float64]:
    """`transient_per_cycle` of `samples` [V] whose `filters.decimate` the caller already has.

    With `cycles` = (first, stop), only those cycles' values (shape (..., stop − first)), from the
    low-pass of just the stretch they need: a caller that wants some cycles does not pay for all.
    Cycles with a cycle on each side take a quicker route to the same values (`_transient_of_inner_cycles`).
    """
    n_cycles = samples.shape[-1] // SAMPLES_PER_CYCLE
    first, stop = (0, n_cycles) if cycles is None else cycles
    if first >= 1 and stop <= n_cycles - 1 and stop > first:
        return _transient_of_inner_cycles(samples, decimated, first, stop)
    # Interpolated output n is input sample n + EDGE_SAMPLES and block k of it needs decimated
    # [k, k + phases − 1]: cycles [first, stop) need blocks from the one ending at their first
    # sample's filter reach to the one at their last sample (all multiples of DECIMATION).
    phases = EDGE_SAMPLES // DECIMATION + 1
    per_cycle = SAMPLES_PER_CYCLE // DECIMATION
    low = max(per_cycle * first - (phases - 1), 0)
    high = min(per_cycle * stop - (phases - 1), decimated.shape[-1] - phases + 1)
    if high <= low:
        return np.full((*samples.shape[:-1], stop - first), np.nan)
    lowpassed = interpolate(decimated[..., low : high + phases - 1])
    offset = DECIMATION * low + EDGE_SAMPLES  # the input sample of lowpassed[..., 0]
    covered = samples[..., offset : offset + lowpassed.shape[-1]]
    excursion = np.subtract(covered, lowpassed, out=lowpassed)
    np.abs(excursion, out=excursion)
    # Cycle c spans samples 200·c to 200·(c + 1), which is excursion[200·c − offset, ...).
    starts = np.maximum(np.arange(first, stop) * SAMPLES_PER_CYCLE - offset, 0)
    return np.asarray(np.maximum.reduceat(excursion, starts, axis=-1), dtype=np.float64)


def _transient_of_inner_cycles(
    samples: npt.NDArray[np.float64], decimated: npt.NDArray[np.float64], first: int, stop: int
) -> npt.NDArray[np.float64]:
    """`transient_of_decimated` of cycles that have a cycle on each side: the filters see all of them.

    The low-pass of each quarter cycle (50 samples) is 13 decimated samples times one fixed
    (13, 50) matrix (`_block_interpolation`), so all of them, of every row, are one matrix
    product: the polyphase `filters.interpolate` would copy each sample's 9 taps out first,
    which costs more than the extra multiplications by the matrix's zeros.
    """
    per_block = _INTERPOLATION_BLOCK_SAMPLES // DECIMATION
    reach = EDGE_SAMPLES // DECIMATION
    matrix = _block_interpolation()
    lead_shape = samples.shape[:-1]
    rows = np.reshape(decimated, (-1, decimated.shape[-1]))
    n_blocks = (stop - first) * SAMPLES_PER_CYCLE // _INTERPOLATION_BLOCK_SAMPLES
    # (rows, blocks, 13): overlapping windows, 5 apart, of each row's decimated samples, from
    # the one the first block's first sample needs (8 before its own).
    windows = np.lib.stride_tricks.as_strided(
        rows[:, SAMPLES_PER_CYCLE // DECIMATION * first - reach :],
        (len(rows), n_blocks, len(matrix)),
        (rows.strides[0], per_block * rows.strides[1], rows.strides[1]),
        writeable=False,
    )
    lowpassed = np.ascontiguousarray(windows) @ matrix
    blocks = samples.reshape(len(rows), -1, _INTERPOLATION_BLOCK_SAMPLES)
    cycle_blocks = SAMPLES_PER_CYCLE // _INTERPOLATION_BLOCK_SAMPLES
    np.subtract(blocks[:, first * cycle_blocks : stop * cycle_blocks], lowpassed, out=lowpassed)
    np.abs(lowpassed, out=lowpassed)
    per_cycle = lowpassed.reshape(len(rows), stop - first, SAMPLES_PER_CYCLE).max(axis=-1)
    return np.asarray(per_cycle, dtype=np.float64).reshape(*lead_shape, stop - first)


_INTERPOLATION_BLOCK_SAMPLES = 50
"""Samples interpolated per row of the matrix product: a quarter cycle (13 × 50, 70 % of it taps)
was quicker than a whole cycle (28 × 200) or half (18 × 100), measured on 100 boxes."""


@functools.cache
def _block_interpolation() -> npt.NDArray[np.float64]:
    """(13, 50): `filters.interpolate` of a block's decimated samples, from 8 before its first, as a matrix.

    Interpolated sample 10·k + r of the block is Σ_q 10·taps[10·(8 − q) + r]·d[k + q], k < 5.
    """
    taps = lowpass_taps()
    phases = len(taps) // DECIMATION
    per_block = _INTERPOLATION_BLOCK_SAMPLES // DECIMATION
    step = DECIMATION * taps.reshape(phases, DECIMATION)[::-1]  # step[q, r] = 10·taps[10·(8 − q) + r]
    matrix = np.zeros((per_block + phases - 1, _INTERPOLATION_BLOCK_SAMPLES))
    for k in range(per_block):
        matrix[k : k + phases, DECIMATION * k : DECIMATION * (k + 1)] = step
    matrix.setflags(write=False)
    return matrix


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
