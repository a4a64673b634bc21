"""RMS over whole periods of the grid's fundamental: per box cycle and per 10/12-cycle window.

The box samples at a fixed 12 kS/s, so off 60 Hz a 200-sample box cycle is not one period and
its RMS ripples with the beat between the two (±0.42 % at 59.5 Hz, ±2.6 % at 57 Hz for a sine).
IEC 61000-4-30 Class A (±0.1 % of Udin over 10–150 % Udin) asks for the RMS over the grid's own
cycles. Here each value is the RMS over a whole number of periods of the measured fundamental,
T = 12,000 / f samples, with fractional samples at both edges: for a steady waveform the mean of
v² over exactly K periods does not depend on where the K periods start, so the interval is centred
on the box cycle (or window) it belongs to and needs no zero crossing of its own; its length comes
from the zero-crossing fit of `frequency`. Where there is no frequency (an interruption, noise or
DC alone) the period falls back to the nominal 200 samples, which is the plain box-cycle RMS.
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
import numpy.typing as npt

from opq.domain.constants import (
    INTERRUPTION_VRMS_V,
    NOMINAL_FREQUENCY_HZ,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
    THD_WINDOW_CYCLES,
)
from opq.domain.frequency import frequency_per_window
from opq.domain.waveform import as_blocks

PERIOD_FREQUENCY_RANGE_HZ: Final = (0.9 * NOMINAL_FREQUENCY_HZ, 1.1 * NOMINAL_FREQUENCY_HZ)
"""A measured fundamental is clipped into this range [Hz] before it sets a period (±10 % of nominal),
so a wild estimate cannot stretch a window; class A accuracy is specified over 57–63 Hz."""

_SAMPLE_OFFSETS: Final = np.arange(SAMPLES_PER_CYCLE, dtype=np.float64)


def period_samples(fundamental_hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Period [samples at 12 kHz] of each fundamental [Hz]; NaN gives the nominal 200 samples."""
    hz = np.asarray(fundamental_hz, dtype=np.float64)
    # np.fmax/np.fmin would turn NaN into a bound; np.where gives it the nominal period instead.
    lowest_hz, highest_hz = PERIOD_FREQUENCY_RANGE_HZ
    clipped = np.fmin(np.fmax(hz, lowest_hz), highest_hz)
    period: npt.NDArray[np.float64] = np.where(
        np.isnan(hz), float(SAMPLES_PER_CYCLE), SAMPLE_RATE_HZ / clipped
    )
    return period


