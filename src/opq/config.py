"""Settings: defaults, then an `opq.toml` file, then `OPQ_*` environment variables, validated once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from opq.errors import ConfigError

DEFAULT_DB_URL = "sqlite:///opq.sqlite3"
DAY_S = 86_400


class RetentionSettings(BaseModel):
    """How long each kind of record lives [s]; None keeps it until deleted by hand."""

    model_config = ConfigDict(extra="forbid")

    measurements_s: int | None = Field(default=DAY_S, gt=0)
    notifications_s: int | None = Field(default=7 * DAY_S, gt=0)
    trends_s: int | None = Field(default=None, gt=0)
    events_s: int | None = Field(default=None, gt=0)
    incidents_s: int | None = Field(default=None, gt=0)
    health_s: int | None = Field(default=None, gt=0)


class Settings(BaseSettings):
    """Every setting of opq, read and validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix="OPQ_",
        env_nested_delimiter="__",
        extra="forbid",
        toml_file="opq.toml",
    )

    db_url: str = DEFAULT_DB_URL
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_format: str = Field(default="plain", pattern=r"^(plain|json)$")
    retention: RetentionSettings = RetentionSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: explicit arguments, then the environment, then opq.toml.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(toml_path: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings; a bad key or value raises ConfigError naming it and where it came from."""
    try:
        if toml_path is None:
            return Settings(**overrides)
        if not toml_path.is_file():
            raise ConfigError(f"settings file {toml_path} does not exist")

        class FileSettings(Settings):
            model_config = SettingsConfigDict(toml_file=toml_path)

        return FileSettings(**overrides)
    except ValidationError as err:
        raise ConfigError(_describe(err)) from err
    except ValueError as err:  # a TOML syntax error
        raise ConfigError(f"cannot read settings: {err}") from err


def _describe(err: ValidationError) -> str:
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"])
        env_key = "OPQ_" + "__".join(str(part) for part in item["loc"]).upper()
        value = item.get("input")
        problems.append(f"{key} (env {env_key}) = {value!r}: {item['msg']}")
    return "bad setting: " + "; ".join(problems)
