"""A simulated box: samples, ADC counts and cycles of a scenario, at any time range.

Samples for any time range are computed directly (random access): the supply model is a closed
form of the cycle index (`disturbances`), and the noise of sample n comes from a counter-based
generator (Philox) keyed by (scenario seed, box seed), at the counter that holds output n/2, so
the same scenario and seeds give bit-identical samples however a range is cut.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opq.box.disturbances import FloatArray, SupplyModel, sincos_cycles
from opq.box.scenario import Scenario
from opq.box.source import SourceCycle
from opq.domain.constants import (
    ADC_FULL_SCALE_COUNTS,
    DEFAULT_CALIBRATION_COUNTS_PER_V,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
)

_CHUNK_CYCLES = 60  # synthesize a second at a time
_ALIGN_CYCLES = 2  # compute whole 2-cycle blocks (400 samples, 200 noise pairs) so that every
# element meets the same arithmetic however a range is cut, SIMD lanes included


@dataclass(frozen=True)
class Variation:
    """How one box's supply differs from the scenario's reference box."""

    voltage_offset_v: float = 0.0
    """Added to the voltage [V rms] (wiring drop, transformer tap)."""
    phase_offset_rad: float = 0.0
    """Phase of the fundamental against the reference [rad] (π on the other leg of a split phase)."""
    noise_scale: float = 1.0
    """Multiplies the scenario's noise_v_rms."""

    @classmethod
    def for_box(cls, box_seed: int) -> Variation:
        """A variation drawn from the box seed: ±2.5 V, either leg ±1.5°, noise ×0.5–2; seed 0 is none."""
        if box_seed == 0:
            return cls()
        rng = np.random.default_rng([0x626F78, box_seed])  # "box"
        leg = int(rng.integers(2))
        return cls(
            voltage_offset_v=float(rng.uniform(-2.5, 2.5)),
            phase_offset_rad=float(leg * math.pi + rng.normal(0.0, math.radians(1.5))),
            noise_scale=float(np.exp(rng.uniform(math.log(0.5), math.log(2.0)))),
        )


@dataclass(frozen=True)
class Variations:
    """The variations of a fleet of boxes, one array entry per box: the fast path's input."""

    voltage_offset_v: FloatArray
    phase_offset_rad: FloatArray
    noise_scale: FloatArray

    @classmethod
    def of(cls, variations: Iterable[Variation]) -> Variations:
        """The arrays of some boxes' variations."""
        listed = list(variations)
        return cls(
            np.array([v.voltage_offset_v for v in listed], dtype=np.float64),
            np.array([v.phase_offset_rad for v in listed], dtype=np.float64),
            np.array([v.noise_scale for v in listed], dtype=np.float64),
        )

    @classmethod
    def for_boxes(cls, box_seeds: Iterable[int]) -> Variations:
        """The variations `Variation.for_box` draws for these box seeds."""
        return cls.of(Variation.for_box(seed) for seed in box_seeds)


