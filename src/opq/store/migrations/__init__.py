"""Alembic migrations of the SQL schema (`opq.store.schema`)."""
