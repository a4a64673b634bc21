"""Users: profiles, argon2 password hashes kept apart from them, and which boxes each user owns."""

from __future__ import annotations

import logging
import time
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, func, select

from opq.errors import Conflict, InvalidValue, NotFound
from opq.store import schema
from opq.store.engine import translated, write_transaction
from opq.store.models import NotificationPreferences, Role, UserProfile

logger = logging.getLogger(__name__)

ROLES: tuple[Role, ...] = ("user", "admin")
MAX_PER_DAY = ("once a day", "once an hour", "never")
MIN_PASSWORD_LENGTH = 8
MAX_USERNAME_LENGTH = 254
# The column widths, checked here so that SQLite (which ignores widths) agrees with PostgreSQL.
_FIELD_LENGTHS = {"first_name": 128, "last_name": 128, "phone": 64}


def check_username(username: str) -> None:
    """A username is an e-mail address: one '@' with text on both sides, at most 254 characters."""
    local, at, domain = username.partition("@")
    if (
        not at
        or not local
        or not domain
        or "@" in domain
        or len(username) > MAX_USERNAME_LENGTH
        or any(c.isspace() for c in username)
    ):
        raise InvalidValue(
            f"username {username!r} is not an e-mail address: use NAME@DOMAIN, no spaces, "
            f"at most {MAX_USERNAME_LENGTH} characters"
        )


def check_role(role: str) -> None:
    """A role is "user" or "admin"."""
    if role not in ROLES:
        raise InvalidValue(f"role {role!r} is not valid: use one of {', '.join(ROLES)}")


