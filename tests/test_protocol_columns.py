"""Measurements decoded a batch at a time: the same values as one at a time, and bad payloads named."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from opq.errors import ProtocolError
from opq.protocol import BoxMeasurement, MetricStats, decode_measurement, encode_measurement
from opq.protocol import opqbox3_pb2 as pb
from opq.protocol.columns import METRICS, MeasurementColumns, decode_measurements
from opq.protocol.internal import LIVE_TOPIC, parse_live_measurements

float32s = st.floats(width=32, allow_nan=False)
stats = st.builds(MetricStats, float32s, float32s, float32s)
measurements = st.builds(
    BoxMeasurement,
    st.integers(0, 2**31 - 1).map(str),
    st.integers(0, 2**63 - 1),
    st.dictionaries(st.sampled_from([*METRICS, "volts"]), stats),
)


@given(st.lists(measurements, max_size=20))
def test_columns_hold_what_each_message_decodes_to(ms: list[BoxMeasurement]) -> None:
    decoded = decode_measurements([encode_measurement(m) for m in ms])
    assert decoded.malformed == [] and decoded.sources == list(range(len(ms)))
    columns = decoded.columns
    for row, m in enumerate(ms):
        one = decode_measurement(encode_measurement(m))
        known = {name: s for name, s in one.metrics.items() if name in METRICS}
        assert columns.measurement(row) == BoxMeasurement(one.box_id, one.timestamp_ms, known)
        assert columns.unknown_metrics[row] == len(one.metrics) - len(known)
    assert MeasurementColumns.of(ms).box_ids == columns.box_ids


def test_a_missing_metric_is_nan_and_not_present() -> None:
    m = BoxMeasurement("7", 1_000, {"rms": MetricStats(0.5, 2.0, 1.0)})
    columns = decode_measurements([encode_measurement(m)]).columns
    assert columns.present.tolist() == [[True, False, False, False]]
    assert np.isnan(columns.stats[0, 1:]).all() and not math.isnan(columns.stats[0, 0, 0])


def test_malformed_payloads_are_listed_with_their_index_and_the_rest_decoded() -> None:
    good = encode_measurement(BoxMeasurement("7", 1_000, {"rms": MetricStats(119, 121, 120)}))
    too_far = pb.Measurement(box_id=7, timestamp_ms=2**64 - 1).SerializeToString()
    wrong_id = pb.Measurement(box_id=2**32 - 1, timestamp_ms=1).SerializeToString()
    decoded = decode_measurements([b"\xff\xff garbage", good, too_far, wrong_id, good])
    assert decoded.sources == [1, 4]
    assert [index for index, _ in decoded.malformed] == [0, 2, 3]
    assert "timestamp_ms" in decoded.malformed[1][1] and "box id" in decoded.malformed[2][1]
    assert decoded.columns.box_ids == ["7", "7"]


def test_a_live_stream_message_holds_many_payloads_after_its_topic() -> None:
    assert parse_live_measurements([LIVE_TOPIC, b"a", b"b"]) == [b"a", b"b"]
    for frames in ([], [b"0007", b"a"], [b"event", b"12"]):
        with pytest.raises(ProtocolError, match="live-stream"):
            parse_live_measurements(frames)
