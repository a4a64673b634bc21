"""Schema migrations (Alembic), run from code: `opq db upgrade` and `opq db check` call these."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from opq.store.engine import translated


def _config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "opq.store:migrations")
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The newest migration this version of opq knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "opq ships at least one migration"
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None for a database opq never touched."""
    with translated("read the schema revision"), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision`; a no-op when it is there already."""
    with translated(f"upgrade the schema to {revision}"):
        command.upgrade(_config(engine), revision)
