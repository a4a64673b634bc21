"""Where a box's samples come from: the interface every source implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SourceCycle:
    """One cycle of raw samples: 200 ADC counts and the time of its first sample."""

    timestamp_ms: int
    counts: npt.NDArray[np.int16]


class SampleSource(Protocol):
    """Consecutive cycles of one box's raw samples, at 12,000 samples/s."""

    @property
    def calibration_constant(self) -> float:  # ADC counts per volt
        ...

    def cycles(self) -> Iterator[SourceCycle]:
        """Cycles in time order; a gap in timestamps means the box was silent (an outage).

        Ends when the source ends.
        """
        ...
