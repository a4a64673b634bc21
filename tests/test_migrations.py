"""Schema migrations: a new database reaches head, and the migrations build exactly the schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from opq.store import open_store
from opq.store.migrate import current_revision, head_revision, upgrade
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
