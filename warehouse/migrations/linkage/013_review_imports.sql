-- 013 (linkage unit): clerical-review decisions made in the hub's dashboard arrive as files
-- (link_decisions_*.csv in settings.review_decisions_inbox) and are imported by
-- linkage.review_import into linked.review_decisions (decision_id = the file's decision_id, so a
-- re-import skips what it already holds).  One row per file handled, and which import brought
-- each decision.  No token or value of a file is stored here; errors name file, row and rule.
CREATE SCHEMA IF NOT EXISTS linked;

CREATE TABLE IF NOT EXISTS linked.review_imports (
    import_id    VARCHAR PRIMARY KEY,
    file_name    VARCHAR NOT NULL,
    file_sha256  VARCHAR NOT NULL,
    status       VARCHAR NOT NULL CHECK (status IN ('processed', 'rejected')),
    n_rows       INTEGER,               -- data rows read (NULL: the file could not be read)
    n_applied    INTEGER NOT NULL,      -- decisions appended to linked.review_decisions
    n_skipped    INTEGER NOT NULL,      -- decision ids already imported (idempotent re-import)
    error        VARCHAR,               -- rejected: '<file> row <n>: <rule text> (rule: <rule>)'
    stored_path  VARCHAR NOT NULL,      -- where the file was moved (processed/ or rejected/)
    imported_at  TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS linked.review_decision_imports (
    decision_id  VARCHAR PRIMARY KEY,   -- linked.review_decisions.decision_id
    import_id    VARCHAR NOT NULL       -- linked.review_imports.import_id
);
