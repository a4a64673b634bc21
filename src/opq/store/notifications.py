"""Notifications: things of interest for one user each, with delivered and unseen flags."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from opq.errors import InvalidValue, NotFound
from opq.store import schema
from opq.store.engine import translated, write_transaction
from opq.store.models import Notification

logger = logging.getLogger(__name__)

MAX_TYPE_LENGTH = 64


def check_document(what: str, document: object) -> None:
    """A free-form document is a dict that JSON can hold, without NaN (PostgreSQL refuses it)."""
    if not isinstance(document, dict):
        raise InvalidValue(f"{what} must be a dict, got {type(document).__name__}")
    try:
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidValue(f"{what} cannot be stored as JSON: {err}") from err


class Notifications:
    """The notifications collection, kept for a limited time."""

    def __init__(self, engine: Engine, lifetime_ms: int | None = None) -> None:
        self._engine = engine
        self._lifetime_ms = lifetime_ms

    def add(self, username: str, type: str, data: dict[str, Any], timestamp_ms: int) -> int:
        """Store a notification for the user and flag them as having unseen ones; returns its id."""
        if not type.strip() or len(type) > MAX_TYPE_LENGTH:
            raise InvalidValue(
                f"notification type {type!r} is not valid: use 1 to {MAX_TYPE_LENGTH} characters"
            )
        check_document(f"the data of notification {type!r}", data)
        expire_at = None if self._lifetime_ms is None else timestamp_ms + self._lifetime_ms
        n, p = schema.notifications, schema.user_profiles
        with translated(f"notify user {username!r} of {type!r}"), write_transaction(self._engine) as conn:
            flagged = conn.execute(
                p.update().where(p.c.username == username).values(unseen_notifications=True)
            )
            if flagged.rowcount == 0:
                raise NotFound(f"no user {username!r}")
            inserted = conn.execute(
                n.insert().values(
                    username=username,
                    type=type,
                    timestamp_ms=timestamp_ms,
                    data=data,
                    delivered=False,
                    expire_at=expire_at,
                )
            )
            key = inserted.inserted_primary_key
            assert key is not None
            notification_id = int(key[0])
        logger.debug("notification %d (%s) for user %s", notification_id, type, username)
        return notification_id

    def for_user(
        self, username: str, *, undelivered_only: bool = False, limit: int = 100
    ) -> list[Notification]:
        """The user's notifications, newest first, at most `limit` of them."""
        if limit < 1:
            raise InvalidValue(f"limit {limit} is not valid: ask for at least 1 notification")
        n = schema.notifications
        query = select(n).where(n.c.username == username)
        if undelivered_only:
            query = query.where(n.c.delivered.is_(False))
        query = query.order_by(n.c.timestamp_ms.desc(), n.c.id.desc()).limit(limit)
        with translated(f"read notifications of user {username!r}"), self._engine.connect() as conn:
            _require_user(conn, username)
            return [_notification(row._mapping) for row in conn.execute(query)]

    def mark_delivered(self, ids: Iterable[int]) -> int:
        """Flag these notifications as sent; returns how many were found (unknown ids skipped)."""
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        n = schema.notifications
        with (
            translated(f"mark {len(wanted)} notifications delivered"),
            write_transaction(self._engine) as conn,
        ):
            updated = conn.execute(n.update().where(n.c.id.in_(wanted)).values(delivered=True))
            return int(updated.rowcount)

    def mark_seen(self, username: str) -> None:
        """The user has looked at their notifications: clear their unseen flag."""
        p = schema.user_profiles
        with (
            translated(f"mark notifications of user {username!r} seen"),
            write_transaction(self._engine) as conn,
        ):
            cleared = conn.execute(
                p.update().where(p.c.username == username).values(unseen_notifications=False)
            )
            if cleared.rowcount == 0:
                raise NotFound(f"no user {username!r}")

    def count(self) -> int:
        """How many notifications are stored."""
        with translated("count notifications"), self._engine.connect() as conn:
            query = select(func.count()).select_from(schema.notifications)
            return int(conn.execute(query).scalar_one())


def _require_user(conn: Connection, username: str) -> None:
    p = schema.user_profiles
    if conn.execute(select(p.c.username).where(p.c.username == username)).first() is None:
        raise NotFound(f"no user {username!r}")


def _notification(row: Any) -> Notification:
    return Notification(
        notification_id=int(row["id"]),
        username=row["username"],
        type=row["type"],
        timestamp_ms=int(row["timestamp_ms"]),
        data=dict(row["data"]),
        delivered=bool(row["delivered"]),
    )