def check_password(password: str) -> None:
    """At least MIN_PASSWORD_LENGTH characters; the message never repeats the password."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidValue(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")


def check_profile(profile: UserProfile) -> None:
    """Username, role, field widths and notification preferences of a profile."""
    check_username(profile.username)
    check_role(profile.role)
    for name, width in _FIELD_LENGTHS.items():
        if len(getattr(profile, name)) > width:
            raise InvalidValue(f"user {profile.username!r}: {name} is longer than {width} characters")
    prefs = profile.notification_preferences
    if prefs.max_per_day not in MAX_PER_DAY:
        raise InvalidValue(
            f"user {profile.username!r}: max_per_day {prefs.max_per_day!r} is not valid: "
            f"use one of {', '.join(repr(v) for v in MAX_PER_DAY)}"
        )
    if not all(isinstance(t, str) and t.strip() for t in prefs.notification_types):
        raise InvalidValue(
            f"user {profile.username!r}: notification types must be non-empty strings, "
            f"got {list(prefs.notification_types)!r}"
        )


def preferences_document(prefs: NotificationPreferences) -> dict[str, Any]:
    """The JSON document stored for notification preferences."""
    return {
        "text": bool(prefs.text),
        "email": bool(prefs.email),
        "max_per_day": prefs.max_per_day,
        "notification_types": list(prefs.notification_types),
    }


def preferences_from_document(document: dict[str, Any]) -> NotificationPreferences:
    """Notification preferences from their stored JSON document; missing keys take defaults."""
    default = NotificationPreferences()
    return NotificationPreferences(
        text=bool(document.get("text", default.text)),
        email=bool(document.get("email", default.email)),
        max_per_day=document.get("max_per_day", default.max_per_day),
        notification_types=tuple(document.get("notification_types", ())),
    )


class Users:
    """User profiles (the seed's UserProfiles), their credentials and box ownership (BoxOwners)."""

    def __init__(self, engine: Engine, *, hasher: PasswordHasher | None = None) -> None:
        self._engine = engine
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    def add(self, profile: UserProfile, password: str) -> None:
        """Create a user with a password; the username must be new."""
        check_profile(profile)
        check_password(password)
        # Hash before the transaction: hashing is deliberately slow and must not hold a write lock.
        password_hash = self._hasher.hash(password)
        p = schema.user_profiles
        with translated(f"add user {profile.username!r}"), write_transaction(self._engine) as conn:
            if _exists(conn, profile.username):
                raise Conflict(f"user {profile.username!r} already exists")
            conn.execute(
                p.insert().values(
                    username=profile.username,
                    unseen_notifications=profile.unseen_notifications,
                    **_profile_values(profile),
                )
            )
            conn.execute(
                schema.user_credentials.insert().values(
                    username=profile.username, password_hash=password_hash, updated_ms=_now_ms()
                )
            )
        logger.info("added user %s (%s)", profile.username, profile.role)

    def get(self, username: str) -> UserProfile:
        """The profile of this user; NotFound if there is none."""
        p = schema.user_profiles
        with translated(f"read user {username!r}"), self._engine.connect() as conn:
            row = conn.execute(select(p).where(p.c.username == username)).first()
        if row is None:
            raise NotFound(f"no user {username!r}")
        return _profile(row._mapping)

    def count(self) -> int:
        """How many users there are."""
        with translated("count users"), self._engine.connect() as conn:
            query = select(func.count()).select_from(schema.user_profiles)
            return int(conn.execute(query).scalar_one())

    def verify_password(self, username: str, password: str) -> bool:
        """Whether the password is this user's; False for an unknown user or a wrong password."""
        c = schema.user_credentials
        with (
            translated(f"read the credentials of user {username!r}"),
            self._engine.connect() as conn,
        ):
            stored = conn.execute(
                select(c.c.password_hash).where(c.c.username == username)
            ).scalar_one_or_none()
        if stored is None:
            # Spend the same time as for a real user, so the answer does not reveal who exists.
            self._verify(self._dummy(), password, username)
            return False
        if not self._verify(stored, password, username):
            return False
        if self._hasher.check_needs_rehash(stored):
            self._rehash(username, stored, password)
        return True

    def _verify(self, password_hash: str, password: str, username: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except InvalidHashError:
            logger.warning("the stored password hash of user %s is not an argon2 hash", username)
            return False
        except VerificationError:
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash("not a password of anybody")
        return self._dummy_hash

    def _rehash(self, username: str, old_hash: str, password: str) -> None:
        c = schema.user_credentials
        new_hash = self._hasher.hash(password)
        with translated(f"rehash the password of user {username!r}"), write_transaction(self._engine) as conn:
            # Only if unchanged since it was read: a concurrent set_password wins.
            conn.execute(
                c.update()
                .where(c.c.username == username, c.c.password_hash == old_hash)
                .values(password_hash=new_hash, updated_ms=_now_ms())
            )
        logger.info("rehashed the password of user %s with current argon2 parameters", username)

    def set_password(self, username: str, password: str) -> None:
        """Give the user a new password."""
        check_password(password)
        password_hash = self._hasher.hash(password)
        c = schema.user_credentials
        with translated(f"set the password of user {username!r}"), write_transaction(self._engine) as conn:
            updated = conn.execute(
                c.update()
                .where(c.c.username == username)
                .values(password_hash=password_hash, updated_ms=_now_ms())
            )
            if updated.rowcount == 0:
                raise NotFound(f"no user {username!r}")
        logger.info("changed the password of user %s", username)

    def set_role(self, username: str, role: Role) -> None:
        """Make the user a "user" or an "admin"."""
        check_role(role)
        p = schema.user_profiles
        with translated(f"set the role of user {username!r}"), write_transaction(self._engine) as conn:
            updated = conn.execute(p.update().where(p.c.username == username).values(role=role))
            if updated.rowcount == 0:
                raise NotFound(f"no user {username!r}")

    def update_profile(self, profile: UserProfile) -> None:
        """Overwrite names, role, phone and preferences; notifications own the unseen flag."""
        check_profile(profile)
        p = schema.user_profiles
        with translated(f"update user {profile.username!r}"), write_transaction(self._engine) as conn:
            updated = conn.execute(
                p.update().where(p.c.username == profile.username).values(**_profile_values(profile))
            )
            if updated.rowcount == 0:
                raise NotFound(f"no user {profile.username!r}")

    def delete(self, username: str) -> None:
        """Remove the user with their credentials, box ownerships and notifications."""
        with translated(f"delete user {username!r}"), write_transaction(self._engine) as conn:
            if not _exists(conn, username):
                raise NotFound(f"no user {username!r}")
            # Explicit, so that deleting never depends on a backend enforcing ON DELETE CASCADE.
            for table in (schema.notifications, schema.box_owners, schema.user_credentials):
                conn.execute(table.delete().where(table.c.username == username))
            p = schema.user_profiles
            conn.execute(p.delete().where(p.c.username == username))
        logger.info("deleted user %s", username)

    def add_owner(self, username: str, box_id: str) -> None:
        """Make the user an owner of the box; nothing happens if they already are."""
        o = schema.box_owners
        with (
            translated(f"make {username!r} an owner of box {box_id!r}"),
            write_transaction(self._engine) as conn,
        ):
            _require_user(conn, username)
            _require_box(conn, box_id)
            owned = conn.execute(
                select(o.c.box_id).where(o.c.username == username, o.c.box_id == box_id)
            ).first()
            if owned is None:
                conn.execute(o.insert().values(username=username, box_id=box_id))

    def remove_owner(self, username: str, box_id: str) -> None:
        """The user no longer owns the box; nothing happens if they did not."""
        o = schema.box_owners
        with (
            translated(f"remove {username!r} as owner of box {box_id!r}"),
            write_transaction(self._engine) as conn,
        ):
            _require_user(conn, username)
            _require_box(conn, box_id)
            conn.execute(o.delete().where(o.c.username == username, o.c.box_id == box_id))

    def boxes_owned(self, username: str) -> list[str]:
        """The ids of the boxes the user owns, sorted."""
        o = schema.box_owners
        with translated(f"read the boxes of user {username!r}"), self._engine.connect() as conn:
            _require_user(conn, username)
            query = select(o.c.box_id).where(o.c.username == username).order_by(o.c.box_id)
            return list(conn.execute(query).scalars().all())

    def owners_of(self, box_id: str) -> list[str]:
        """The usernames of the box's owners, sorted."""
        o = schema.box_owners
        with translated(f"read the owners of box {box_id!r}"), self._engine.connect() as conn:
            _require_box(conn, box_id)
            query = select(o.c.username).where(o.c.box_id == box_id).order_by(o.c.username)
            return list(conn.execute(query).scalars().all())

    # Last in the class: below this point, `list` would name the method, not the type.
    def list(self) -> list[UserProfile]:
        """Every user's profile, by username."""
        p = schema.user_profiles
        with translated("list users"), self._engine.connect() as conn:
            return [_profile(row._mapping) for row in conn.execute(select(p).order_by(p.c.username))]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _profile_values(profile: UserProfile) -> dict[str, Any]:
    return {
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "role": profile.role,
        "phone": profile.phone,
        "notification_preferences": preferences_document(profile.notification_preferences),
    }


def _profile(row: Any) -> UserProfile:
    return UserProfile(
        username=row["username"],
        role=row["role"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        phone=row["phone"],
        unseen_notifications=bool(row["unseen_notifications"]),
        notification_preferences=preferences_from_document(row["notification_preferences"]),
    )


def _exists(conn: Connection, username: str) -> bool:
    p = schema.user_profiles
    return conn.execute(select(p.c.username).where(p.c.username == username)).first() is not None


def _require_user(conn: Connection, username: str) -> None:
    if not _exists(conn, username):
        raise NotFound(f"no user {username!r}")


def _require_box(conn: Connection, box_id: str) -> None:
    b = schema.opq_boxes
    if conn.execute(select(b.c.box_id).where(b.c.box_id == box_id)).first() is None:
        raise NotFound(f"no box {box_id!r}")
