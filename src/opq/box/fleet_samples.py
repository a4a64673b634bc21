"""A fleet box's raw data on request: a ring buffer that holds nothing and synthesizes what is asked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np

from opq.box.ringbuffer import CYCLE_DURATION_MS, BufferedCycles, RingBuffer, TimedCounts
from opq.box.simulator import Simulator
from opq.clock import wall_clock_ms
from opq.domain import SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE

_SYNTH_CHUNK_CYCLES: Final = 6000  # a data request is synthesized 100 s at a time
_SEARCH_CYCLES: Final = 600  # the newest cycle outside an outage is looked for 10 s at a time


class SynthesizedCycles(RingBuffer):
    """A box's raw buffer that holds nothing: requested cycles are synthesized from its simulator.

    It answers as a `RingBuffer` filled since `first_cycle` (the box's start) would, so that
    `CommandHandler` serves it unchanged: it holds the cycles up to the last one sampled by now
    (on `clock_ms`) outside an outage, `capacity_cycles` back from that one, without the cycles
    of an outage in between (a real buffer, which counts only what it stored, would reach back
    further by as many cycles).
    """

    def __init__(
        self,
        simulator: Callable[[], Simulator],
        *,
        first_cycle: int,
        capacity_cycles: int,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        super().__init__(1)  # the base class's storage stays empty and unused
        self._make_simulator = simulator
        self._simulator: Simulator | None = None
        self._first_cycle = first_cycle
        self._capacity = capacity_cycles
        self._clock_ms = clock_ms

    @property
    def simulator(self) -> Simulator:
        """The box's simulator, made on first use."""
        if self._simulator is None:
            self._simulator = self._make_simulator()
        return self._simulator

    @property
    def capacity_cycles(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        newest = self._newest_cycle()
        return 0 if newest is None else newest - self._oldest_cycle(newest) + 1

    @property
    def newest_timestamp_ms(self) -> int | None:
        newest = self._newest_cycle()
        return None if newest is None else self.simulator.timestamp_ms_of_cycle(newest)

    @property
    def oldest_timestamp_ms(self) -> int | None:
        newest = self._newest_cycle()
        return None if newest is None else self.simulator.timestamp_ms_of_cycle(self._oldest_cycle(newest))

    def append(self, cycle: TimedCounts) -> None:
        raise TypeError("a synthesized buffer takes no cycles")

    def cycles_between(self, start_ms: int, end_ms: int) -> BufferedCycles:
        """The cycles overlapping [start_ms, end_ms] that the box has sampled, synthesized now."""
        empty = BufferedCycles(np.empty(0, np.int64), np.empty((0, SAMPLES_PER_CYCLE), np.int16))
        newest = self._newest_cycle()
        if newest is None:
            return empty
        sim = self.simulator
        lo = max(self._oldest_cycle(newest), sim.cycle_index_at(start_ms) - 1)
        hi = min(newest, sim.cycle_index_at(end_ms) + 1)
        if hi < lo:
            return empty
        cycles = np.arange(lo, hi + 1, dtype=np.int64)
        timestamps = sim.start_ms + cycles * SAMPLES_PER_CYCLE * 1000 // SAMPLE_RATE_HZ
        keep = (timestamps <= end_ms) & (timestamps + CYCLE_DURATION_MS > start_ms)
        keep &= ~sim.silent_cycles(lo, len(cycles))
        kept = np.flatnonzero(keep)
        if not len(kept):
            return empty
        a, b = int(kept[0]), int(kept[-1]) + 1
        counts = np.concatenate(
            [
                sim.counts(
                    (lo + c) * SAMPLES_PER_CYCLE, (min(b, c + _SYNTH_CHUNK_CYCLES) - c) * SAMPLES_PER_CYCLE
                )
                for c in range(a, b, _SYNTH_CHUNK_CYCLES)
            ]
        ).reshape(b - a, SAMPLES_PER_CYCLE)
        mask = keep[a:b]
        return BufferedCycles(timestamps[a:b][mask], counts[mask])

    def _newest_cycle(self) -> int | None:
        """The last cycle sampled by now and not in an outage, or None if there is none yet."""
        sim = self.simulator
        newest = sim.cycle_index_at(self._clock_ms()) - 1
        if sim.duration_cycles is not None:
            newest = min(newest, sim.duration_cycles - 1)
        while newest >= self._first_cycle:  # back through an outage, as long as it lasted
            count = min(_SEARCH_CYCLES, newest - self._first_cycle + 1)
            heard = np.flatnonzero(~sim.silent_cycles(newest - count + 1, count))
            if len(heard):
                return newest - count + 1 + int(heard[-1])
            newest -= count
        return None

    def _oldest_cycle(self, newest: int) -> int:
        return max(self._first_cycle, newest - self._capacity + 1)
