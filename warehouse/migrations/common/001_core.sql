-- 001 (both units): schemas and the bookkeeping ingest and validation own.  Each unit's own
-- tables (the linkage unit's people encodings; the hub's attributes and events) are in the
-- unit's folder.  Derived layers are rebuilt by their stages; see docs/architecture.md.
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS quarantine;
CREATE SCHEMA IF NOT EXISTS linked;
CREATE SCHEMA IF NOT EXISTS audit;

-- One row per file received. Append-only. The same file content (hash) is loaded once.
CREATE TABLE IF NOT EXISTS raw.loads (
    load_id       VARCHAR PRIMARY KEY,     -- 'L' + first 16 hex of the file's sha256
    agency        VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,        -- people (linkage unit) | attributes | events (hub)
    file_name     VARCHAR NOT NULL,
    file_hash     VARCHAR NOT NULL UNIQUE, -- sha256 of the file bytes
    n_rows        BIGINT,
    header        VARCHAR,                 -- the header row as received, comma-joined
    extract_date  DATE,
    status        VARCHAR NOT NULL,        -- loaded | quarantined
    reason        VARCHAR,                 -- why a whole file was quarantined
    loaded_at     TIMESTAMP NOT NULL
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

