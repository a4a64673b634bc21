"""Measurements and trends into the store in batches, held in a bounded buffer while it is away."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np

from opq.clock import wall_clock_ms
from opq.errors import OpqError
from opq.store import Store
from opq.store.measurements import MeasurementRow
from opq.store.models import Trend

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 50_000
"""Most measurements written in one transaction."""
_LAG_SAMPLES: Final = 50_000
"""Recent lags kept for the percentiles (a sample of each batch): health reads them every 2 s."""
_RETRY_MAX_S: Final = 10.0


class MeasurementWriter:
    """Collects measurements from the receiving thread and writes them from its own thread.

    `put` never blocks: past `max_buffered` waiting measurements a new one is dropped and counted
    (`dropped`). A failed write keeps its batch at the head of the buffer and is retried with a
    growing pause (up to 10 s), so a database that goes away loses nothing until the buffer fills.
    """

    def __init__(
        self,
        store: Store,
        *,
        interval_s: float,
        max_buffered: int,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._store = store
        self._interval_s = interval_s
        self._max_buffered = max_buffered
        self._clock_ms = clock_ms
        self._pending: deque[MeasurementRow] = deque()
        self._trends: deque[Trend] = deque()
        self._lags_ms: deque[float] = deque(maxlen=_LAG_SAMPLES)
        self._lock = threading.Lock()
        self.stored = 0
        self.duplicates = 0
        self.dropped = 0
        self.failed_writes = 0
        self.trends_stored = 0
        self.database_ok = True
        self.last_error = ""

    def put_rows(self, rows: Sequence[MeasurementRow]) -> int:
        """Queue rows (any past a full buffer are dropped and counted); returns how many were queued."""
        room = max(0, self._max_buffered - len(self._pending))
        if len(rows) > room:
            self.dropped += len(rows) - room
            rows = rows[:room]
        self._pending.extend(rows)
        return len(rows)

    def put_trends(self, trends: Sequence[Trend]) -> None:
        """Queue rolled-up trends (few: one per box a minute)."""
        self._trends.extend(trends)

    @property
    def buffered(self) -> int:
        """Measurements waiting to be written."""
        return len(self._pending)

    def lag_percentiles_ms(self) -> dict[str, float | None]:
        """Ingest lag of recent measurements, box timestamp to stored: p50 and p99 [ms]."""
        with self._lock:
            lags = np.fromiter(self._lags_ms, dtype=np.float64, count=len(self._lags_ms))
        if lags.size == 0:
            return {"p50": None, "p99": None}
        p50, p99 = np.percentile(lags, [50, 99])
        return {"p50": round(float(p50), 1), "p99": round(float(p99), 1)}

    def run(self, stop: threading.Event) -> None:
        """Write batches until `stop` is set, then write what is left (one last try)."""
        pause_s = self._interval_s
        while not stop.wait(pause_s):
            pause_s = self._interval_s if self.flush() else min(_RETRY_MAX_S, max(1.0, pause_s * 2))
        self.flush()

    def flush(self) -> bool:
        """Write everything waiting; False if the database refused (the data stays queued)."""
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
            try:
                result = self._store.measurements.insert_rows(batch)
            except OpqError as err:
                self._pending.extendleft(reversed(batch))
                self._failed(err)
                return False
            self._record_lags(batch)
            self.stored += result.inserted
            self.duplicates += result.duplicates
        if self._trends:
            trends = list(self._trends)
            try:
                self._store.trends.upsert_many(trends)
            except OpqError as err:
                self._failed(err)
                return False
            for _ in trends:
                self._trends.popleft()
            self.trends_stored += len(trends)
        if not self.database_ok:
            logger.info("the database is back: writing again")
        self.database_ok = True
        return True

    def _failed(self, err: OpqError) -> None:
        self.failed_writes += 1
        self.last_error = str(err)
        if self.database_ok:
            logger.error("cannot write measurements, holding them (%d waiting): %s", self.buffered, err)
        self.database_ok = False

    def _record_lags(self, batch: list[MeasurementRow]) -> None:
        now_ms = self._clock_ms()
        step = max(1, len(batch) // 1000)  # a sample is enough for percentiles
        with self._lock:
            self._lags_ms.extend(float(now_ms - row[1]) for row in batch[::step])
