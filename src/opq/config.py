"""Settings: defaults, then an `opq.toml` file, then `OPQ_*` environment variables, validated once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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


class MakaiSettings(BaseModel):
    """Makai: its sockets, batching, triggering and acquisition; times in the unit each name says."""

    model_config = ConfigDict(extra="forbid")

    server_certificate: Path | None = None
    """The cloud's secret zcert file (`opq keys generate`): boxes hold its public key."""
    box_host: str = "0.0.0.0"
    """Address the box-facing endpoints bind to."""
    measurement_port: int = Field(default=9880, ge=1, le=65_535)
    command_port: int = Field(default=8194, ge=1, le=65_535)
    response_port: int = Field(default=8196, ge=1, le=65_535)
    service_host: str = "127.0.0.1"
    """Address the endpoints for other services bind to (live stream, events, captures, health)."""
    live_port: int = Field(default=9881, ge=1, le=65_535)
    """The live measurement stream, republished for View (PUB)."""
    event_port: int = Field(default=10000, ge=1, le=65_535)
    """Announcements of new events for Mauka (PUB): frames [b"event", b"<event_id>"]."""
    capture_port: int = Field(default=10001, ge=1, le=65_535)
    """Capture requests from other services and the CLI (REP)."""
    relay_port: int = Field(default=9884, ge=1, le=65_535)
    """Internal: commands from acquisition to the command relay (PUSH/PULL)."""
    health_port: int = Field(default=8080, ge=0, le=65_535)
    """HTTP JSON health; 0 picks a free port."""
    batch_interval_ms: int = Field(default=250, ge=10, le=60_000)
    """Longest a measurement waits before its batch is written [ms]."""
    buffer_max_measurements: int = Field(default=1_000_000, ge=1_000)
    """Measurements held while the database is unavailable; beyond it they are dropped and counted."""
    max_age_s: float = Field(default=3_600.0, gt=0)
    """A measurement older than this by Makai's clock is dropped [s]: a box reconnecting after an
    outage sends what it queued (up to 10 min by default), which must still get in."""
    max_ahead_s: float = Field(default=60.0, gt=0)
    """A measurement stamped this far ahead of Makai's clock is dropped [s]."""
    trend_interval_s: int = Field(default=60, ge=1, le=3_600)
    pre_trigger_ms: int = Field(default=500, ge=0, le=60_000)
    """Captured before the first abnormal measurement [ms]."""
    post_trigger_ms: int = Field(default=500, ge=0, le=60_000)
    """Captured after the return to nominal [ms]."""
    max_piece_ms: int = Field(default=10_000, ge=1_000, le=600_000)
    """A longer anomaly is captured in pieces of at most this long [ms]."""
    response_timeout_s: float = Field(default=10.0, gt=0, le=600)
    """A box that has not answered this long after its window ended is left out of the event [s]."""
    neighbours: Literal["none", "location", "region"] = "region"
    """Which other boxes are also asked when boxes trigger: none, those at the same location, or
    those in the same regions (which includes the same location)."""
    max_boxes_per_event: int = Field(default=64, ge=1, le=10_000)
    refresh_s: float = Field(default=5.0, gt=0, le=3_600)
    """How often boxes, keys and thresholds are re-read from the store [s]."""


class MaukaSettings(BaseModel):
    """Mauka: where it listens, which plugins run with which settings, and its heartbeats."""

    model_config = ConfigDict(extra="forbid")

    event_endpoint: str = "tcp://127.0.0.1:10000"
    """Makai's event announcements (SUB)."""
    live_endpoint: str = "tcp://127.0.0.1:9881"
    """Makai's live measurement stream (SUB), for outages."""
    health_port: int = Field(default=8911, ge=0, le=65_535)
    plugins: dict[str, dict[str, Any]] = {}
    """Settings per plugin, by plugin name."""
    disabled_plugins: list[str] = []
    outage_after_s: float = Field(default=60.0, gt=0)
    """A box silent this long (and not unplugged) is an outage [s]."""
    stats_interval_s: float = Field(default=10.0, gt=0)
    catch_up_interval_s: float = Field(default=5.0, gt=0)
    """How often the store is checked for events no announcement told of [s]."""
    frequency_from_measurements: bool = True
    """Classify frequency variations from the live measurements too (`opq.mauka.frequency_stream`),
    with the frequency_variation plugin's limits: Makai captures only beyond its trigger band."""
    frequency_min_duration_ms: float = Field(default=400.0, ge=0)
    """Shortest frequency variation the measurements report [ms] (more than two 10-cycle windows)."""
    frequency_max_gap_s: float = Field(default=10.0, gt=0)
    """A variation whose box sends no frequency for this long is closed at its last value [s]."""
    frequency_settle_s: float = Field(default=30.0, ge=0)
    """A variation the measurements found is stored this long after it ends [s], so that the analysis
    of an event that captured it (finer in time) reports it first and the stream's copy is dropped."""


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
    makai: MakaiSettings = MakaiSettings()
    mauka: MaukaSettings = MaukaSettings()

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
