"""A fleet's measurements as values (`MeasurementBatch`) and as OPQ Box v3 wire bytes, a batch at a time.

A measurement with all four metrics has a fixed protobuf layout: `box_id`, `timestamp_ms`, then
four map entries `name → Metric{min, max, average}` whose floats are fixed32. So a batch is
encoded by filling one numpy record per box and prefixing each box's id and the common
timestamp; decoding gives what `encode_measurement` would have given (the official encoder
leaves out zero floats, which decode as zero all the same).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from opq.box.disturbances import FloatArray
from opq.protocol import BoxMeasurement, MetricStats, encode_measurement, wire_box_id

METRICS: Final = ("rms", "f", "thd", "trans")
"""The metric keys, in the order of a batch's `stats` axis 1."""

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class MeasurementBatch:
    """Measurements of several boxes over the same cycles: one row of `stats` per box."""

    boxes: IntArray
    """Indices of the boxes in the shard."""
    timestamp_ms: int
    """End of the measured span [ms since the epoch]."""
    stats: FloatArray
    """(boxes, 4 metrics in `METRICS` order, min/max/average); a NaN average: the metric is absent."""

    def measurements(self, box_ids: Sequence[str]) -> list[BoxMeasurement]:
        """The batch as `BoxMeasurement`s; `box_ids` are the shard's."""
        return [
            measurement_of(box_ids[int(box)], self.timestamp_ms, row)
            for box, row in zip(self.boxes, self.stats, strict=True)
        ]


def measurement_of(box_id: str, timestamp_ms: int, row: FloatArray) -> BoxMeasurement:
    """One box's row of a batch as a `BoxMeasurement`, without the metrics it has no value for."""
    metrics = {
        name: MetricStats(min=float(low), max=float(high), average=float(average))
        for name, (low, high, average) in zip(METRICS, row, strict=True)
        if not math.isnan(average)
    }
    return BoxMeasurement(box_id=box_id, timestamp_ms=timestamp_ms, metrics=metrics)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _metrics_layout() -> tuple[np.dtype[np.void], bytes]:
    """The record of the four map entries `name → Metric{min, max, average}`: float fields and bytes."""
    template = bytearray()
    names: list[str] = []
    offsets: list[int] = []
    for name in METRICS:
        key = name.encode("ascii")
        # entry: key (field 1, string) + value (field 2, a 15-byte Metric of three fixed32 floats)
        template += bytes([0x1A, 19 + len(key), 0x0A, len(key)]) + key + bytes([0x12, 15])
        for tag, stat in zip((0x0D, 0x15, 0x1D), ("min", "max", "average"), strict=True):
            template.append(tag)
            names.append(f"{name}_{stat}")
            offsets.append(len(template))
            template += bytes(4)
    layout = np.dtype(
        {"names": names, "formats": ["<f4"] * len(names), "offsets": offsets, "itemsize": len(template)}
    )
    return layout, bytes(template)


_LAYOUT, _TEMPLATE = _metrics_layout()


def measurement_prefix(box_id: str) -> bytes:
    """The first field of a box's encoded measurements (box_id), for `encode_batch`."""
    return b"\x08" + _varint(wire_box_id(box_id))


def encode_batch(batch: MeasurementBatch, prefixes: Sequence[bytes], box_ids: Sequence[str]) -> list[bytes]:
    """The protobuf bytes of each measurement of a batch, as `encode_measurement` would decode them.

    Rows with all four metrics are written into a fixed layout with one array assignment per
    field; a row missing a metric (an interruption) goes through `encode_measurement`.
    """
    stats = batch.stats
    rows = np.zeros(len(stats), dtype=_LAYOUT)
    raw = rows.view(np.uint8).reshape(len(stats), _LAYOUT.itemsize)
    raw[:] = np.frombuffer(_TEMPLATE, dtype=np.uint8)
    for m, name in enumerate(METRICS):
        for s, stat in enumerate(("min", "max", "average")):
            rows[f"{name}_{stat}"] = stats[:, m, s]
    blob = memoryview(rows.tobytes())
    head = b"\x10" + _varint(batch.timestamp_ms)
    size = _LAYOUT.itemsize
    incomplete = set(np.flatnonzero(np.isnan(stats[:, :, 2]).any(axis=1)).tolist())
    payloads = []
    for k, box in enumerate(batch.boxes.tolist()):
        if k in incomplete:
            payloads.append(encode_measurement(measurement_of(box_ids[box], batch.timestamp_ms, stats[k])))
        else:
            payloads.append(prefixes[box] + head + blob[k * size : (k + 1) * size])
    return payloads
