-- 003: re-releasing quarantined data after a fix (warehouse/release.py, docs/validation.md).
--
-- quarantine.rows keeps meaning "quarantined NOW": validate's conservation check (rows in =
-- staged + quarantined) and every report count it.  A release never deletes history: before a
-- row leaves quarantine.rows (staged) or has its rules changed by a re-validation, its old
-- version is copied to quarantine.row_history with what happened, when, by whom and under
-- which release.  quarantine.rows.released_at (001) therefore stays empty; a released row's
-- released_at is in quarantine.row_history.  Both new tables are append-only.
CREATE TABLE IF NOT EXISTS quarantine.row_history (
    release_id     VARCHAR NOT NULL,     -- audit.releases.release_id
    load_id        VARCHAR NOT NULL,
    row_number     BIGINT NOT NULL,
    agency         VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    rules          VARCHAR NOT NULL,     -- the rules the row was quarantined for until this release
    reason         VARCHAR NOT NULL,     -- the reason it had (never a token value)
    quarantined_at TIMESTAMP NOT NULL,
    action         VARCHAR NOT NULL,     -- released | force_released | rules_updated (still quarantined)
    new_rules      VARCHAR,              -- rules_updated: the rules the row is quarantined for now
    released_at    TIMESTAMP NOT NULL,   -- when this action happened
    released_by    VARCHAR NOT NULL,
    PRIMARY KEY (release_id, load_id, row_number)
);

-- A batch quarantined whole is released when its critical rules pass (or it is forced).
ALTER TABLE quarantine.files ADD COLUMN IF NOT EXISTS released_by VARCHAR;
ALTER TABLE quarantine.files ADD COLUMN IF NOT EXISTS release_id VARCHAR;

-- One row per release that changed something (a repeated release that changes nothing writes
-- nothing).  Counts only, never a value from the data.
CREATE TABLE IF NOT EXISTS audit.releases (
    release_id      VARCHAR PRIMARY KEY,
    load_id         VARCHAR NOT NULL,
    agency          VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,
    file_name       VARCHAR NOT NULL,
    scope           VARCHAR NOT NULL,    -- rows | batch (the load was quarantined whole)
    mode            VARCHAR NOT NULL,    -- revalidate (current committed suite) | force
    rule_filter     VARCHAR,             -- --rule as given
    row_filter      VARCHAR,             -- --rows as given (row numbers of the file)
    reason          VARCHAR,             -- why (mandatory for force); free text, no child's data
    suite_name      VARCHAR NOT NULL,
    suite_version   VARCHAR NOT NULL,    -- the suite the rows were re-validated with
    rows_considered BIGINT NOT NULL,     -- quarantined rows selected
    rows_released   BIGINT NOT NULL,     -- of those, now staged
    rows_still_quarantined BIGINT NOT NULL,
    rows_rules_updated     BIGINT NOT NULL,  -- still quarantined, for different rules now
    batch_released  BOOLEAN NOT NULL,    -- the quarantine.files row was released
    n_rows          BIGINT NOT NULL,     -- the load afterwards: rows in = staged + quarantined
    n_staged        BIGINT NOT NULL,
    n_quarantined   BIGINT NOT NULL,
    statistics      JSON,                -- conservation result, rule counts, staged rows now failing
    released_at     TIMESTAMP NOT NULL,
    released_by     VARCHAR NOT NULL
);
