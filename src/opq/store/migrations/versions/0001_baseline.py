"""Baseline: every table of the OPQ data model.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

The baseline builds the tables from the live `opq.store.schema`, so a new database gets every later
column at once; a later revision adds its changes with explicit operations, each skipped where it is
already in place, so that a database made by an older opq is brought up to date too. The test
`test_migrations_match_schema` fails when the schema and the migrations disagree.
"""

from __future__ import annotations

from alembic import op

from opq.store.schema import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind)
    op.bulk_insert(
        metadata.tables["id_counters"],
        [{"name": "event", "last_value": 0}, {"name": "incident", "last_value": 0}],
    )


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
