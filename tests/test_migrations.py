"""Schema migrations: a new database reaches head, and the migrations build exactly the schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from opq.store import open_store
from opq.store.migrate import current_revision, head_revision, upgrade
from opq.store.models import Measurement
from opq.store.schema import metadata


def test_a_migrated_database_is_at_head_and_matches_the_schema(db_url: str) -> None:
    with open_store(db_url) as store:
        assert current_revision(store.engine) == head_revision()
        with store.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
        # PostgreSQL's daily partitions of measurements are created at run time, not by migrations.
        differences = [d for d in differences if "measurements_d" not in str(d)]
        assert differences == []


def test_upgrade_twice_is_harmless(db_url: str) -> None:
    with open_store(db_url) as store:
        store.allocate_id("event")
        upgrade(store.engine)
        assert store.allocate_id("event") == 2


def test_a_database_made_at_revision_0001_is_brought_to_head(tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite3"
    with sqlite3.connect(old) as conn:
        conn.executescript((Path(__file__).parent / "data" / "sqlite-0001.sql").read_text())
    with open_store(f"sqlite:///{old}", upgrade=True) as store:
        assert current_revision(store.engine) == head_revision()
        with store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            rowid = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'measurements'").scalar()
        assert "WITHOUT ROWID" in str(rowid)
        # What was stored survives, and what is new works.
        assert store.measurements.latest("1") == Measurement("1", 1000, 120.0, 60.0, 0.01, 0.5)
        store.measurements.insert_many([Measurement("1", 2000, 5.0, None, None, None)])
        assert store.measurements.latest("1") == Measurement("1", 2000, 5.0, None, None, None)
        assert store.triggering.defaults().threshold_percent_transient_high == 5.0
