-- A database made by opq at schema revision 0001 (commit 9876929), with one box and one measurement.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO alembic_version VALUES('0001');
CREATE TABLE id_counters (
	name VARCHAR(32) NOT NULL, 
	last_value BIGINT NOT NULL, 
	CONSTRAINT pk_id_counters PRIMARY KEY (name)
);
INSERT INTO id_counters VALUES('event',0);
INSERT INTO id_counters VALUES('incident',0);
CREATE TABLE slugs (
	slug VARCHAR(128) NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	CONSTRAINT pk_slugs PRIMARY KEY (slug), 
	CONSTRAINT ck_slugs_kind CHECK (kind IN ('location', 'region'))
);
INSERT INTO slugs VALUES('here','location');
CREATE TABLE measurements (
	box_id VARCHAR(64) NOT NULL, 
	timestamp_ms BIGINT NOT NULL, 
	voltage FLOAT NOT NULL, 
	frequency FLOAT NOT NULL, 
	thd FLOAT NOT NULL, 
	transient FLOAT NOT NULL, 
	expire_at BIGINT, 
	CONSTRAINT pk_measurements PRIMARY KEY (box_id, timestamp_ms)
)
 WITHOUT ROWID

;
INSERT INTO measurements VALUES('1',1000,120.0,60.0,0.010000000000000000208,0.5,86401000);
CREATE TABLE trends (
	box_id VARCHAR(64) NOT NULL, 
	timestamp_ms BIGINT NOT NULL, 
	location VARCHAR(128), 
	voltage_min FLOAT, 
	voltage_max FLOAT, 
	voltage_average FLOAT, 
	frequency_min FLOAT, 
	frequency_max FLOAT, 
	frequency_average FLOAT, 
	thd_min FLOAT, 
	thd_max FLOAT, 
	thd_average FLOAT, 
	transient_min FLOAT, 
	transient_max FLOAT, 
	transient_average FLOAT, 
	expire_at BIGINT, 
	CONSTRAINT pk_trends PRIMARY KEY (box_id, timestamp_ms)
);
CREATE TABLE events (
	event_id BIGINT NOT NULL, 
	description TEXT NOT NULL, 
	boxes_triggered JSON NOT NULL, 
	boxes_received JSON NOT NULL, 
	latencies_ms JSON NOT NULL, 
	target_event_start_timestamp_ms BIGINT NOT NULL, 
	target_event_end_timestamp_ms BIGINT NOT NULL, 
	expire_at BIGINT, 
	CONSTRAINT pk_events PRIMARY KEY (event_id)
);
CREATE TABLE files (
	id INTEGER NOT NULL, 
	filename VARCHAR(255) NOT NULL, 
	length BIGINT, 
	chunk_size INTEGER NOT NULL, 
	upload_date_ms BIGINT NOT NULL, 
	md5 VARCHAR(32), 
	event_id BIGINT, 
	box_id VARCHAR(64), 
	incident_id BIGINT, 
	metadata JSON NOT NULL, 
	CONSTRAINT pk_files PRIMARY KEY (id), 
	CONSTRAINT uq_files_filename UNIQUE (filename)
);
CREATE TABLE incidents (
	incident_id BIGINT NOT NULL, 
	event_id BIGINT, 
	box_id VARCHAR(64) NOT NULL, 
	start_timestamp_ms BIGINT NOT NULL, 
	end_timestamp_ms BIGINT NOT NULL, 
	location VARCHAR(128), 
	measurement_type VARCHAR(16) NOT NULL, 
	deviation_from_nominal FLOAT, 
	measurements JSON NOT NULL, 
	gridfs_filename VARCHAR(255), 
	ieee_duration VARCHAR(16), 
	metadata JSON NOT NULL, 
	expire_at BIGINT, 
	CONSTRAINT pk_incidents PRIMARY KEY (incident_id)
);
CREATE TABLE health (
	id INTEGER NOT NULL, 
	timestamp_ms BIGINT NOT NULL, 
	service VARCHAR(32) NOT NULL, 
	service_id VARCHAR(64), 
	status VARCHAR(8) NOT NULL, 
	info TEXT NOT NULL, 
	expire_at BIGINT, 
	CONSTRAINT pk_health PRIMARY KEY (id), 
	CONSTRAINT ck_health_status CHECK (status IN ('up', 'down'))
);
CREATE TABLE system_stats (
	id INTEGER NOT NULL, 
	timestamp_ms BIGINT NOT NULL, 
	document JSON NOT NULL, 
	CONSTRAINT pk_system_stats PRIMARY KEY (id), 
	CONSTRAINT ck_system_stats_single_row CHECK (id = 1)
);
CREATE TABLE user_profiles (
	username VARCHAR(254) NOT NULL, 
	first_name VARCHAR(128) NOT NULL, 
	last_name VARCHAR(128) NOT NULL, 
	role VARCHAR(8) NOT NULL, 
	phone VARCHAR(64) NOT NULL, 
	unseen_notifications BOOLEAN NOT NULL, 
	notification_preferences JSON NOT NULL, 
	CONSTRAINT pk_user_profiles PRIMARY KEY (username), 
	CONSTRAINT ck_user_profiles_role CHECK (role IN ('user', 'admin'))
);
CREATE TABLE triggering_defaults (
	id INTEGER NOT NULL, 
	ref_f FLOAT NOT NULL, 
	ref_v FLOAT NOT NULL, 
	threshold_percent_f_low FLOAT NOT NULL, 
	threshold_percent_f_high FLOAT NOT NULL, 
	threshold_percent_v_low FLOAT NOT NULL, 
	threshold_percent_v_high FLOAT NOT NULL, 
	threshold_percent_thd_high FLOAT NOT NULL, 
	updated_ms BIGINT NOT NULL, 
	CONSTRAINT pk_triggering_defaults PRIMARY KEY (id), 
	CONSTRAINT ck_triggering_defaults_single_row CHECK (id = 1)
);
CREATE TABLE locations (
	slug VARCHAR(128) NOT NULL, 
	longitude FLOAT NOT NULL, 
	latitude FLOAT NOT NULL, 
	description TEXT NOT NULL, 
	CONSTRAINT pk_locations PRIMARY KEY (slug), 
	CONSTRAINT ck_locations_longitude CHECK (longitude >= -180 AND longitude <= 180), 
	CONSTRAINT ck_locations_latitude CHECK (latitude >= -90 AND latitude <= 90), 
	CONSTRAINT fk_locations_slug_slugs FOREIGN KEY(slug) REFERENCES slugs (slug), 
	CONSTRAINT uq_locations_description UNIQUE (description)
);
INSERT INTO locations VALUES('here',-157.80000000000001137,21.30000000000000071,'A place');
CREATE TABLE regions (
	slug VARCHAR(128) NOT NULL, 
	CONSTRAINT pk_regions PRIMARY KEY (slug), 
	CONSTRAINT fk_regions_slug_slugs FOREIGN KEY(slug) REFERENCES slugs (slug)
);
CREATE TABLE box_events (
	event_id BIGINT NOT NULL, 
	box_id VARCHAR(64) NOT NULL, 
	event_start_timestamp_ms BIGINT NOT NULL, 
	event_end_timestamp_ms BIGINT NOT NULL, 
	window_timestamps_ms JSON NOT NULL, 
	location VARCHAR(128), 
	data_fs_filename VARCHAR(255), 
	CONSTRAINT pk_box_events PRIMARY KEY (event_id, box_id), 
	CONSTRAINT fk_box_events_event_id_events FOREIGN KEY(event_id) REFERENCES events (event_id)
);
CREATE TABLE chunks (
	files_id INTEGER NOT NULL, 
	n INTEGER NOT NULL, 
	data BLOB NOT NULL, 
	CONSTRAINT pk_chunks PRIMARY KEY (files_id, n), 
	CONSTRAINT fk_chunks_files_id_files FOREIGN KEY(files_id) REFERENCES files (id) ON DELETE CASCADE
);
CREATE TABLE incident_classifications (
	incident_id BIGINT NOT NULL, 
	classification VARCHAR(40) NOT NULL, 
	CONSTRAINT pk_incident_classifications PRIMARY KEY (incident_id, classification), 
	CONSTRAINT fk_incident_classifications_incident_id_incidents FOREIGN KEY(incident_id) REFERENCES incidents (incident_id) ON DELETE CASCADE
);
CREATE TABLE incident_annotations (
	id INTEGER NOT NULL, 
	incident_id BIGINT NOT NULL, 
	username VARCHAR(254) NOT NULL, 
	text TEXT NOT NULL, 
	timestamp_ms BIGINT NOT NULL, 
	CONSTRAINT pk_incident_annotations PRIMARY KEY (id), 
	CONSTRAINT fk_incident_annotations_incident_id_incidents FOREIGN KEY(incident_id) REFERENCES incidents (incident_id) ON DELETE CASCADE
);
CREATE TABLE user_credentials (
	username VARCHAR(254) NOT NULL, 
	password_hash VARCHAR(255) NOT NULL, 
	updated_ms BIGINT NOT NULL, 
	CONSTRAINT pk_user_credentials PRIMARY KEY (username), 
	CONSTRAINT fk_user_credentials_username_user_profiles FOREIGN KEY(username) REFERENCES user_profiles (username) ON DELETE CASCADE
);
CREATE TABLE notifications (
	id INTEGER NOT NULL, 
	username VARCHAR(254) NOT NULL, 
	type VARCHAR(64) NOT NULL, 
	timestamp_ms BIGINT NOT NULL, 
	data JSON NOT NULL, 
	delivered BOOLEAN NOT NULL, 
	expire_at BIGINT, 
	CONSTRAINT pk_notifications PRIMARY KEY (id), 
	CONSTRAINT fk_notifications_username_user_profiles FOREIGN KEY(username) REFERENCES user_profiles (username) ON DELETE CASCADE
);
CREATE TABLE region_locations (
	region_slug VARCHAR(128) NOT NULL, 
	location_slug VARCHAR(128) NOT NULL, 
	CONSTRAINT pk_region_locations PRIMARY KEY (region_slug, location_slug), 
	CONSTRAINT fk_region_locations_region_slug_regions FOREIGN KEY(region_slug) REFERENCES regions (slug), 
	CONSTRAINT fk_region_locations_location_slug_locations FOREIGN KEY(location_slug) REFERENCES locations (slug)
);
CREATE TABLE region_subregions (
	region_slug VARCHAR(128) NOT NULL, 
	subregion_slug VARCHAR(128) NOT NULL, 
	CONSTRAINT pk_region_subregions PRIMARY KEY (region_slug, subregion_slug), 
	CONSTRAINT ck_region_subregions_not_self CHECK (region_slug <> subregion_slug), 
	CONSTRAINT fk_region_subregions_region_slug_regions FOREIGN KEY(region_slug) REFERENCES regions (slug), 
	CONSTRAINT fk_region_subregions_subregion_slug_regions FOREIGN KEY(subregion_slug) REFERENCES regions (slug)
);
CREATE TABLE opq_boxes (
	box_id VARCHAR(64) NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	description TEXT NOT NULL, 
	calibration_constant FLOAT NOT NULL, 
	location VARCHAR(128), 
	location_start_time_ms BIGINT, 
	public_key VARCHAR(40), 
	unplugged BOOLEAN NOT NULL, 
	CONSTRAINT pk_opq_boxes PRIMARY KEY (box_id), 
	CONSTRAINT ck_opq_boxes_calibration_positive CHECK (calibration_constant > 0), 
	CONSTRAINT uq_opq_boxes_name UNIQUE (name), 
	CONSTRAINT fk_opq_boxes_location_locations FOREIGN KEY(location) REFERENCES locations (slug), 
	CONSTRAINT uq_opq_boxes_public_key UNIQUE (public_key)
);
INSERT INTO opq_boxes VALUES('1','one','',152.5,'here',0,NULL,0);
CREATE TABLE box_location_archive (
	box_id VARCHAR(64) NOT NULL, 
	location VARCHAR(128) NOT NULL, 
	location_start_time_ms BIGINT NOT NULL, 
	CONSTRAINT pk_box_location_archive PRIMARY KEY (box_id, location_start_time_ms), 
	CONSTRAINT fk_box_location_archive_box_id_opq_boxes FOREIGN KEY(box_id) REFERENCES opq_boxes (box_id), 
	CONSTRAINT fk_box_location_archive_location_locations FOREIGN KEY(location) REFERENCES locations (slug)
);
INSERT INTO box_location_archive VALUES('1','here',0);
CREATE TABLE box_owners (
	username VARCHAR(254) NOT NULL, 
	box_id VARCHAR(64) NOT NULL, 
	CONSTRAINT pk_box_owners PRIMARY KEY (username, box_id), 
	CONSTRAINT fk_box_owners_username_user_profiles FOREIGN KEY(username) REFERENCES user_profiles (username) ON DELETE CASCADE, 
	CONSTRAINT fk_box_owners_box_id_opq_boxes FOREIGN KEY(box_id) REFERENCES opq_boxes (box_id) ON DELETE CASCADE
);
CREATE TABLE triggering_overrides (
	box_id VARCHAR(64) NOT NULL, 
	ref_f FLOAT, 
	ref_v FLOAT, 
	threshold_percent_f_low FLOAT, 
	threshold_percent_f_high FLOAT, 
	threshold_percent_v_low FLOAT, 
	threshold_percent_v_high FLOAT, 
	threshold_percent_thd_high FLOAT, 
	updated_ms BIGINT NOT NULL, 
	CONSTRAINT pk_triggering_overrides PRIMARY KEY (box_id), 
	CONSTRAINT fk_triggering_overrides_box_id_opq_boxes FOREIGN KEY(box_id) REFERENCES opq_boxes (box_id) ON DELETE CASCADE
);
CREATE INDEX ix_measurements_expire_at ON measurements (expire_at);
CREATE INDEX ix_trends_expire_at ON trends (expire_at);
CREATE INDEX ix_events_expire_at ON events (expire_at);
CREATE INDEX ix_events_target_event_start_timestamp_ms ON events (target_event_start_timestamp_ms);
CREATE INDEX ix_files_incident_id ON files (incident_id);
CREATE INDEX ix_files_event_id ON files (event_id);
CREATE INDEX ix_incidents_start_timestamp_ms ON incidents (start_timestamp_ms);
CREATE INDEX ix_incidents_expire_at ON incidents (expire_at);
CREATE INDEX ix_incidents_box_id ON incidents (box_id);
CREATE INDEX ix_incidents_location ON incidents (location);
CREATE INDEX ix_incidents_event_id ON incidents (event_id);
CREATE INDEX ix_incidents_measurement_type ON incidents (measurement_type);
CREATE INDEX ix_health_timestamp_ms ON health (timestamp_ms);
CREATE INDEX ix_health_expire_at ON health (expire_at);
CREATE INDEX ix_health_service ON health (service);
CREATE INDEX ix_box_events_event_start_timestamp_ms ON box_events (event_start_timestamp_ms);
CREATE INDEX ix_box_events_box_id ON box_events (box_id);
CREATE INDEX ix_incident_classifications_classification ON incident_classifications (classification);
CREATE INDEX ix_incident_annotations_incident_id ON incident_annotations (incident_id);
CREATE INDEX ix_notifications_expire_at ON notifications (expire_at);
CREATE INDEX ix_notifications_username ON notifications (username);
CREATE INDEX ix_region_locations_location_slug ON region_locations (location_slug);
CREATE INDEX ix_region_subregions_subregion_slug ON region_subregions (subregion_slug);
CREATE INDEX ix_box_owners_box_id ON box_owners (box_id);
COMMIT;
