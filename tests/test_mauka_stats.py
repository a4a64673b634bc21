"""The system_stats document on every backend: counts, today's counts, trends per box, boxes, plugins."""

from __future__ import annotations

import json

from opq.mauka.stats import DAY_MS, SystemStatsCollector
from opq.store import Store
from opq.store.models import Stats, Trend
from tests.mauka_site import T0, add_event, add_measurements, add_site, sine_counts

MIDNIGHT = T0 - T0 % DAY_MS


def test_the_document_counts_what_the_store_holds_and_who_reports(store: Store) -> None:
    add_site(store)
    add_measurements(store, "1", MIDNIGHT - 1_000, MIDNIGHT + 1_000)  # 10 yesterday, 10 today
    stats = Stats(119.0, 121.0, 120.0)
    store.trends.upsert_many(
        [Trend("2", MIDNIGHT + n * 60_000, None, stats, stats, stats) for n in (-1, 1, 2)]
    )
    add_event(store, {"1": sine_counts(0.5), "3": sine_counts(0.5)}, start_ms=MIDNIGHT + 5_000)
    now = MIDNIGHT + 3_600_000
    collector = SystemStatsCollector(store)
    plugin_stats = {"sag": {"waveforms": 4, "incidents": 1, "failures": 0}}
    document = collector.put(
        now,
        plugin_stats=plugin_stats,
        last_seen_ms={"1": now - 1_000, "2": now - 60_000, "3": now - 60_001},
        mauka={"events_analyzed": 1},
    )

    assert store.system_stats.get() == (now, json.loads(json.dumps(document)))
    assert (document["measurements_count"], document["measurements_count_today"]) == (20, 10)
    assert (document["trends_count"], document["trends_count_today"]) == (3, 2)
    assert (document["events_count"], document["events_count_today"]) == (1, 1)
    assert (document["box_events_count"], document["box_events_count_today"]) == (2, 2)
    assert (document["incidents_count"], document["opq_boxes_count"], document["users_count"]) == (0, 4, 0)
    assert document["box_trend_stats"] == [
        {"boxId": "2", "firstTrend": MIDNIGHT - 60_000, "lastTrend": MIDNIGHT + 120_000, "totalTrends": 3}
    ]
    assert (document["active_devices"], document["active_boxes"]) == (2, ["1", "2"])
    assert document["collections"]["measurements"] == {"count": 20}
    assert document["plugin_stats"] == plugin_stats and document["mauka"] == {"events_analyzed": 1}
    process = document["process"]
    assert process["cpu_load_percent"] is None  # no rate before a second document
    assert process["memory_use_bytes"] > 1_000_000 and process["max_memory_use_bytes"] >= 1_000_000
    assert document["timestamp"].startswith("20") and document["timestamp_ms"] == now

    second = collector.document(now + 10_000, plugin_stats={}, last_seen_ms={})
    assert second["process"]["cpu_load_percent"] is not None and second["active_devices"] == 0