class Simulator:
    """One box on a simulated supply: a SampleSource with random access to any time range."""

    def __init__(
        self,
        scenario: Scenario | SupplyModel,
        *,
        box_seed: int = 0,
        calibration_constant: float = DEFAULT_CALIBRATION_COUNTS_PER_V,
        variation: Variation | None = None,
        start_ms: int | None = None,
    ) -> None:
        """Pass a SupplyModel instead of a Scenario to share one among a fleet.

        variation: None draws it from box_seed (`Variation.for_box`). start_ms: time of sample 0
        [ms since the epoch]; None takes the scenario's, or else the time now.
        """
        self.model = scenario if isinstance(scenario, SupplyModel) else SupplyModel(scenario)
        self.scenario = self.model.scenario
        supply = self.scenario.supply
        self.box_seed = box_seed
        self.variation = Variation.for_box(box_seed) if variation is None else variation
        self._calibration_constant = calibration_constant
        if start_ms is None:
            start_ms = supply.start_ms if supply.start_ms is not None else int(time.time() * 1000)
        self.start_ms = start_ms
        self.noise_v_rms = supply.noise_v_rms * self.variation.noise_scale
        self.duration_cycles = (
            None
            if supply.duration_s is None
            else round(supply.duration_s * SAMPLE_RATE_HZ) // SAMPLES_PER_CYCLE
        )
        seeds = np.random.SeedSequence([supply.seed, box_seed, 0x6E6F697365])  # "noise"
        self._noise_key = seeds.generate_state(2, np.uint64)

    @property
    def calibration_constant(self) -> float:
        """ADC counts per volt."""
        return self._calibration_constant

    def samples_v(self, start_sample: int, count: int) -> FloatArray:
        """`count` samples [V] from sample `start_sample` (0 = the scenario start); zero in an outage.

        The model runs on past the scenario's duration_s: only `cycles` stops there.
        """
        if start_sample < 0 or count < 0:
            raise ValueError(f"samples from {start_sample}, {count} of them: both must be >= 0")
        first = start_sample // SAMPLES_PER_CYCLE
        stop = -(-(start_sample + count) // SAMPLES_PER_CYCLE)
        offset = start_sample - first * SAMPLES_PER_CYCLE
        return self.cycles_v(first, stop - first).reshape(-1)[offset : offset + count]

    def counts(self, start_sample: int, count: int) -> npt.NDArray[np.int16]:
        """The samples as the box's ADC gives them: volts × calibration, rounded, clipped at ±32767."""
        return self._quantize(self.samples_v(start_sample, count))

    def cycles_v(self, first_cycle: int, count: int) -> FloatArray:
        """Samples [V] of `count` whole cycles from `first_cycle`, shape (count, 200)."""
        if first_cycle < 0 or count < 0:
            raise ValueError(f"cycles from {first_cycle}, {count} of them: both must be >= 0")
        first = first_cycle - first_cycle % _ALIGN_CYCLES
        stop = -(-(first_cycle + count) // _ALIGN_CYCLES) * _ALIGN_CYCLES
        samples = np.empty((stop - first, SAMPLES_PER_CYCLE))
        for start in range(first, stop, _CHUNK_CYCLES):  # a second at a time stays in cache
            chunk = min(_CHUNK_CYCLES, stop - start)
            samples[start - first : start - first + chunk] = self._aligned_cycles_v(start, chunk)
        return samples[first_cycle - first : first_cycle - first + count]

    def _aligned_cycles_v(self, first_cycle: int, count: int) -> FloatArray:
        block = self.model.waveform_v(
            first_cycle,
            count,
            voltage_offset_v=self.variation.voltage_offset_v,
            phase_offset_cycles=self.variation.phase_offset_rad / (2 * math.pi),
        )
        if self.noise_v_rms > 0:
            noise = self._standard_noise(first_cycle, count)
            if (silent := self.model.silent_samples(first_cycle, count)) is not None:
                noise[silent] = 0.0
            noise *= self.noise_v_rms
            block += noise
        return block

    def _standard_noise(self, first_cycle: int, count: int) -> FloatArray:
        """Standard normal noise, shape (count, 200): Box–Muller on Philox output n/2 for sample n."""
        pairs = count * SAMPLES_PER_CYCLE // 2
        # Philox makes 4 outputs per counter step, so sample pair p is output p of counter p // 4.
        counter = first_cycle * SAMPLES_PER_CYCLE // 8
        raw = np.random.Philox(key=self._noise_key, counter=[counter, 0, 0, 0]).random_raw(pairs)
        uniform = (raw >> np.uint64(32)).astype(np.float64)
        uniform *= 2.0**-32
        uniform += 2.0**-33  # in (0, 1)
        radius = np.log(uniform)
        radius *= -2.0
        np.sqrt(radius, out=radius)
        angle = (raw & np.uint64(0xFFFFFFFF)).astype(np.float64)
        angle *= 2.0**-32
        sin, cos = sincos_cycles(angle)
        noise = np.empty((pairs, 2))
        np.multiply(radius, cos, out=noise[:, 0])
        np.multiply(radius, sin, out=noise[:, 1])
        return noise.reshape(count, SAMPLES_PER_CYCLE)

    def _quantize(self, samples_v: FloatArray) -> npt.NDArray[np.int16]:
        counts = np.rint(samples_v * self._calibration_constant)
        return np.clip(counts, -ADC_FULL_SCALE_COUNTS, ADC_FULL_SCALE_COUNTS).astype(np.int16)

    def cycles(self, start_cycle: int = 0) -> Iterator[SourceCycle]:
        """The box's cycles from `start_cycle` to the scenario's end (forever if it has none).

        Cycles touching an outage are left out: the box is off, and its timestamps jump.
        Not paced: the caller keeps time.
        """
        cycle = start_cycle
        while self.duration_cycles is None or cycle < self.duration_cycles:
            count = (
                _CHUNK_CYCLES
                if self.duration_cycles is None
                else min(_CHUNK_CYCLES, self.duration_cycles - cycle)
            )
            counts = self._quantize(self.cycles_v(cycle, count))
            for row in np.flatnonzero(~self.model.silent_cycles(cycle, count)):
                yield SourceCycle(self.timestamp_ms_of_cycle(cycle + int(row)), counts[row])
            cycle += count

    def silent_cycles(self, first_cycle: int, count: int) -> npt.NDArray[np.bool_]:
        """Whether the box is off (an outage) during each cycle."""
        return self.model.silent_cycles(first_cycle, count)

    def timestamp_ms_of_cycle(self, cycle: int) -> int:
        """Time of a cycle's first sample [ms since the epoch], rounded down."""
        return self.start_ms + cycle * SAMPLES_PER_CYCLE * 1000 // SAMPLE_RATE_HZ

    def sample_index_at(self, timestamp_ms: int) -> int:
        """Index of the sample taken at a time [ms since the epoch] (12 samples a millisecond)."""
        return (timestamp_ms - self.start_ms) * SAMPLE_RATE_HZ // 1000

    def cycle_index_at(self, timestamp_ms: int) -> int:
        """Index of the cycle holding a time [ms since the epoch]."""
        return self.sample_index_at(timestamp_ms) // SAMPLES_PER_CYCLE
