"""The four box metrics of one contiguous span of cycles, for any windows in it, in one compiled call.

A box computes its measurements from the newest cycles as they arrive: a span (one measurement, or
every measurement a block of cycles completes, with a cycle of context on each side) goes through
the compiled pass of `compiled_span` once. The definitions are those of `frequency`, `harmonics`,
`metrics` and `synchronous_rms`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from opq.domain.compiled_span import SpanMetrics, span_rows
from opq.domain.constants import INTERRUPTION_VRMS_V, SAMPLES_PER_CYCLE


def span_metrics(
    samples_v: npt.NDArray[np.float64],
    frequency_windows: Sequence[tuple[int, int]],
    thd_windows: Sequence[tuple[int, int]],
    *,
    period_windows: Sequence[int] | None = None,
    min_vrms_v: float = INTERRUPTION_VRMS_V,
) -> SpanMetrics:
    """The metrics of a 1-D waveform of whole cycles [V]; windows are (first, stop) cycles.

    Windows may overlap and be of any length (a THD window cut short by the start of a stream is
    shorter); each frequency window is fitted to the crossings inside it. Cycle c's RMS is over
    one period of the frequency of window `period_windows[c]` (−1, or a NaN frequency: the
    nominal period, i.e. the box cycle itself); by default, of the last window covering it.
    Windows come as Python pairs: a box has a few, and arrays of them would cost more to build.
    """
    samples_v = np.ascontiguousarray(samples_v, dtype=np.float64)
    n_cycles = len(samples_v) // SAMPLES_PER_CYCLE
    if period_windows is None:
        period_windows = default_period_windows(n_cycles, frequency_windows)
    rms_v, transient_v, frequency_hz, thd_ratio = span_rows(
        samples_v[np.newaxis],
        (0, n_cycles),
        frequency_windows,
        thd_windows,
        period_windows,
        (0, n_cycles),
        min_vrms_v,
    )
    return SpanMetrics(rms_v[0], transient_v[0], frequency_hz[0], thd_ratio[0])


def default_period_windows(n_cycles: int, frequency_windows: Sequence[tuple[int, int]]) -> list[int]:
    """For each cycle, the last frequency window covering it, or −1 (the nominal period)."""
    period_windows = [-1] * n_cycles
    for index, (first, stop) in enumerate(frequency_windows):
        period_windows[first:stop] = [index] * (stop - first)
    return period_windows
