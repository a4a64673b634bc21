"""Waveform arrays: checking their length and cutting them into cycles and windows."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from opq.domain.constants import SAMPLES_PER_CYCLE


def as_blocks(samples_v: npt.ArrayLike, block_cycles: int = 1) -> npt.NDArray[np.float64]:
    """The samples [V] as float64, checked to hold whole blocks of `block_cycles` cycles.

    Works along the last axis, so a 2-D array (boxes × samples) is a fleet of waveforms.
    Raises ValueError naming the length when the last axis is not a whole number of blocks.
    """
    samples = np.asarray(samples_v, dtype=np.float64)
    if samples.ndim == 0:
        raise ValueError("samples_v is a scalar; expected an array of samples [V]")
    if block_cycles < 1:
        raise ValueError(f"block_cycles is {block_cycles}; expected at least 1 cycle")
    block_samples = block_cycles * SAMPLES_PER_CYCLE
    n_samples = samples.shape[-1]
    if n_samples % block_samples:
        unit = "cycles" if block_cycles == 1 else f"{block_cycles}-cycle windows"
        raise ValueError(
            f"samples_v has {n_samples} samples along its last axis, "
            f"not a whole number of {unit} ({block_samples} samples each)"
        )
    return samples
