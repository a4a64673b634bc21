"""Raw cycles of 200 ADC counts as `opq.opqbox3.Cycle` frames, in the original or the compact encoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from opq.errors import ProtocolError
from opq.protocol import opqbox3_pb2 as pb
from opq.protocol._codec import parse_proto, uint_value

CYCLE_SAMPLES: Final = 200
"""Samples in one `Cycle` [samples]: the box's fixed block (`opq.domain.SAMPLES_PER_CYCLE`)."""

_INT16_MIN: Final = -(2**15)
_INT16_MAX: Final = 2**15 - 1
_LE_INT16: Final = np.dtype("<i2")


@dataclass(frozen=True, eq=False)
class RawCycle:
    """One cycle of raw ADC counts from a box (divide by the calibration constant for volts).

    `counts` is stored as a read-only int16 copy of exactly `CYCLE_SAMPLES` values; `timestamp_ms` is
    when the box processed the cycle [ms since epoch].
    """

    timestamp_ms: int
    counts: npt.NDArray[np.int16] = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", _int16_counts(self.counts))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawCycle):
            return NotImplemented
        return self.timestamp_ms == other.timestamp_ms and np.array_equal(self.counts, other.counts)

    __hash__ = None  # type: ignore[assignment]


def encode_cycle(c: RawCycle, *, legacy: bool = False) -> bytes:
    """Serialize a cycle as an `opq.opqbox3.Cycle`.

    By default the samples go in `samples_le` (400 bytes); `legacy=True` fills the original `datapoints`
    varints instead, as an original OPQ Box does (up to 2000 bytes), for an original cloud.
    """
    msg = pb.Cycle(timestamp_ms=uint_value("timestamp_ms", c.timestamp_ms, 64))
    if legacy:
        msg.datapoints.extend(c.counts.tolist())
    else:
        msg.samples_le = c.counts.astype(_LE_INT16, copy=False).tobytes()
    return msg.SerializeToString()


def decode_cycle(data: bytes) -> RawCycle:
    """Parse an `opq.opqbox3.Cycle` carrying its samples in `samples_le`, `datapoints` or both (equal)."""
    msg = parse_proto(pb.Cycle(), data, "Cycle")
    packed = msg.samples_le
    if len(packed) % 2:
        raise ProtocolError(f"malformed Cycle: samples_le has {len(packed)} bytes, not whole int16 samples")
    counts = np.frombuffer(packed, dtype=_LE_INT16).astype(np.int16)
    if msg.datapoints:
        legacy = np.fromiter(msg.datapoints, dtype=np.int64, count=len(msg.datapoints))
        outside = np.flatnonzero((legacy < _INT16_MIN) | (legacy > _INT16_MAX))
        if outside.size:
            index = int(outside[0])
            raise ProtocolError(f"malformed Cycle: sample {index} is {legacy[index]}, outside int16")
        if packed and not np.array_equal(counts, legacy):
            raise ProtocolError("malformed Cycle: samples_le and datapoints disagree")
        counts = legacy.astype(np.int16)
    return RawCycle(timestamp_ms=msg.timestamp_ms, counts=counts)


def _int16_counts(counts: npt.ArrayLike) -> npt.NDArray[np.int16]:
    array = np.asarray(counts)
    if array.ndim != 1:
        raise ProtocolError(f"Cycle samples must be a 1-D array, not one of shape {array.shape}")
    if array.size != CYCLE_SAMPLES:
        raise ProtocolError(f"Cycle has {array.size} samples, not {CYCLE_SAMPLES}")
    if array.dtype != np.int16:
        if array.dtype.kind not in "iu":
            raise ProtocolError(f"Cycle samples must be integer ADC counts, not {array.dtype}")
        if array.min() < _INT16_MIN or array.max() > _INT16_MAX:
            raise ProtocolError("Cycle samples must fit int16")
    result = np.array(array, dtype=np.int16)
    result.setflags(write=False)
    return result
