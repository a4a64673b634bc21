"""The records the store reads and writes: one frozen dataclass per document of the data model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "admin"]
HealthStatus = Literal["up", "down"]


@dataclass(frozen=True)
class Location:
    """A place boxes can be at; `slug` shares one namespace with region slugs."""

    slug: str
    longitude: float
    latitude: float
    description: str

    @property
    def coordinates(self) -> tuple[float, float]:
        """[longitude, latitude], the seed's order."""
        return (self.longitude, self.latitude)


@dataclass(frozen=True)
class Region:
    """An aggregation of locations and of other regions."""

    slug: str
    locations: tuple[str, ...] = ()
    subregions: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocationStint:
    """One entry of a box's location history: where it was from when."""

    location: str
    location_start_time_ms: int


@dataclass(frozen=True)
class Box:
    """An OPQ Box as the cloud knows it."""

    box_id: str
    name: str
    calibration_constant: float
    description: str = ""
    location: str | None = None
    location_start_time_ms: int | None = None
    public_key: str | None = None
    unplugged: bool = False
    location_archive: tuple[LocationStint, ...] = ()


@dataclass(frozen=True)
class Measurement:
    """One low-fidelity measurement from a box (the averages of its metrics over the window).

    A metric the box had no value for is None (no frequency or THD in an interruption).
    """

    box_id: str
    timestamp_ms: int
    voltage: float
    frequency: float | None
    thd: float | None
    transient: float | None = None


@dataclass(frozen=True)
class Stats:
    """Minimum, maximum and mean of one metric over a window."""

    min: float
    max: float
    average: float


@dataclass(frozen=True)
class Trend:
    """One box's measurements rolled up over the minute before `timestamp_ms`."""

    box_id: str
    timestamp_ms: int
    location: str | None
    voltage: Stats | None
    frequency: Stats | None
    thd: Stats | None
    transient: Stats | None = None


@dataclass(frozen=True)
class Event:
    """A capture of waveforms from one or more boxes."""

    event_id: int
    target_event_start_timestamp_ms: int
    target_event_end_timestamp_ms: int
    boxes_triggered: tuple[str, ...]
    boxes_received: tuple[str, ...] = ()
    # When each box of boxes_received answered [ms since epoch], in the same order.
    latencies_ms: tuple[int, ...] = ()
    description: str = ""
    # When acquisition finished [ms since epoch]; None while boxes may still answer.
    completed_ms: int | None = None
    # The previous piece of a long anomaly captured in pieces, which this event continues.
    continues_event_id: int | None = None


@dataclass(frozen=True)
class BoxEvent:
    """One box's part of an event: its actual window and its waveform file."""

    event_id: int
    box_id: str
    event_start_timestamp_ms: int
    event_end_timestamp_ms: int
    window_timestamps_ms: tuple[int, ...] = ()
    location: str | None = None
    data_fs_filename: str | None = None


@dataclass(frozen=True)
class Annotation:
    """A person's note on an incident."""

    username: str
    text: str
    timestamp_ms: int


@dataclass(frozen=True)
class Incident:
    """A classified disturbance at one box."""

    incident_id: int
    box_id: str
    start_timestamp_ms: int
    end_timestamp_ms: int
    measurement_type: str
    classifications: tuple[str, ...]
    event_id: int | None = None
    location: str | None = None
    deviation_from_nominal: float | None = None
    measurements: tuple[dict[str, Any], ...] = ()
    gridfs_filename: str | None = None
    ieee_duration: str | None = None
    annotations: tuple[Annotation, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredFile:
    """A finished file of the GridFS layout (the fs.files document)."""

    file_id: int
    filename: str
    length: int
    chunk_size: int
    upload_date_ms: int
    md5: str
    event_id: int | None = None
    box_id: str | None = None
    incident_id: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NotificationPreferences:
    """How and how often a user wants to hear about what happened."""

    text: bool = False
    email: bool = True
    max_per_day: Literal["once a day", "once an hour", "never"] = "once a day"
    notification_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class UserProfile:
    """A person who can log in; credentials are kept elsewhere."""

    username: str
    role: Role = "user"
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    unseen_notifications: bool = False
    notification_preferences: NotificationPreferences = NotificationPreferences()


@dataclass(frozen=True)
class Notification:
    """Something of interest for one user."""

    notification_id: int
    username: str
    type: str
    timestamp_ms: int
    data: dict[str, Any]
    delivered: bool = False


@dataclass(frozen=True)
class HealthRecord:
    """Whether a service (or a box, with its id in service_id) appeared up at a time."""

    timestamp_ms: int
    service: str
    status: HealthStatus
    service_id: str | None = None
    info: str = ""


@dataclass(frozen=True)
class TriggerThresholds:
    """Triggering limits of one box: reference values and percent bands around them."""

    ref_f: float = 60.0
    ref_v: float = 120.0
    threshold_percent_f_low: float = 0.5
    threshold_percent_f_high: float = 0.5
    threshold_percent_v_low: float = 5.0
    threshold_percent_v_high: float = 5.0
    threshold_percent_thd_high: float = 5.0
    # The largest high-passed excursion [% of ref_v]: 5 % is 6 V at 120 V, above noise (OPQ: 7 V).
    threshold_percent_transient_high: float = 5.0
