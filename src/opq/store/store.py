"""The Store: one object per database that every service uses, whichever SQL backend is behind it."""

from __future__ import annotations

import logging
from typing import Literal

from sqlalchemy import Engine, func, select

from opq.config import RetentionSettings
from opq.errors import StorageError
from opq.store import migrate, schema
from opq.store.boxes import Boxes
from opq.store.engine import make_engine, redact, translated
from opq.store.events import Events
from opq.store.files import Files
from opq.store.ids import IdKind, allocate_ids
from opq.store.incidents import Incidents
from opq.store.measurements import Measurements, Trends
from opq.store.monitoring import HealthRecords, SystemStats
from opq.store.notifications import Notifications
from opq.store.places import Locations, Regions
from opq.store.retention import prune_expired
from opq.store.triggering import Triggering
from opq.store.users import Users

logger = logging.getLogger(__name__)

Backend = Literal["sqlite", "postgresql"]


def _ms(seconds: int | None) -> int | None:
    return None if seconds is None else seconds * 1000


class Store:
    """Every collection of the OPQ data model over one database."""

    def __init__(self, engine: Engine, retention: RetentionSettings | None = None) -> None:
        self.engine = engine
        self.retention = retention or RetentionSettings()
        self.backend: Backend = "postgresql" if engine.dialect.name == "postgresql" else "sqlite"
        self.url = redact(engine.url)
        lifetimes = self.retention
        self.locations = Locations(engine)
        self.regions = Regions(engine)
        self.boxes = Boxes(engine)
        self.measurements = Measurements(engine, _ms(lifetimes.measurements_s))
        self.trends = Trends(engine, _ms(lifetimes.trends_s))
        self.events = Events(engine, _ms(lifetimes.events_s))
        self.incidents = Incidents(engine, _ms(lifetimes.incidents_s))
        self.files = Files(engine)
        self.users = Users(engine)
        self.notifications = Notifications(engine, _ms(lifetimes.notifications_s))
        self.health = HealthRecords(engine, _ms(lifetimes.health_s))
        self.system_stats = SystemStats(engine)
        self.triggering = Triggering(engine)

    def allocate_id(self, kind: IdKind) -> int:
        """A new event or incident id, never handed out before."""
        return allocate_ids(self.engine, kind)[0]

    def prune(self, now_ms: int) -> dict[str, int]:
        """Delete what expired by now_ms; how much was deleted per collection."""
        return prune_expired(self.engine, self.events, self.incidents, self.files, now_ms)

    def row_counts(self) -> dict[str, int]:
        """How many rows each table holds."""
        counts = {}
        with translated("count rows"), self.engine.connect() as conn:
            for name, table in schema.metadata.tables.items():
                counts[name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        return counts

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_store(url: str, retention: RetentionSettings | None = None, *, upgrade: bool = False) -> Store:
    """Connect to the database at `url`; with upgrade=True, create or migrate its schema first.

    Without upgrade, a database whose schema is missing or older than this opq is an error that
    says which command fixes it.
    """
    engine = make_engine(url)
    try:
        if upgrade:
            migrate.upgrade(engine)
        else:
            _require_current_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, retention)


def _require_current_schema(engine: Engine) -> None:
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    where = redact(engine.url)
    if current is None:
        raise StorageError(f"database {where} has no opq schema: run `opq db init --db URL`")
    if current != head:
        raise StorageError(
            f"database {where} is at schema revision {current}, this opq needs {head}: "
            "run `opq db upgrade --db URL`"
        )
