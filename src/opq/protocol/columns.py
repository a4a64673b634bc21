"""Box measurements decoded a batch at a time into columns, for a cloud that takes thousands a second."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from opq.errors import ProtocolError
from opq.protocol import opqbox3_pb2 as pb
from opq.protocol._codec import parse_proto
from opq.protocol.messages import BoxMeasurement, MetricStats
from opq.protocol.topics import box_id_from_wire

METRICS: Final = ("rms", "f", "thd", "trans")
"""The metrics a box sends, in column order."""
STATS: Final = ("min", "max", "average")
"""The statistics of each metric, in column order."""
_NAN3: Final = (math.nan, math.nan, math.nan)
_MAX_TIMESTAMP_MS: Final = 2**63 - 1


@dataclass(frozen=True)
class MeasurementColumns:
    """Measurements as columns: row i is box `box_ids[i]` at `timestamps_ms[i]` [ms since epoch].

    `stats[i, k, j]` is statistic `STATS[j]` of metric `METRICS[k]`, NaN where the box sent no such
    metric (`present[i, k]` False) and, before validation, wherever the box sent NaN itself.
    `unknown_metrics[i]` counts the metrics of row i that are not in `METRICS`.
    """

    box_ids: list[str]
    timestamps_ms: npt.NDArray[np.int64]
    stats: npt.NDArray[np.float64]
    present: npt.NDArray[np.bool_]
    unknown_metrics: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.box_ids)

    def take(self, rows: Sequence[int] | npt.NDArray[np.intp]) -> MeasurementColumns:
        """The columns of `rows` only, in that order."""
        index = np.asarray(rows, dtype=np.intp)
        return MeasurementColumns(
            [self.box_ids[i] for i in index.tolist()],
            self.timestamps_ms[index],
            self.stats[index],
            self.present[index],
            self.unknown_metrics[index],
        )

    def measurement(self, row: int) -> BoxMeasurement:
        """Row `row` as a `BoxMeasurement`, with the metrics it carries."""
        values = self.stats[row].tolist()
        present = self.present[row].tolist()
        return BoxMeasurement(
            self.box_ids[row],
            int(self.timestamps_ms[row]),
            {name: MetricStats(*values[k]) for k, name in enumerate(METRICS) if present[k]},
        )

    @classmethod
    def of(cls, measurements: Sequence[BoxMeasurement]) -> MeasurementColumns:
        """Columns holding `measurements` (tests, replays)."""
        stats = np.full((len(measurements), len(METRICS), len(STATS)), np.nan)
        present = np.zeros((len(measurements), len(METRICS)), dtype=np.bool_)
        unknown = np.zeros(len(measurements), dtype=np.int64)
        for i, m in enumerate(measurements):
            for name, s in m.metrics.items():
                if name in METRICS:
                    k = METRICS.index(name)
                    stats[i, k] = (s.min, s.max, s.average)
                    present[i, k] = True
                else:
                    unknown[i] += 1
        timestamps = np.array([m.timestamp_ms for m in measurements], dtype=np.int64)
        return cls([m.box_id for m in measurements], timestamps, stats, present, unknown)


@dataclass(frozen=True)
class DecodedMeasurements:
    """What a batch of payloads decoded to: `columns` row i came from payload `sources[i]`.

    `malformed` lists (payload index, reason) of the payloads that are no `Measurement`.
    """

    columns: MeasurementColumns
    sources: list[int]
    malformed: list[tuple[int, str]]


def decode_measurements(payloads: Sequence[bytes]) -> DecodedMeasurements:
    """Parse each payload as an `opq.opqbox3.Measurement` into columns; values are not judged here."""
    box_ids: list[str] = []
    timestamps: list[int] = []
    values: list[float] = []
    present: list[bool] = []
    unknown: list[int] = []
    sources: list[int] = []
    malformed: list[tuple[int, str]] = []
    for index, payload in enumerate(payloads):
        try:
            msg = parse_proto(pb.Measurement(), payload, "Measurement")
            box_id = box_id_from_wire(msg.box_id, "Measurement")
            if msg.timestamp_ms > _MAX_TIMESTAMP_MS:
                raise ProtocolError(f"malformed Measurement: timestamp_ms {msg.timestamp_ms} is out of range")
        except ProtocolError as err:
            malformed.append((index, str(err)))
            continue
        metrics = msg.metrics
        known = 0
        for name in METRICS:
            if name in metrics:
                s = metrics[name]
                values += (s.min, s.max, s.average)
                present.append(True)
                known += 1
            else:
                values += _NAN3
                present.append(False)
        box_ids.append(box_id)
        timestamps.append(msg.timestamp_ms)
        unknown.append(len(metrics) - known)
        sources.append(index)
    n = len(box_ids)
    columns = MeasurementColumns(
        box_ids,
        np.array(timestamps, dtype=np.int64),
        np.array(values, dtype=np.float64).reshape(n, len(METRICS), len(STATS)),
        np.array(present, dtype=np.bool_).reshape(n, len(METRICS)),
        np.array(unknown, dtype=np.int64),
    )
    return DecodedMeasurements(columns, sources, malformed)
