-- 010 (analytics hub): coarse attributes and events, never an identifier encoding.
CREATE SCHEMA IF NOT EXISTS features;
CREATE SCHEMA IF NOT EXISTS scores;
CREATE SCHEMA IF NOT EXISTS reference;

-- Rows exactly as received (all text), append-only, traceable to load and row.
CREATE TABLE IF NOT EXISTS raw.attributes (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR, record_token VARCHAR, sex VARCHAR, birth_year VARCHAR, ethnicity VARCHAR,
    ward_code VARCHAR, extract_date VARCHAR,
    PRIMARY KEY (load_id, row_number)
);
CREATE TABLE IF NOT EXISTS raw.events (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR, event_token VARCHAR, record_token VARCHAR, event_month VARCHAR,
    event_type VARCHAR, value VARCHAR, extract_date VARCHAR,
    PRIMARY KEY (load_id, row_number)
);

-- Validated, typed rows.  event_date is the first day of the event's month (month resolution).
CREATE TABLE IF NOT EXISTS staging.attributes (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR NOT NULL, record_token VARCHAR NOT NULL, sex VARCHAR, birth_year INTEGER,
    ethnicity VARCHAR, ward_code VARCHAR, extract_date DATE,
    PRIMARY KEY (load_id, row_number)
);
CREATE TABLE IF NOT EXISTS staging.events (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR NOT NULL, event_token VARCHAR NOT NULL, record_token VARCHAR NOT NULL,
    event_date DATE NOT NULL, event_type VARCHAR NOT NULL, value DOUBLE, extract_date DATE,
    PRIMARY KEY (load_id, row_number)
);

-- Public reference data: ward -> name and deprivation decile.
CREATE TABLE IF NOT EXISTS reference.wards (
    ward_code VARCHAR PRIMARY KEY, ward_name VARCHAR NOT NULL, imd_decile INTEGER NOT NULL
);

-- The rows downstream stages use: the latest validated version of each record and event.
CREATE OR REPLACE VIEW staging.current_attributes AS
SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (PARTITION BY agency, record_token
                                 ORDER BY extract_date DESC, load_id DESC, row_number) AS rn
    FROM staging.attributes) WHERE rn = 1;
CREATE OR REPLACE VIEW staging.current_events AS
SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (PARTITION BY agency, event_token
                                 ORDER BY extract_date DESC, load_id DESC, row_number) AS rn
    FROM staging.events) WHERE rn = 1;
