"""The one schema of the SQL backends: every collection of the OPQ data model as a SQLAlchemy Core table.

Field names follow `seeds/data-model.md` in snake case. Times are integer milliseconds since the Unix
epoch (UTC). Arrays and free-form objects of the seed are JSON columns, except where a service queries
into them (classifications, region membership, location history), which get tables of their own.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Integer primary keys: SQLite only makes INTEGER (not BIGINT) an alias of the rowid.
RowId = BigInteger().with_variant(Integer(), "sqlite")


def _time(name: str, *, nullable: bool = False, index: bool = False) -> Column[int]:
    return Column(name, BigInteger, nullable=nullable, index=index)


# Atomic id allocation: one row per id kind ("event", "incident"), bumped in one statement.
id_counters = Table(
    "id_counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("last_value", BigInteger, nullable=False),
)

# Location and region slugs are one namespace: both tables point into this one.
slugs = Table(
    "slugs",
    metadata,
    Column("slug", String(128), primary_key=True),
    Column("kind", String(8), nullable=False),
    CheckConstraint("kind IN ('location', 'region')", name="kind"),
)

locations = Table(
    "locations",
    metadata,
    Column("slug", String(128), ForeignKey("slugs.slug"), primary_key=True),
    Column("longitude", Float, nullable=False),
    Column("latitude", Float, nullable=False),
    Column("description", Text, nullable=False, unique=True),
    CheckConstraint("longitude >= -180 AND longitude <= 180", name="longitude"),
    CheckConstraint("latitude >= -90 AND latitude <= 90", name="latitude"),
)

regions = Table(
    "regions",
    metadata,
    Column("slug", String(128), ForeignKey("slugs.slug"), primary_key=True),
)

# The seed's bi-directional `regions` collection: regionSlug × locationSlug, many to many.
region_locations = Table(
    "region_locations",
    metadata,
    Column("region_slug", String(128), ForeignKey("regions.slug"), nullable=False),
    Column("location_slug", String(128), ForeignKey("locations.slug"), nullable=False, index=True),
    PrimaryKeyConstraint("region_slug", "location_slug"),
)

# A region may include other regions ("96734" inside "Hawaii").
region_subregions = Table(
    "region_subregions",
    metadata,
    Column("region_slug", String(128), ForeignKey("regions.slug"), nullable=False),
    Column("subregion_slug", String(128), ForeignKey("regions.slug"), nullable=False, index=True),
    PrimaryKeyConstraint("region_slug", "subregion_slug"),
    CheckConstraint("region_slug <> subregion_slug", name="not_self"),
)

opq_boxes = Table(
    "opq_boxes",
    metadata,
    Column("box_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("calibration_constant", Float, nullable=False),
    Column("location", String(128), ForeignKey("locations.slug"), nullable=True),
    _time("location_start_time_ms", nullable=True),
    # CurveZMQ public key, Z85 text (40 characters for the 32-byte key).
    Column("public_key", String(40), nullable=True, unique=True),
    # Unplugged or in maintenance: silence from this box is not an outage.
    Column("unplugged", Boolean, nullable=False, default=False),
    CheckConstraint("calibration_constant > 0", name="calibration_positive"),
)

# The seed's opq_boxes.location_archive: every location a box has had, oldest first.
box_location_archive = Table(
    "box_location_archive",
    metadata,
    Column("box_id", String(64), ForeignKey("opq_boxes.box_id"), nullable=False),
    Column("location", String(128), ForeignKey("locations.slug"), nullable=False),
    _time("location_start_time_ms"),
    PrimaryKeyConstraint("box_id", "location_start_time_ms"),
)

# Box ids are ASCII (letters, digits, '.', '_', '-'), so bytewise order is their natural order;
# on PostgreSQL it also spares the locale's collation on every key comparison of the index.
_MeasurementBoxId = String(64).with_variant(String(64, collation="C"), "postgresql")

measurements = Table(
    "measurements",
    metadata,
    Column("box_id", _MeasurementBoxId, nullable=False),
    _time("timestamp_ms"),
    Column("voltage", Float, nullable=False),
    # NULL where the box had no value: no frequency or THD in an interruption.
    Column("frequency", Float, nullable=True),
    Column("thd", Float, nullable=True),
    Column("transient", Float, nullable=True),
    _time("expire_at", nullable=True),
    PrimaryKeyConstraint("box_id", "timestamp_ms"),
    # PostgreSQL keeps one partition a day so pruning drops whole partitions.
    postgresql_partition_by="RANGE (timestamp_ms)",
    # SQLite stores the table as the primary key's b-tree: one box's hour is one contiguous run.
    sqlite_with_rowid=False,
)


def _stats(metric: str) -> list[Column[float]]:
    return [Column(f"{metric}_{part}", Float, nullable=True) for part in ("min", "max", "average")]


trends = Table(
    "trends",
    metadata,
    Column("box_id", String(64), nullable=False),
    _time("timestamp_ms"),
    Column("location", String(128), nullable=True),
    *_stats("voltage"),
    *_stats("frequency"),
    *_stats("thd"),
    *_stats("transient"),
    _time("expire_at", nullable=True, index=True),
    PrimaryKeyConstraint("box_id", "timestamp_ms"),
)

events = Table(
    "events",
    metadata,
    Column("event_id", BigInteger, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False, default=""),
    Column("boxes_triggered", JSON, nullable=False),
    Column("boxes_received", JSON, nullable=False),
    # Parallel to boxes_received: when each box's data arrived [ms since epoch].
    Column("latencies_ms", JSON, nullable=False),
    _time("target_event_start_timestamp_ms", index=True),
    _time("target_event_end_timestamp_ms"),
    _time("expire_at", nullable=True, index=True),
    # When acquisition finished (every asked box answered or timed out); NULL while in progress.
    _time("completed_ms", nullable=True, index=True),
    # The event this one continues: the previous piece of an anomaly captured in pieces.
    Column("continues_event_id", BigInteger, nullable=True),
)

# Which events analysis has finished with, and how each plugin fared (Mauka's catch-up reads this).
event_analyses = Table(
    "event_analyses",
    metadata,
    Column("event_id", BigInteger, ForeignKey("events.event_id", ondelete="CASCADE"), primary_key=True),
    _time("analyzed_ms", index=True),
    Column("plugins", JSON, nullable=False),
)

box_events = Table(
    "box_events",
    metadata,
    Column("event_id", BigInteger, ForeignKey("events.event_id"), nullable=False),
    Column("box_id", String(64), nullable=False, index=True),
    _time("event_start_timestamp_ms", index=True),
    _time("event_end_timestamp_ms"),
    Column("window_timestamps_ms", JSON, nullable=False),
    Column("location", String(128), nullable=True),
    Column("data_fs_filename", String(255), nullable=True),
    PrimaryKeyConstraint("event_id", "box_id"),
)

# GridFS layout: fs.files and fs.chunks. A file is visible once `length` is set (its upload finished).
files = Table(
    "files",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("filename", String(255), nullable=False, unique=True),
    Column("length", BigInteger, nullable=True),
    Column("chunk_size", Integer, nullable=False),
    _time("upload_date_ms"),
    Column("md5", String(32), nullable=True),
    Column("event_id", BigInteger, nullable=True, index=True),
    Column("box_id", String(64), nullable=True),
    Column("incident_id", BigInteger, nullable=True, index=True),
    Column("metadata", JSON, nullable=False),
)

chunks = Table(
    "chunks",
    metadata,
    Column("files_id", RowId, ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    Column("n", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("files_id", "n"),
)

incidents = Table(
    "incidents",
    metadata,
    Column("incident_id", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", BigInteger, nullable=True, index=True),
    Column("box_id", String(64), nullable=False, index=True),
    _time("start_timestamp_ms", index=True),
    _time("end_timestamp_ms"),
    Column("location", String(128), nullable=True, index=True),
    Column("measurement_type", String(16), nullable=False, index=True),
    Column("deviation_from_nominal", Float, nullable=True),
    Column("measurements", JSON, nullable=False),
    Column("gridfs_filename", String(255), nullable=True),
    Column("ieee_duration", String(16), nullable=True),
    Column("metadata", JSON, nullable=False),
    _time("expire_at", nullable=True, index=True),
)

# incidents.classifications, one row each so "every ITIC_PROHIBITED incident" is an indexed query.
incident_classifications = Table(
    "incident_classifications",
    metadata,
    Column(
        "incident_id",
        BigInteger,
        ForeignKey("incidents.incident_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("classification", String(40), nullable=False, index=True),
    PrimaryKeyConstraint("incident_id", "classification"),
)

incident_annotations = Table(
    "incident_annotations",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column(
        "incident_id",
        BigInteger,
        ForeignKey("incidents.incident_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("username", String(254), nullable=False),
    Column("text", Text, nullable=False),
    _time("timestamp_ms"),
)

health = Table(
    "health",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    _time("timestamp_ms", index=True),
    Column("service", String(32), nullable=False, index=True),
    Column("service_id", String(64), nullable=True),
    Column("status", String(8), nullable=False),
    Column("info", Text, nullable=False, default=""),
    _time("expire_at", nullable=True, index=True),
    CheckConstraint("status IN ('up', 'down')", name="status"),
)

# The seed's single, overwritten system_stats document.
system_stats = Table(
    "system_stats",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    _time("timestamp_ms"),
    Column("document", JSON, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

user_profiles = Table(
    "user_profiles",
    metadata,
    Column("username", String(254), primary_key=True),
    Column("first_name", String(128), nullable=False, default=""),
    Column("last_name", String(128), nullable=False, default=""),
    Column("role", String(8), nullable=False),
    Column("phone", String(64), nullable=False, default=""),
    Column("unseen_notifications", Boolean, nullable=False, default=False),
    Column("notification_preferences", JSON, nullable=False),
    CheckConstraint("role IN ('user', 'admin')", name="role"),
)

# Credentials are kept apart from profiles so that nothing reading profiles can leak a hash.
user_credentials = Table(
    "user_credentials",
    metadata,
    Column(
        "username",
        String(254),
        ForeignKey("user_profiles.username", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("password_hash", String(255), nullable=False),
    _time("updated_ms"),
)

box_owners = Table(
    "box_owners",
    metadata,
    Column(
        "username",
        String(254),
        ForeignKey("user_profiles.username", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "box_id",
        String(64),
        ForeignKey("opq_boxes.box_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    PrimaryKeyConstraint("username", "box_id"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column(
        "username",
        String(254),
        ForeignKey("user_profiles.username", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("type", String(64), nullable=False),
    _time("timestamp_ms"),
    Column("data", JSON, nullable=False),
    Column("delivered", Boolean, nullable=False, default=False),
    _time("expire_at", nullable=True, index=True),
)

# Triggering configuration (the original's makai_config): one row of defaults, overrides per box.
TRIGGER_FIELDS = (
    "ref_f",
    "ref_v",
    "threshold_percent_f_low",
    "threshold_percent_f_high",
    "threshold_percent_v_low",
    "threshold_percent_v_high",
    "threshold_percent_thd_high",
    "threshold_percent_transient_high",
)

triggering_defaults = Table(
    "triggering_defaults",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    *(Column(name, Float, nullable=False) for name in TRIGGER_FIELDS),
    _time("updated_ms"),
    CheckConstraint("id = 1", name="single_row"),
)

triggering_overrides = Table(
    "triggering_overrides",
    metadata,
    Column(
        "box_id",
        String(64),
        ForeignKey("opq_boxes.box_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    *(Column(name, Float, nullable=True) for name in TRIGGER_FIELDS),
    _time("updated_ms"),
)

# Pruning finds expired measurements by expire_at. Rows arrive in time order, so on PostgreSQL a
# BRIN index (a min/max per 128 heap pages, nearly free to maintain) narrows the scan as well as a
# b-tree would; SQLite has no BRIN and gets a b-tree, appended at its end as time goes on.
Index(
    "ix_measurements_expire_at",
    measurements.c.expire_at,
    postgresql_using="brin",
    postgresql_with={"autosummarize": "on"},
)
