-- 002: linkage review queue, reviewers' decisions, and a detailed child id history.
-- linked.review_queue is rebuilt by every link run; linked.review_decisions is append-only
-- (the latest decision per pair wins) and keyed by the stable record identities
-- (agency + record_token), so decisions survive re-runs. No token value of a name, date of
-- birth or number is stored here: record_token is the agency's keyed record token.
CREATE SCHEMA IF NOT EXISTS linked;

CREATE TABLE IF NOT EXISTS linked.review_queue (
    pair_id           VARCHAR PRIMARY KEY,  -- 'R' + 12 hex of sha256 of the two record keys
    rank              INTEGER NOT NULL,     -- 1 = closest to the threshold
    agency_l VARCHAR NOT NULL, record_token_l VARCHAR NOT NULL, child_id_l VARCHAR,
    agency_r VARCHAR NOT NULL, record_token_r VARCHAR NOT NULL, child_id_r VARCHAR,
    same_child        BOOLEAN,
    match_probability DOUBLE NOT NULL,
    match_weight      DOUBLE NOT NULL,
    distance          DOUBLE NOT NULL,      -- |match weight - threshold weight| (log2 odds)
    model_side        VARCHAR NOT NULL,     -- link | no link (probability vs threshold)
    evidence          VARCHAR NOT NULL,     -- 'first_name: dice >= 0.88 (+5.1); dob: exact ...'
    evidence_json     JSON,                 -- {comparison: {level, weight}}
    decision          VARCHAR,              -- latest decision, NULL = pending
    run_id            VARCHAR NOT NULL,
    queued_at         TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS linked.review_decisions (
    decision_id       VARCHAR PRIMARY KEY,
    pair_id           VARCHAR NOT NULL,
    agency_l VARCHAR NOT NULL, record_token_l VARCHAR NOT NULL,
    agency_r VARCHAR NOT NULL, record_token_r VARCHAR NOT NULL,
    decision          VARCHAR NOT NULL CHECK (decision IN ('accept', 'reject')),
    reviewer          VARCHAR NOT NULL,
    reason            VARCHAR,              -- free text: must not hold names, dates or numbers
    match_probability DOUBLE,               -- the model's probability when decided
    decided_at        TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS linked.child_id_history (
    child_id VARCHAR, event VARCHAR, detail VARCHAR, run_id VARCHAR, "at" TIMESTAMP
);
ALTER TABLE linked.child_id_history ADD COLUMN IF NOT EXISTS from_child_id VARCHAR;
ALTER TABLE linked.child_id_history ADD COLUMN IF NOT EXISTS n_records INTEGER;
ALTER TABLE linked.child_id_history ADD COLUMN IF NOT EXISTS cause VARCHAR;
ALTER TABLE linked.child_id_history ADD COLUMN IF NOT EXISTS mode VARCHAR;
