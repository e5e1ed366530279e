-- 010 (linkage unit): the people files' identifier encodings.  The linkage unit never receives
-- events or attributes: there are no such tables here.
CREATE TABLE IF NOT EXISTS raw.people (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR, record_token VARCHAR, first_name_bf VARCHAR, surname_bf VARCHAR,
    first_name_nhs_bf VARCHAR, surname_nhs_bf VARCHAR,
    dob_token VARCHAR, dob_swap_token VARCHAR, birth_year_month VARCHAR, sex VARCHAR,
    postcode_token VARCHAR, postcode_sector VARCHAR, nhs_token VARCHAR, upn_token VARCHAR,
    extract_date VARCHAR,
    PRIMARY KEY (load_id, row_number)
);
CREATE TABLE IF NOT EXISTS staging.people (
    load_id VARCHAR NOT NULL, row_number BIGINT NOT NULL,
    agency VARCHAR NOT NULL, record_token VARCHAR NOT NULL, first_name_bf VARCHAR,
    surname_bf VARCHAR, first_name_nhs_bf VARCHAR, surname_nhs_bf VARCHAR, dob_token VARCHAR,
    dob_swap_token VARCHAR, birth_year_month VARCHAR,
    sex VARCHAR, postcode_token VARCHAR, postcode_sector VARCHAR, nhs_token VARCHAR,
    upn_token VARCHAR, extract_date DATE,
    PRIMARY KEY (load_id, row_number)
);
-- The rows linkage uses: the latest validated version of each record.
CREATE OR REPLACE VIEW staging.current_people AS
SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (PARTITION BY agency, record_token
                                 ORDER BY extract_date DESC, load_id DESC, row_number) AS rn
    FROM staging.people) WHERE rn = 1;
