-- 004 (both units): where a received value was not stored.  A value in an encoding column that
-- does not have the encoding's shape is never written anywhere (it may be plaintext): ingest
-- stores NULL in its place and records here only where it was and what kind of value it looked
-- like.  Validation quarantines such rows, citing this table, never the value.
CREATE TABLE IF NOT EXISTS quarantine.scrubbed (
    load_id     VARCHAR NOT NULL,
    row_number  BIGINT NOT NULL,
    column_name VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,   -- e.g. 'not an encoding', 'name or text', 'number or id'
    PRIMARY KEY (load_id, row_number, column_name)
);
