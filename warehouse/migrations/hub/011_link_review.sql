-- 011 (analytics hub): the linkage unit's clerical review queue as handed off in
-- review_queue.csv (linkage.handoff.REVIEW_QUEUE_COLUMNS), checked and replaced by assemble and
-- published to the analysts (link_review).  No record token, Bloom filter or encoding: pairs are
-- named by pair id and the child ids the hub already holds; evidence is level labels and weights.
-- Decisions are never made here: the dashboard hands them back to the linkage unit as files.
CREATE SCHEMA IF NOT EXISTS linked;

CREATE TABLE IF NOT EXISTS linked.link_review (
    pair_id           VARCHAR PRIMARY KEY,  -- 'R' + 12 hex (the linkage unit's pair id)
    rank              INTEGER NOT NULL,     -- 1 = closest to the threshold
    agency_l          VARCHAR NOT NULL,
    child_id_l        VARCHAR NOT NULL,
    agency_r          VARCHAR NOT NULL,
    child_id_r        VARCHAR NOT NULL,
    match_probability DOUBLE NOT NULL,
    match_weight      DOUBLE NOT NULL,      -- log2 odds
    model_side        VARCHAR NOT NULL,     -- link | no link
    evidence_json     JSON,                 -- {comparison: {level, weight}}; NULL: unavailable
    decision          VARCHAR,              -- accept | reject at the linkage unit; NULL: pending
    queued_at         TIMESTAMP NOT NULL,   -- UTC
    run_id            VARCHAR NOT NULL      -- the link run that queued it
);
