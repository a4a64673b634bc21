"""The OPQ data model behind one interface, on SQLite (embedded) or PostgreSQL."""

from __future__ import annotations

from opq.store.measurements import InsertResult
from opq.store.store import Store, open_store

__all__ = ["InsertResult", "Store", "open_store"]
