"""What a fleet shard's two meters share: the `Meter` interface, its encoded output, each box's rate."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from opq.box.commands import RateControl
from opq.box.fleet_encoding import IntArray
from opq.box.measuring import check_rate


@dataclass(frozen=True)
class EncodedBatch:
    """Encoded measurements (`opq.opqbox3.Measurement` bytes) of some boxes, ending at one time."""

    boxes: Sequence[int]
    timestamp_ms: int
    payloads: list[bytes]


class Meter(Protocol):
    """What the shard's tick loop asks of a meter; see the module docstring."""

    def measure(self, first_cycle: int, count: int) -> list[EncodedBatch]: ...

    def rate_control(self, box: int) -> RateControl: ...


class BoxRates:
    """Each box's measurement rate [cycles per measurement]: set by the command thread, read by the meter."""

    def __init__(self, count: int, cycles: int) -> None:
        self._rates = np.full(count, check_rate(cycles), dtype=np.int64)
        self._lock = threading.Lock()
        self.version = 0
        """Bumped at every change."""

    def get(self, box: int) -> int:
        """The rate of one box."""
        with self._lock:
            return int(self._rates[box])

    def set(self, box: int, cycles: int) -> int:
        """Set one box's rate; returns the previous one (ValueError for an invalid rate)."""
        check_rate(cycles)
        with self._lock:
            old = int(self._rates[box])
            self._rates[box] = cycles
            self.version += 1
        return old

    def snapshot(self) -> tuple[int, IntArray]:
        """(version, a copy of all rates)."""
        with self._lock:
            return self.version, self._rates.copy()

    def control(self, box: int) -> RateControl:
        """One box's rate as `CommandHandler` changes it."""
        return _BoxRate(self, box)


class _BoxRate:
    def __init__(self, rates: BoxRates, box: int) -> None:
        self._rates, self._box = rates, box

    @property
    def cycles_per_measurement(self) -> int:
        return self._rates.get(self._box)

    def set_rate(self, cycles: int) -> int:
        return self._rates.set(self._box, cycles)