def synchronous_rms_per_cycle(
    samples_v: npt.ArrayLike, fundamental_hz: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """RMS [V] over one period of the fundamental centred on each 200-sample box cycle.

    `fundamental_hz` [Hz] is a scalar or one value per cycle (NaN: the box cycle itself). A period
    that reaches past either end of the array is moved inside it (cut to the array if longer).
    Along the last axis.

    A period differs from the 200-sample cycle by at most 11 samples at each edge (22 if moved), so
    each sum is the cycle's sum of squares plus or minus the fractional samples between the two
    edges, read from a 48-sample neighbourhood of each cycle boundary: a few numpy calls whatever
    the length.
    """
    return rms_over_periods(as_blocks(samples_v), period_samples(fundamental_hz))


def rms_over_periods(samples: npt.NDArray[np.float64], period: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """`synchronous_rms_per_cycle` with each cycle's period [samples, 181.8 to 222.2] already known."""
    n_cycles = samples.shape[-1] // SAMPLES_PER_CYCLE
    lead_shape = samples.shape[:-1]
    # edges[..., 0, c]: the period's left edge in samples after cycle c's start; edges[..., 1, c]:
    # its right edge after the cycle's end (negative: before it).
    edges = np.empty((*lead_shape, 2, n_cycles))
    np.multiply(np.subtract(SAMPLES_PER_CYCLE, period), 0.5, out=edges[..., 0, :])
    np.negative(edges[..., 0, :], out=edges[..., 1, :])
    first, last = edges[..., 0], edges[..., -1]  # views: (left, right) of the first and last cycle
    first -= np.minimum(first[..., :1], 0.0)  # a period reaching before sample 0 moves right
    last -= np.maximum(last[..., 1:], 0.0)  # one reaching past the end moves left
    np.maximum(first[..., :1], 0.0, out=first[..., :1])  # longer than the array: the whole array

    blocks = samples.reshape(*lead_shape, n_cycles, SAMPLES_PER_CYCLE)
    cycle_sums = np.einsum("...ci,...ci->...c", blocks, blocks)
    # Samples around each cycle's start and end, (..., 2, cycles, 2 · reach); indices past the
    # array's ends are clipped, which is harmless: every edge lies inside, so they weigh 0.
    near = samples[..., _edge_neighbourhoods(n_cycles)]
    np.square(near, out=near)
    offsets, before = _neighbour_offsets()
    weights = np.subtract(edges[..., np.newaxis], offsets)
    np.maximum(weights, 0.0, out=weights)
    np.minimum(weights, 1.0, out=weights)
    weights -= before
    moved = np.einsum("...kcj,...kcj->...kc", near, weights)  # Σ v² from each boundary to its edge
    mean_square = (cycle_sums - moved[..., 0, :] + moved[..., 1, :]) / (
        SAMPLES_PER_CYCLE - edges[..., 0, :] + edges[..., 1, :]
    )
    # Rounding can leave a zero signal's mean square a hair below 0.
    rms_v: npt.NDArray[np.float64] = np.sqrt(np.maximum(mean_square, 0.0))
    return rms_v


_REACH: Final = 24
"""Samples either side of a cycle boundary a period's edge can be: (222.2 − 200) / 2 = 11.1 at 54 Hz,
twice that for the first or last cycle, whose period is moved inside the array."""


@functools.cache
def _neighbour_offsets() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Offsets [−reach, reach) from a boundary, and 1 for those before it (they are in the cycle before)."""
    offsets = np.arange(-_REACH, _REACH, dtype=np.float64)
    before = np.minimum(np.maximum(-offsets, 0.0), 1.0)
    offsets.setflags(write=False)
    before.setflags(write=False)
    return offsets, before


@functools.lru_cache(maxsize=64)
def _edge_neighbourhoods(n_cycles: int) -> npt.NDArray[np.intp]:
    """Indices (2, cycles, 2·reach) of the samples around each cycle's start and end, clipped to the array."""
    boundaries = SAMPLES_PER_CYCLE * np.arange(n_cycles + 1)
    around = np.clip(
        boundaries[:, np.newaxis] + np.arange(-_REACH, _REACH), 0, n_cycles * SAMPLES_PER_CYCLE - 1
    )
    indices = np.stack([around[:-1], around[1:]])
    indices.setflags(write=False)
    return indices


def rms_per_window(
    samples_v: npt.ArrayLike,
    window_cycles: int = THD_WINDOW_CYCLES,
    fundamental_hz: npt.ArrayLike | None = None,
    *,
    min_vrms_v: float = INTERRUPTION_VRMS_V,
) -> npt.NDArray[np.float64]:
    """RMS [V] of each window of `window_cycles` box cycles over whole periods of the fundamental.

    IEC 61000-4-30's magnitude over its 10/12-cycle basic interval: the mean of v² over the K whole
    periods nearest the window's length (K = round(window / T), 12 at 60 Hz, 11 at 57 Hz),
    centred on the window. `fundamental_hz` is a scalar, one value per window, or None to measure
    it over each window (`frequency_per_window`); NaN (an interruption) falls back to the window's
    own samples. Periods that reach past either end of the array are moved inside it.
    """
    samples = as_blocks(samples_v, window_cycles)
    n_windows = samples.shape[-1] // (window_cycles * SAMPLES_PER_CYCLE)
    if fundamental_hz is None:
        fundamental_hz = frequency_per_window(samples, window_cycles, min_vrms_v=min_vrms_v)
    window_samples = window_cycles * SAMPLES_PER_CYCLE
    period = np.broadcast_to(period_samples(fundamental_hz), (*samples.shape[:-1], n_windows))
    whole = np.maximum(np.minimum(np.rint(window_samples / period), samples.shape[-1] // period), 1)
    centre = window_samples * (np.arange(n_windows) + 0.5)
    width = whole * period
    return np.sqrt(mean_square_between(samples * samples, centre - width / 2, width))


def mean_square_between(
    squares: npt.NDArray[np.float64], starts: npt.ArrayLike, widths: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Mean of `squares` over [start, start + width) [samples, fractional], along the last axis.

    Sample n stands for the interval [n, n + 1), so an edge inside it takes that fraction of it
    (exact for the rectangle rule; for a sine sampled at 200 a period the fractional edges add
    under 1e-4 of error). Intervals are moved inside [0, N) and cut to N at most. `squares` has
    whole box cycles; its cycles' sums and a 200-wide weight row per edge are all it takes.
    """
    n_samples = squares.shape[-1]
    lead_shape = squares.shape[:-1]
    width = np.minimum(np.asarray(widths, dtype=np.float64), n_samples)
    start = np.clip(np.asarray(starts, dtype=np.float64), 0.0, n_samples - width)
    edges = np.stack(np.broadcast_arrays(start, start + width), axis=-1)
    edges = np.broadcast_to(edges, (*lead_shape, *edges.shape[-2:])).reshape(*lead_shape, -1)
    integral = _cumulative_sum_at(squares, edges).reshape(*lead_shape, -1, 2)
    mean: npt.NDArray[np.float64] = (integral[..., 1] - integral[..., 0]) / width
    return np.maximum(mean, 0.0)  # rounding must not make a square root of a negative number


def _cumulative_sum_at(
    squares: npt.NDArray[np.float64], at: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Σ squares over [0, t) at each t of `at` (…, Q), linear inside a sample."""
    blocks = squares.reshape(*squares.shape[:-1], -1, SAMPLES_PER_CYCLE)
    n_cycles = blocks.shape[-2]
    prefix = np.zeros((*blocks.shape[:-2], n_cycles + 1))
    np.cumsum(blocks.sum(axis=-1), axis=-1, out=prefix[..., 1:])
    cycle = np.clip(np.floor(at / SAMPLES_PER_CYCLE), 0, n_cycles - 1).astype(np.intp)
    offset = at - SAMPLES_PER_CYCLE * cycle  # 0 to 200 samples into the cycle
    rows = np.take_along_axis(blocks, cycle[..., np.newaxis], axis=-2)
    weights = np.clip(offset[..., np.newaxis] - _SAMPLE_OFFSETS, 0.0, 1.0)
    partial = np.einsum("...qi,...qi->...q", rows, weights)
    total: npt.NDArray[np.float64] = np.take_along_axis(prefix, cycle, axis=-1) + partial
    return total
