"""The errors a caller of opq can act on; third-party errors are translated into these at the boundary."""

from __future__ import annotations


class OpqError(Exception):
    """Base of every error opq raises on purpose."""


class ConfigError(OpqError):
    """A setting is missing or has a bad value."""


class StorageError(OpqError):
    """The database could not be reached or refused an operation."""


class NotFound(StorageError):
    """A referenced record (box, location, region, user, file) does not exist."""


class Conflict(StorageError):
    """A write would break a uniqueness rule (duplicate slug, box id, name, username)."""


class InvalidValue(StorageError):
    """A value is out of range or malformed (coordinates, empty slug, bad role)."""


class ProtocolError(OpqError):
    """Bytes from or for the wire do not form a valid message (malformed, truncated, out of range)."""
