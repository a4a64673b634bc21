"""A simulated box: samples, ADC counts and cycles of a scenario, and its metrics without samples.

Samples for any time range are computed directly (random access): the supply model is a closed
form of the cycle index (`disturbances`), and the noise of sample n comes from a counter-based
generator (Philox) keyed by (scenario seed, box seed) at counter n, so the same scenario and seeds
give bit-identical samples however a range is cut.

The fast path (`fleet_cycle_metrics`) gives each box's per-cycle RMS, frequency, THD and transient
from the model alone. It is exact for the noise-free signal (window edges included) except where
noted, and statistical for the noise:
* RMS: √(mean of the clean signal² + σ²): the sample noise moves a cycle's RMS by about ±0.03 %
  for 0.5 V at 120 V. Approximate where harmonics meet off-nominal frequency or a transient (their
  cross terms are left out) and in clipped cycles (the fundamental's clipped RMS).
* Frequency: the model's, exact (the waveform's frequency is constant within a cycle).
* THD: √(Σ harmonic² + the noise's expected floor in opq.domain's 12-cycle flat-top windows);
  clipping's own harmonics are left out.
* Transient: the largest sampled |transient| in the cycle, or else the expected noise floor of
  opq.domain's high-pass (2.83 σ ± 13 %) plus the harmonics it passes. Abrupt steps of a sag or
  swell, which the high-pass sees, are not modelled.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import signal

from opq.box.disturbances import CYCLE_S, FloatArray, SupplyModel, sincos_cycles
from opq.box.scenario import Scenario
from opq.box.source import SourceCycle
from opq.domain.constants import (
    INTERRUPTION_VRMS_V,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_CYCLE,
    THD_MAX_HARMONIC,
    THD_WINDOW_CYCLES,
)

FULL_SCALE_COUNTS = 32_767
"""Largest |ADC count|: the 16-bit ADC clips beyond it (≈ ±215 V at 152.5 counts per volt)."""
DEFAULT_CALIBRATION = 152.5
"""ADC counts per volt of the original box's default configuration."""
NOISE_PEAK_FACTOR = 2.83
"""Mean of max |high-passed white noise| over a 200-sample cycle, per σ (measured; spread ±13 %)."""
_CHUNK_CYCLES = 60  # cycles() synthesizes a second at a time
_ALIGN_CYCLES = 2  # ranges are computed in whole 2-cycle blocks: 400 samples, 200 noise pairs


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
        listed = list(variations)
        return cls(
            np.array([v.voltage_offset_v for v in listed], dtype=np.float64),
            np.array([v.phase_offset_rad for v in listed], dtype=np.float64),
            np.array([v.noise_scale for v in listed], dtype=np.float64),
        )

    @classmethod
    def for_boxes(cls, box_seeds: Iterable[int]) -> Variations:
        return cls.of(Variation.for_box(seed) for seed in box_seeds)


class CycleMetrics(NamedTuple):
    """Per-cycle metrics as opq.domain computes them from samples; NaN while the box is silent."""

    rms_v: FloatArray
    frequency_hz: FloatArray
    """NaN where the fundamental is below opq.domain's INTERRUPTION_VRMS_V."""
    thd_ratio: FloatArray
    """NaN where the fundamental is below opq.domain's INTERRUPTION_VRMS_V."""
    transient_v: FloatArray


class Simulator:
    """One box on a simulated supply: a SampleSource with random access to any time range."""

    def __init__(
        self,
        scenario: Scenario | SupplyModel,
        *,
        box_seed: int = 0,
        calibration_constant: float = DEFAULT_CALIBRATION,
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
            None if supply.duration_s is None else round(supply.duration_s * SAMPLE_RATE_HZ) // SAMPLES_PER_CYCLE
        )
        seeds = np.random.SeedSequence([supply.seed, box_seed, 0x6E6F697365])  # "noise"
        self._noise_key = seeds.generate_state(2, np.uint64)

    @property
    def calibration_constant(self) -> float:
        """ADC counts per volt."""
        return self._calibration_constant

    def samples_v(self, start_sample: int, count: int) -> FloatArray:
        """`count` samples [V] from sample `start_sample` (0 = the scenario start); zero in an outage."""
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
        phase_offset_cycles = self.variation.phase_offset_rad / (2 * math.pi)
        block = self.model.waveform_v(
            first,
            stop - first,
            voltage_offset_v=self.variation.voltage_offset_v,
            phase_offset_cycles=phase_offset_cycles,
        )
        if self.noise_v_rms > 0:
            noise = self._standard_noise(first, stop - first)
            if (silent := self.model.silent_samples(first, stop - first)) is not None:
                noise[silent] = 0.0
            block += self.noise_v_rms * noise
        return block[first_cycle - first : first_cycle - first + count]

    def _standard_noise(self, first_cycle: int, count: int) -> FloatArray:
        """Standard normal noise, shape (count, 200): Box–Muller on Philox output n/2 for sample n."""
        pairs = count * SAMPLES_PER_CYCLE // 2
        # Philox makes 4 outputs per counter step, so sample pair p is output p of counter p // 4.
        counter = first_cycle * SAMPLES_PER_CYCLE // 8
        raw = np.random.Philox(key=self._noise_key, counter=[counter, 0, 0, 0]).random_raw(pairs)
        uniform = (raw >> np.uint64(32)).astype(np.float64) * 2.0**-32 + 2.0**-33  # (0, 1)
        radius = np.sqrt(-2.0 * np.log(uniform))
        sin, cos = sincos_cycles((raw & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32)
        noise = np.empty((pairs, 2))
        np.multiply(radius, cos, out=noise[:, 0])
        np.multiply(radius, sin, out=noise[:, 1])
        return noise.reshape(count, SAMPLES_PER_CYCLE)

    def _quantize(self, samples_v: FloatArray) -> npt.NDArray[np.int16]:
        counts = np.rint(samples_v * self._calibration_constant)
        return np.clip(counts, -FULL_SCALE_COUNTS, FULL_SCALE_COUNTS).astype(np.int16)

    def cycles(self, start_cycle: int = 0) -> Iterator[SourceCycle]:
        """The box's cycles from `start_cycle` to the scenario's end (forever if it has none).

        Cycles touching an outage are left out: the box is off, and its timestamps jump.
        Not paced: the caller keeps time.
        """
        cycle = start_cycle
        while self.duration_cycles is None or cycle < self.duration_cycles:
            count = _CHUNK_CYCLES if self.duration_cycles is None else min(_CHUNK_CYCLES, self.duration_cycles - cycle)
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

    def expected_cycle_metrics(self, first_cycle: int, count: int) -> CycleMetrics:
        """This box's per-cycle metrics from the model, without samples; see `fleet_cycle_metrics`."""
        metrics = fleet_cycle_metrics(
            self.model,
            Variations.of([self.variation]),
            first_cycle,
            count,
            calibration_constant=self._calibration_constant,
        )
        return CycleMetrics(*(values[0] for values in metrics))
