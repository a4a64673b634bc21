"""Recorded waveforms read from CSV and COMTRADE files: one channel in volts at the file's own rate."""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import comtrade  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

from opq.errors import ConfigError

Scale = Literal["recorded", "primary", "secondary"]
"""Which side of the instrument transformer COMTRADE values are given on (`recorded`: as a·x + b)."""

TIME_COLUMN = re.compile(r"(t|time)(_s|\(s\)|\[s\])?")
"""A CSV header naming the time column [s], matched after lower-casing and removing spaces."""

STEP_TOLERANCE = 0.1
"""Largest departure of one time step from the mean step, as a fraction of it, for a uniform rate."""

_VOLT_UNITS = {"v": 1.0, "kv": 1e3, "mv": 1e-3}
_UTC_OFFSET = re.compile(r"([+-]?)(\d{1,2})(?:h(\d{1,2}))?")
_EARLIEST_START = dt.datetime(1971, 1, 1)  # earlier: the library's stand-in for a missing date


@dataclass(frozen=True)
class Recording:
    """One channel of a recorded waveform [V] at the recording's sample rate, with its header facts."""

    path: Path
    channel: str
    samples_v: npt.NDArray[np.float64]
    sample_rate_hz: float
    start_us: int | None = None
    """Time of the first sample [µs since the Unix epoch, UTC], if the file records it."""
    nominal_frequency_hz: float | None = None
    """Line frequency the header declares [Hz] (COMTRADE `lf`), if any."""
    notes: tuple[str, ...] = ()
    """Doubts the reader had about the file (a truncated .dat, a channel not in volts)."""


