"""FIR filters shared by the metrics: designed once with scipy.signal, applied polyphase."""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from scipy import signal

from opq.domain.constants import NOMINAL_FREQUENCY_HZ, SAMPLE_RATE_HZ

DECIMATION = 10
"""Decimation factor of the low-rate path: 12 kHz → 1.2 kHz, 20 samples per 60 Hz cycle."""

DECIMATED_RATE_HZ = SAMPLE_RATE_HZ / DECIMATION
"""Sample rate of the low-rate path [samples/s]."""

_LOWPASS_TAPS = 90  # a multiple of DECIMATION, so the polyphase split is exact
_PHASES = _LOWPASS_TAPS // DECIMATION
_PASS_BAND_HZ = 300.0  # up to the 5th harmonic
_STOP_BAND_HZ = 900.0  # images of the pass band after 1.2 kHz sampling start at 1200 − 300 Hz
_IMAGE_HALF_WIDTH_HZ = 80.0  # images of a 57–63 Hz fundamental sit at k·1200 ± 63 Hz
_BAND_GAP_HZ = 10.0  # remez needs a little room between bands

EDGE_SAMPLES = DECIMATION * (_PHASES - 1)
"""Samples lost at each end by a `decimate` then `interpolate` round trip [samples at 12 kHz]."""


def _remez_bands() -> tuple[list[float], list[float]]:
    """Band edges [Hz] and weights: the stop band weighs 100× more around the fundamental's images.

    Zero-stuffing the 1.2 kHz signal mirrors the 170 V fundamental to k·1.2 kHz ± f; at −80 dB each
    image would still leave ≈17 mV, so those narrow bands get the weight.
    """
    edges = [0.0, _PASS_BAND_HZ]
    weights = [1.0]
    start_hz = _STOP_BAND_HZ
    for k in range(1, round(SAMPLE_RATE_HZ / 2 / DECIMATED_RATE_HZ) + 1):
        low_hz = k * DECIMATED_RATE_HZ - _IMAGE_HALF_WIDTH_HZ
        high_hz = min(k * DECIMATED_RATE_HZ + _IMAGE_HALF_WIDTH_HZ, SAMPLE_RATE_HZ / 2)
        edges += [start_hz, low_hz - _BAND_GAP_HZ, low_hz, high_hz]
        weights += [10.0, 1000.0]
        start_hz = high_hz + _BAND_GAP_HZ
    return edges, weights


@functools.cache
def lowpass_taps() -> npt.NDArray[np.float64]:
    """Linear-phase equiripple low-pass at 12 kHz (90 taps): flat to 300 Hz, −84 dB from 900 Hz.

    Designed with scipy.signal.remez and scaled to gain 1 at the nominal 60 Hz. A `decimate` then
    `interpolate` round trip reproduces a 120 V fundamental anywhere in 57–63 Hz within 4 mV and
    harmonics 2–5 within 0.25 %, so the waveform minus its round trip is a high-pass that keeps
    next to nothing of them (gain 0.0024 at 300 Hz, 0.5 at 500 Hz, 1 from 700 Hz).
    """
    edges, weights = _remez_bands()
    desired = [1.0] + [0.0] * (len(weights) - 1)
    taps = signal.remez(_LOWPASS_TAPS, edges, desired, weight=weights, fs=SAMPLE_RATE_HZ)
    _, response = signal.freqz(taps, worN=[NOMINAL_FREQUENCY_HZ], fs=SAMPLE_RATE_HZ)
    taps = np.asarray(taps / abs(response[0]), dtype=np.float64)
    taps.setflags(write=False)
    return taps


def lowpass_delay_samples() -> float:
    """Group delay of `lowpass_taps` [samples at 12 kHz]: 44.5."""
    return (_LOWPASS_TAPS - 1) / 2


@functools.cache
def _decimation_phases() -> npt.NDArray[np.float64]:
    """phases[p, r] = taps[10·p + r]."""
    phases = np.ascontiguousarray(lowpass_taps().reshape(_PHASES, DECIMATION))
    phases.setflags(write=False)
    return phases


@functools.cache
def _interpolation_phases() -> npt.NDArray[np.float64]:
    """phases[P − 1 − p, r] = 10·taps[10·p + r] (gain 10 makes up for the zero-stuffing)."""
    phases = np.ascontiguousarray(DECIMATION * _decimation_phases()[::-1])
    phases.setflags(write=False)
    return phases


def decimate(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Low-pass and keep every 10th sample, along the last axis (length a multiple of 10).

    Output j is the filter centred on input sample 10·j + `lowpass_delay_samples()`; only outputs
    whose whole filter span lies inside the input are made, so there is no start-up transient.
    """
    blocks = samples.reshape(*samples.shape[:-1], -1, DECIMATION)
    n_blocks = blocks.shape[-2]
    n_out = n_blocks - _PHASES + 1
    if n_out <= 0:
        return np.zeros((*samples.shape[:-1], 0))
    # partial[..., p, i] = Σ_r taps[10·p + r]·x[10·i + r]; output j = Σ_p partial[..., p, j + p],
    # a walk along diagonals that a strided view turns into one sum over rows.
    partial = np.ascontiguousarray(_decimation_phases() @ np.swapaxes(blocks, -1, -2))
    diagonals = _view(
        partial, (*partial.shape[:-2], _PHASES, n_out), (*partial.strides[:-2], n_blocks + 1, 1)
    )
    return np.asarray(diagonals.sum(axis=-2), dtype=np.float64)


def interpolate(decimated: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Back to 12 kHz through the same low-pass, along the last axis.

    After `decimate`, output n lines up with input sample n + `EDGE_SAMPLES`: the round trip loses
    80 samples at each end and keeps the rest time-aligned (both filters' delays cancel exactly).
    """
    n_in = decimated.shape[-1]
    n_out = n_in - _PHASES + 1
    if n_out <= 0:
        return np.zeros((*decimated.shape[:-1], 0))
    # Output 10·k + r = Σ_p 10·taps[10·p + r]·d[k + P − 1 − p]: the sliding windows of d times
    # the row-reversed phase matrix.
    decimated = np.ascontiguousarray(decimated)
    windows = _view(decimated, (*decimated.shape[:-1], n_out, _PHASES), (*decimated.strides[:-1], 1, 1))
    upsampled = np.ascontiguousarray(windows) @ _interpolation_phases()
    return upsampled.reshape(*decimated.shape[:-1], n_out * DECIMATION)


def _view(
    base: npt.NDArray[np.float64], shape: tuple[int, ...], strides: tuple[int, ...]
) -> npt.NDArray[np.float64]:
    """Read-only strided view of a C-contiguous array; the last strides are in items, not bytes."""
    n_lead = len(shape) - 2
    item = base.itemsize
    byte_strides = (*strides[:n_lead], strides[-2] * item, strides[-1] * item)
    view: npt.NDArray[np.float64] = np.ndarray(shape, base.dtype, base, 0, byte_strides)
    view.flags.writeable = False
    return view
