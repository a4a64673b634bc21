"""Makai and Mauka: events' completion and pieces, event_analyses, a transient threshold, optional metrics.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The baseline builds its tables from the live `opq.store.schema`, so on a new database they already
hold what this revision adds: each step runs only where its column or table is missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from opq.store.schema import event_analyses

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TRANSIENT = "threshold_percent_transient_high"
OPTIONAL_METRICS = ("frequency", "thd", "transient")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "completed_ms" not in _columns(inspector, "events"):
        with op.batch_alter_table("events") as batch:
            batch.add_column(sa.Column("completed_ms", sa.BigInteger, nullable=True))
            batch.add_column(sa.Column("continues_event_id", sa.BigInteger, nullable=True))
            batch.create_index("ix_events_completed_ms", ["completed_ms"])
    if TRANSIENT not in _columns(inspector, "triggering_defaults"):
        with op.batch_alter_table("triggering_defaults") as batch:
            batch.add_column(sa.Column(TRANSIENT, sa.Float, nullable=False, server_default="5.0"))
        with op.batch_alter_table("triggering_defaults") as batch:
            batch.alter_column(TRANSIENT, server_default=None)
    if TRANSIENT not in _columns(inspector, "triggering_overrides"):
        with op.batch_alter_table("triggering_overrides") as batch:
            batch.add_column(sa.Column(TRANSIENT, sa.Float, nullable=True))
    measurements = {column["name"]: column for column in inspector.get_columns("measurements")}
    optional = [name for name in OPTIONAL_METRICS if not measurements[name]["nullable"]]
    if optional:
        # SQLite rebuilds the table for this; it must stay a WITHOUT ROWID table.
        with op.batch_alter_table("measurements", table_kwargs={"sqlite_with_rowid": False}) as batch:
            for name in optional:
                batch.alter_column(name, existing_type=sa.Float, nullable=True)
    if "event_analyses" not in tables:
        event_analyses.create(op.get_bind())
    # Events from before this revision finished long ago.
    op.execute("UPDATE events SET completed_ms = target_event_end_timestamp_ms WHERE completed_ms IS NULL")


def downgrade() -> None:
    # The metrics stay nullable: rows without a frequency may have been stored since.
    op.drop_table("event_analyses")
    with op.batch_alter_table("triggering_overrides") as batch:
        batch.drop_column(TRANSIENT)
    with op.batch_alter_table("triggering_defaults") as batch:
        batch.drop_column(TRANSIENT)
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_completed_ms")
        batch.drop_column("continues_event_id")
        batch.drop_column("completed_ms")


def _columns(inspector: sa.Inspector, table: str) -> set[str]:
    return {column["name"] for column in inspector.get_columns(table)}
