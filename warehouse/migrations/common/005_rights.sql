-- 005 (both units): data-subject rights (warehouse/rights.py, docs/privacy.md).
--
-- rights.optouts is the register of records an agency has opted out: append-only, one row per
-- record per request.  It is the only table of a store that still names an opted-out record
-- (agency + record token): ingest reads it to withhold the record from every later extract.
-- rights.purged_rows says how many raw rows of each load were removed, and by which request, so
-- validation's conservation (rows in = staged + quarantined = rows the load recorded - purged)
-- still adds up.  audit.rights_requests records every opt-out and subject-access request with
-- counts only, never a value from the data or a token.
CREATE SCHEMA IF NOT EXISTS rights;

CREATE TABLE IF NOT EXISTS rights.optouts (
    agency       VARCHAR NOT NULL,
    record_token VARCHAR NOT NULL,
    request_id   VARCHAR NOT NULL,     -- audit.rights_requests.request_id
    received_at  TIMESTAMP NOT NULL,
    applied_by   VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS rights.purged_rows (
    load_id    VARCHAR NOT NULL,       -- raw.loads.load_id
    n_rows     BIGINT NOT NULL,        -- raw rows of the load removed
    request_id VARCHAR NOT NULL,       -- the opt-out request that keyed them
    purged_at  TIMESTAMP NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS audit.rights_requests (
    request_id   VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL CHECK (kind IN ('optout', 'access')),
    agency       VARCHAR,              -- access: the record's agency; optout: agencies, comma-joined
    n_records    BIGINT NOT NULL,
    rows_removed JSON,                 -- optout: table -> rows removed (counts only)
    requested_at TIMESTAMP NOT NULL,
    requested_by VARCHAR NOT NULL,
    note         VARCHAR,              -- free text, never a value or a token
    PRIMARY KEY (request_id, kind)
);