def read_recording(
    path: str | os.PathLike[str],
    *,
    channel: str | int | None = None,
    sample_rate_hz: float | None = None,
    scale: Scale = "recorded",
) -> Recording:
    """One channel of a `.csv` or COMTRADE `.cfg` (+ `.dat`) file; see `read_csv`, `read_comtrade`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path, channel=channel, sample_rate_hz=sample_rate_hz)
    if suffix == ".cfg":
        return read_comtrade(path, channel=channel, sample_rate_hz=sample_rate_hz, scale=scale)
    raise ConfigError(
        f"recording {path}: unknown extension {path.suffix!r}; expected .csv or .cfg (COMTRADE)"
    )


def read_csv(
    path: str | os.PathLike[str], *, channel: str | int | None = None, sample_rate_hz: float | None = None
) -> Recording:
    """One channel [V] of a comma-separated file whose first line names the columns.

    A column whose name is `t`, `time`, `t_s`, `time_s`, `time (s)` or `time [s]` (any case) holds
    each sample's time [s]; the others are channels, chosen by name or by 0-based position among the
    channels (default: the first). `sample_rate_hz` wins over the time column; without either the
    rate is missing. The time steps must be uniform (each within 10 % of the mean step).
    """
    path = _existing_file(path)
    header = _csv_header(path)
    time_columns = [
        i for i, name in enumerate(header) if TIME_COLUMN.fullmatch(name.lower().replace(" ", ""))
    ]
    if len(time_columns) > 1:
        listed = ", ".join(repr(header[i]) for i in time_columns)
        raise ConfigError(f"recording {path}: several time columns ({listed}); keep one")
    channel_columns = [i for i in range(len(header)) if i not in time_columns]
    if not channel_columns:
        raise ConfigError(f"recording {path}: no channel column besides the time column")
    names = [header[i] for i in channel_columns]
    column = channel_columns[select_channel(names, channel, f"recording {path}", 0)]
    if sample_rate_hz is None and not time_columns:
        raise ConfigError(
            f"recording {path}: sample rate missing; pass sample_rate_hz or add a time column [s] "
            "named t, time, t_s or time_s"
        )
    data = _csv_columns(path, header, [column, *time_columns])
    if sample_rate_hz is None:
        sample_rate_hz = rate_from_times(data[:, 1], f"recording {path}, column {header[time_columns[0]]!r}")
    return Recording(path, header[column], data[:, 0].copy(), _valid_rate(sample_rate_hz, path))


def read_comtrade(
    path: str | os.PathLike[str],
    *,
    channel: str | int | None = None,
    sample_rate_hz: float | None = None,
    scale: Scale = "recorded",
) -> Recording:
    """One analog channel [V] of a COMTRADE recording (IEEE C37.111-1991/1999/2013; `.dat` beside `.cfg`).

    The channel is chosen by name or by 0-based position among the analog channels; by default the
    first whose unit is V or kV, else the first. Values are a·x + b as the `comtrade` library gives
    them, on the side the file records (`PS` field); `scale="primary"` or `"secondary"` converts
    with the channel's primary/secondary ratio. kV and mV become V. The start time is taken as UTC
    shifted by the 2013 `time_code` when there is one. `sample_rate_hz` wins over the `.cfg` rate;
    a `.cfg` rate of 0 means the `.dat` time stamps are the time base.
    """
    cfg_path = _existing_file(path)
    beside = (cfg_path.with_suffix(".dat"), cfg_path.with_suffix(".DAT"))
    dat_path = next((p for p in beside if p.is_file()), None)
    where = f"COMTRADE {cfg_path}"
    if dat_path is None:
        raise ConfigError(f"{where}: no .dat file beside it ({cfg_path.with_suffix('.dat').name})")
    if dat_path.stat().st_size == 0:
        raise ConfigError(f"{where}: empty recording ({dat_path.name} is empty)")
    record = comtrade.Comtrade(ignore_warnings=True, use_numpy_arrays=True, use_double_precision=True)
    try:
        record.load(str(cfg_path), str(dat_path))
    except (comtrade.ComtradeError, ValueError, IndexError, TypeError, UnicodeDecodeError, OSError) as err:
        raise ConfigError(f"{where}: cannot read: {err}") from err

    analog = record.cfg.analog_channels
    if not analog:
        raise ConfigError(f"{where}: no analog channel")
    units = [ch.uu.strip().lower() for ch in analog]
    default = next((i for i, unit in enumerate(units) if unit in ("v", "kv")), 0)
    index = select_channel([ch.name for ch in analog], channel, where, default)
    chosen = analog[index]
    notes: list[str] = []
    factor = _VOLT_UNITS.get(units[index])
    if factor is None:
        notes.append(f"{where}: channel {chosen.name!r} is in {chosen.uu!r}, not volts; values used as volts")
        factor = 1.0
    factor *= _side_factor(chosen, scale, where)

    times = np.asarray(record.time, dtype=np.float64)
    rows = _rows_read(times, record.total_samples)
    if rows < record.total_samples:
        declared = record.total_samples
        notes.append(f"{where}: {dat_path.name} holds {rows} of the {declared} samples the .cfg declares")
    samples_v = np.asarray(record.analog[index], dtype=np.float64)[:rows] * factor
    missing = np.flatnonzero(~np.isfinite(samples_v))
    if len(missing):
        raise ConfigError(f"{where}: channel {chosen.name!r} has no value at sample {missing[0] + 1}")
    if sample_rate_hz is None:
        rates = {float(rate) for rate, _ in record.cfg.sample_rates}
        if len(rates) > 1:
            raise ConfigError(f"{where}: several sample rates {sorted(rates)} in one file are not supported")
        sample_rate_hz = rates.pop()
        if sample_rate_hz <= 0:
            sample_rate_hz = rate_from_times(times[:rows], f"{where}, .dat time stamps")
    return Recording(
        path=cfg_path,
        channel=chosen.name,
        samples_v=samples_v,
        sample_rate_hz=_valid_rate(sample_rate_hz, cfg_path),
        start_us=_start_us(record.cfg, where),
        nominal_frequency_hz=float(record.frequency) if record.frequency > 0 else None,
        notes=tuple(notes),
    )


def select_channel(names: list[str], channel: str | int | None, where: str, default: int) -> int:
    """Position of `channel` (a name, exact then ignoring case, or a 0-based index) among `names`."""
    if channel is None:
        return default
    if isinstance(channel, int) and not isinstance(channel, bool):
        if 0 <= channel < len(names):
            return channel
        problem = f"no channel at index {channel} (0 to {len(names) - 1})"
    else:
        matches = [i for i, name in enumerate(names) if name == channel] or [
            i for i, name in enumerate(names) if name.casefold() == str(channel).casefold()
        ]
        if matches:
            return matches[0]
        problem = f"no channel named {channel!r}"
    raise ConfigError(f"{where}: {problem}; available: {', '.join(repr(n) for n in names)}")


def rate_from_times(times_s: npt.NDArray[np.float64], where: str) -> float:
    """Sample rate [Hz] of uniformly spaced sample times [s]; ConfigError if they are not uniform."""
    if len(times_s) < 2:
        raise ConfigError(f"{where}: sample rate missing: fewer than two sample times to derive it from")
    step_s = float(times_s[-1] - times_s[0]) / (len(times_s) - 1)
    if not step_s > 0:
        raise ConfigError(f"{where}: the sample times do not increase")
    deviation = np.abs(np.diff(times_s) - step_s)
    worst = int(np.argmax(deviation))
    if deviation[worst] > STEP_TOLERANCE * step_s:
        raise ConfigError(
            f"{where}: non-uniform time steps: from sample {worst + 1} to {worst + 2} the step is "
            f"{times_s[worst + 1] - times_s[worst]:.9g} s, the mean step {step_s:.9g} s; "
            "resample the recording to a fixed rate or pass sample_rate_hz"
        )
    return 1.0 / step_s


def _existing_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recording {path}: no such file")
    return path


def _valid_rate(sample_rate_hz: float, path: Path) -> float:
    if not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        raise ConfigError(f"recording {path}: sample rate {sample_rate_hz!r} Hz is not a positive number")
    return float(sample_rate_hz)


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = [name.strip() for name in next(reader, [])]
        has_data = any(row for row in reader)
    if not header:
        raise ConfigError(f"recording {path}: empty recording (no header line)")
    if all(_is_number(name) for name in header):
        raise ConfigError(f"recording {path}: line 1 holds numbers; expected a header naming the columns")
    if not has_data:
        raise ConfigError(f"recording {path}: empty recording (a header and no samples)")
    return header


def _csv_columns(path: Path, header: list[str], columns: list[int]) -> npt.NDArray[np.float64]:
    """The given columns of every data line, as floats; a bad cell is reported by line and column."""
    try:
        data = np.loadtxt(
            path,
            delimiter=",",
            skiprows=1,
            usecols=columns,
            ndmin=2,
            comments=None,
            quotechar='"',
            encoding="utf-8-sig",
        )
    except ValueError as err:
        raise ConfigError(_bad_cell(path, header, columns) or f"recording {path}: {err}") from err
    if not np.isfinite(data).all():
        raise ConfigError(_bad_cell(path, header, columns) or f"recording {path}: a sample is not finite")
    return np.asarray(data, dtype=np.float64)


def _bad_cell(path: Path, header: list[str], columns: list[int]) -> str | None:
    """Where the first cell that is not a finite number is, in words; None if there is none."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        next(reader, None)
        for row in reader:
            if not row:
                continue
            for column in columns:
                where = f"recording {path}: line {reader.line_num}, column {column + 1} ({header[column]!r})"
                if column >= len(row):
                    return f"{where}: missing cell (the line has {len(row)} cells)"
                if not _is_number(row[column]) or not math.isfinite(float(row[column])):
                    return f"{where}: {row[column]!r} is not a finite number"
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _side_factor(chosen: Any, scale: Scale, where: str) -> float:
    """Factor taking the recorded values to the asked side of the instrument transformer."""
    recorded = str(chosen.pors).strip().upper()
    if scale == "recorded" or recorded == scale[0].upper():
        return 1.0
    primary, secondary = float(chosen.primary), float(chosen.secondary)
    if recorded not in ("P", "S") or not (primary > 0 and secondary > 0):
        raise ConfigError(
            f"{where}: channel {chosen.name!r} has no usable primary/secondary ratio "
            f"({chosen.primary!r}, {chosen.secondary!r}, {chosen.pors!r}) to convert to {scale} values"
        )
    return secondary / primary if scale == "secondary" else primary / secondary


def _rows_read(times: npt.NDArray[np.float64], declared: int) -> int:
    """Rows the library filled: it leaves time 0 in rows a short .dat lacks (every later row is > 0)."""
    if declared <= 1:
        return declared
    filled = np.flatnonzero(times)
    return int(filled[-1]) + 1 if len(filled) else 1


def _start_us(cfg: Any, where: str) -> int | None:
    """First sample time [µs since the Unix epoch, UTC], or None if the .cfg gives no date."""
    start: dt.datetime = cfg.start_timestamp
    if start < _EARLIEST_START:
        return None
    # comtrade 0.2 keeps the 2013 time_code (offset of the file's times from UTC) only privately.
    code = str(getattr(cfg, "_time_code", "0")).strip().lower()
    match = _UTC_OFFSET.fullmatch(code)
    minutes = int(match[2]) * 60 + int(match[3] or 0) if match else 0
    offset = dt.timedelta(minutes=-minutes if match and match[1] == "-" else minutes)
    if abs(offset) >= dt.timedelta(hours=24):
        raise ConfigError(f"{where}: time_code {code!r} is not a UTC offset")
    aware = start.replace(tzinfo=dt.timezone(offset))
    return (aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
