-- 001: schemas and the layers ingest and validation own.
-- Derived layers (linked, features, scores) are rebuilt by their stages; see docs/architecture.md.
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS quarantine;
CREATE SCHEMA IF NOT EXISTS linked;
CREATE SCHEMA IF NOT EXISTS features;
CREATE SCHEMA IF NOT EXISTS scores;
CREATE SCHEMA IF NOT EXISTS audit;
CREATE SCHEMA IF NOT EXISTS reference;

-- One row per file received. Append-only. The same file content (hash) is loaded once.
CREATE TABLE IF NOT EXISTS raw.loads (
    load_id       VARCHAR PRIMARY KEY,     -- 'L' + first 16 hex of the file's sha256
    agency        VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,        -- people | events
    file_name     VARCHAR NOT NULL,
    file_hash     VARCHAR NOT NULL UNIQUE, -- sha256 of the file bytes
    n_rows        BIGINT,
    header        VARCHAR,                 -- the header row as received, comma-joined
    extract_date  DATE,
    status        VARCHAR NOT NULL,        -- loaded | quarantined
    reason        VARCHAR,                 -- why a whole file was quarantined
    loaded_at     TIMESTAMP NOT NULL
);

-- Rows exactly as received (all text), append-only, traceable to load and row.
CREATE TABLE IF NOT EXISTS raw.people (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR, record_token VARCHAR, first_name_token VARCHAR, surname_token VARCHAR,
    first_name_bf VARCHAR, surname_bf VARCHAR, first_name_soundex_token VARCHAR,
    surname_soundex_token VARCHAR, dob_token VARCHAR, dob_swap_token VARCHAR,
    birth_year_month VARCHAR, sex VARCHAR, ethnicity VARCHAR, postcode_token VARCHAR,
    postcode_sector VARCHAR, nhs_token VARCHAR, upn_token VARCHAR, extract_date VARCHAR,
    PRIMARY KEY (load_id, row_number)
);
CREATE TABLE IF NOT EXISTS raw.events (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR, event_token VARCHAR, record_token VARCHAR, event_date VARCHAR,
    event_type VARCHAR, value VARCHAR, extract_date VARCHAR,
    PRIMARY KEY (load_id, row_number)
);

-- Validated, typed rows.
CREATE TABLE IF NOT EXISTS staging.people (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR NOT NULL, record_token VARCHAR NOT NULL, first_name_token VARCHAR,
    surname_token VARCHAR, first_name_bf VARCHAR, surname_bf VARCHAR,
    first_name_soundex_token VARCHAR, surname_soundex_token VARCHAR, dob_token VARCHAR,
    dob_swap_token VARCHAR, birth_year_month VARCHAR, sex VARCHAR, ethnicity VARCHAR,
    postcode_token VARCHAR, postcode_sector VARCHAR, nhs_token VARCHAR, upn_token VARCHAR,
    extract_date DATE,
    PRIMARY KEY (load_id, row_number)
);
CREATE TABLE IF NOT EXISTS staging.events (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR NOT NULL, event_token VARCHAR NOT NULL, record_token VARCHAR NOT NULL,
    event_date DATE NOT NULL, event_type VARCHAR NOT NULL, value DOUBLE, extract_date DATE,
    PRIMARY KEY (load_id, row_number)
);

-- Rows that failed a row-level rule, kept with the rule and reason; can be re-released.
CREATE TABLE IF NOT EXISTS quarantine.rows (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    rules VARCHAR NOT NULL,        -- every rule the row failed, '; '-separated (expectation:column)
    reason VARCHAR NOT NULL,       -- readable: file, row, rule
    quarantined_at TIMESTAMP NOT NULL,
    released_at TIMESTAMP,
    PRIMARY KEY (load_id, row_number)
);
-- Whole batches quarantined (a critical rule failed, or the file could not be read).
CREATE TABLE IF NOT EXISTS quarantine.files (
    file_hash VARCHAR PRIMARY KEY,
    load_id VARCHAR,               -- null when the file never became a load (unreadable)
    file_name VARCHAR NOT NULL, agency VARCHAR, kind VARCHAR,
    reason VARCHAR NOT NULL,
    stored_path VARCHAR,           -- copy kept under the quarantine folder
    quarantined_at TIMESTAMP NOT NULL,
    released_at TIMESTAMP
);

-- Every stage run: who, when, outcome, figures.
CREATE TABLE IF NOT EXISTS audit.stage_runs (
    run_id VARCHAR NOT NULL, stage VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
    status VARCHAR NOT NULL,       -- running | success | failed | abandoned (killed; set by the next run)
    figures JSON, error VARCHAR, run_by VARCHAR,
    PRIMARY KEY (run_id, stage)
);
-- Every validation of a batch: which suite (and version), outcome, statistics. No cell values.
CREATE TABLE IF NOT EXISTS audit.validations (
    validation_id VARCHAR PRIMARY KEY,
    load_id VARCHAR, target VARCHAR NOT NULL,   -- load id or downstream table name
    suite_name VARCHAR NOT NULL, suite_version VARCHAR NOT NULL,
    success BOOLEAN NOT NULL, outcome VARCHAR NOT NULL,  -- passed | rows_quarantined | batch_quarantined | warnings
    n_rows BIGINT, n_staged BIGINT, n_quarantined BIGINT,
    statistics JSON, results JSON,
    validated_at TIMESTAMP NOT NULL, validated_by VARCHAR
);

-- Public reference data: postcode sector -> ward and deprivation decile.
CREATE TABLE IF NOT EXISTS reference.areas (
    postcode_sector VARCHAR PRIMARY KEY, ward_code VARCHAR NOT NULL,
    ward_name VARCHAR NOT NULL, imd_decile INTEGER NOT NULL
);

-- The rows downstream stages use: the latest validated version of each record and event.
CREATE OR REPLACE VIEW staging.current_people AS
SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (PARTITION BY agency, record_token
                                 ORDER BY extract_date DESC, load_id DESC, row_number) AS rn
    FROM staging.people) WHERE rn = 1;
CREATE OR REPLACE VIEW staging.current_events AS
SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (PARTITION BY agency, event_token
                                 ORDER BY extract_date DESC, load_id DESC, row_number) AS rn
    FROM staging.events) WHERE rn = 1;
