"""A box's configuration: its id, keys, cloud endpoints, calibration, rates and buffer size."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from opq.box.measuring import MAX_RATE_CYCLES, MIN_RATE_CYCLES
from opq.domain.constants import DEFAULT_CALIBRATION_COUNTS_PER_V
from opq.errors import ConfigError, ProtocolError
from opq.protocol import KeyPair, read_certificate, wire_box_id

DEFAULT_MEASUREMENT_PORT = 9880
DEFAULT_COMMAND_PORT = 8194
DEFAULT_RESPONSE_PORT = 8196


def _wire_box_id(box_id: str) -> str:
    try:
        wire_box_id(box_id)
    except ProtocolError as err:
        raise ValueError(str(err)) from err
    return box_id


def _z85_public_key(key: str) -> str:
    try:
        KeyPair(public=key)
    except ConfigError as err:
        raise ValueError(str(err)) from err
    return key


Port = Annotated[int, Field(ge=1, le=65_535)]


class BoxConfig(BaseModel):
    """Everything a box needs to run; relative paths are relative to the configuration file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box_id: Annotated[str, AfterValidator(_wire_box_id)]
    """The box's id, a decimal integer as OPQ Box v3 carries it ("7", "1001")."""
    cloud_host: str = Field(default="127.0.0.1", min_length=1)
    measurement_port: Port = DEFAULT_MEASUREMENT_PORT
    command_port: Port = DEFAULT_COMMAND_PORT
    response_port: Port = DEFAULT_RESPONSE_PORT
    box_certificate: Path
    """The box's secret zcert file (`opq keys generate`): its CURVE key pair."""
    server_public_key: Annotated[str, AfterValidator(_z85_public_key)] | None = None
    """The cloud's Z85 CURVE public key; or give `server_certificate`."""
    server_certificate: Path | None = None
    """A zcert file holding the cloud's public key; or give `server_public_key`."""
    calibration_constant: float = Field(default=DEFAULT_CALIBRATION_COUNTS_PER_V, gt=0, allow_inf_nan=False)
    """ADC counts per volt [counts/V]."""
    cycles_per_measurement: int = Field(default=10, ge=MIN_RATE_CYCLES, le=MAX_RATE_CYCLES)
    """Cycles summarized into one measurement at start [cycles]; the cloud may change it."""
    buffer_seconds: float = Field(default=3600, gt=0, le=86_400, allow_inf_nan=False)
    """Raw cycles kept for the cloud's data requests [s]: 1 h is 216,000 cycles, 86 MB."""
    queue_seconds: float = Field(default=600, gt=0, le=86_400, allow_inf_nan=False)
    """Measurements kept while the cloud is unreachable [s]; older ones are dropped and counted."""
    realtime: bool = True
    """Pace a simulated or replayed source to the wall clock (a device paces itself)."""
    legacy_cycles: bool = False
    """Send raw samples as the original int32 varints, for an original OPQ cloud."""

    @model_validator(mode="after")
    def _one_server_key(self) -> Self:
        if (self.server_public_key is None) == (self.server_certificate is None):
            raise ValueError("give exactly one of server_public_key and server_certificate")
        return self

    def endpoint(self, port: int) -> str:
        """The ZeroMQ TCP endpoint of `port` on the cloud host."""
        host = f"[{self.cloud_host}]" if ":" in self.cloud_host else self.cloud_host
        return f"tcp://{host}:{port}"

    def box_keys(self) -> KeyPair:
        """The box's key pair, read from `box_certificate`; ConfigError if it has no secret key."""
        keys = read_certificate(self.box_certificate)
        if keys.secret is None:
            raise ConfigError(
                f"box_certificate {self.box_certificate} has no secret-key: give the box's secret file"
            )
        return keys

    def server_key(self) -> str:
        """The cloud's Z85 public key, given or read from `server_certificate`."""
        if self.server_public_key is not None:
            return self.server_public_key
        assert self.server_certificate is not None  # the validator saw to it
        return read_certificate(self.server_certificate).public


def load_box_config(path: str | Path, **overrides: Any) -> BoxConfig:
    """Read a box's TOML configuration; a bad key or value raises ConfigError naming it and the value.

    The key files it names are read too, so a missing or wrong key fails here and not at connect time.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read box configuration {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"box configuration {path} is not valid TOML: {err}") from err
    data.update(overrides)
    for key in ("box_certificate", "server_certificate"):
        if isinstance(data.get(key), str):
            data[key] = str(path.parent / data[key])
    config = box_config_from_dict(data, f"box configuration {path}")
    config.box_keys()
    config.server_key()
    return config


def box_config_from_dict(data: dict[str, Any], where: str = "box configuration") -> BoxConfig:
    """Validate a box's configuration given as a mapping; ConfigError names each bad key and value."""
    try:
        return BoxConfig.model_validate(data)
    except ValidationError as err:
        problems = []
        for item in err.errors():
            message = item["msg"].removeprefix("Value error, ")
            key = ".".join(str(part) for part in item["loc"])
            if not key:
                problems.append(message)
            elif item["type"] == "missing":
                problems.append(f"{key} missing")
            else:
                problems.append(f"{key} = {item.get('input')!r}: {message}")
        raise ConfigError(f"{where}: " + "; ".join(problems)) from err
