"""The data contract (v2) as constants: what each agency sends, raw (agency side) and pseudonymised
(hub side).  `docs/data-contract.md` is the human-readable version of the same thing; keep the two
in step.  Every package reads column names and allowed values from here.

Contract version 2 separates functions: identifier encodings go to the linkage unit only, events
and coarse attributes to the analytics hub only.  Files (CSV, UTF-8, comma, header row):
  raw, agency side:        <agency>_people.csv  <agency>_events.csv    (RAW_PEOPLE_COLUMNS, RAW_EVENT_COLUMNS)
  to the linkage unit:     <agency>_people.csv                         (PEOPLE_COLUMNS: encodings only)
  to the analytics hub:    <agency>_attributes.csv  <agency>_events.csv (ATTRIBUTE_COLUMNS, EVENT_COLUMNS)
"""

from __future__ import annotations

#: the contract's version; v1 (one people file with encodings and clear attributes, sent to one
#: hub) is retired
CONTRACT_VERSION = 2

AGENCIES: tuple[str, ...] = ("health", "police", "education", "csc")
KINDS: tuple[str, ...] = ("people", "attributes", "events")
#: which kinds of file each unit receives: the linkage unit never sees events or attributes, the
#: analytics hub never sees identifier encodings
UNIT_KINDS: dict[str, tuple[str, ...]] = {
    "linkage": ("people",),
    "hub": ("attributes", "events"),
}
#: raw (agency-side) file kinds
RAW_KINDS: tuple[str, ...] = ("people", "events")

SEXES: tuple[str, ...] = ("M", "F", "U")
#: ONS 2021 high-level ethnic groups; "UNK" = not stated / not recorded
ETHNICITIES: tuple[str, ...] = ("WHITE", "MIXED", "ASIAN", "BLACK", "OTHER", "UNK")

EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "health": (
        "gp_registration",
        "ae_attendance",
        "ae_injury",
        "teen_parent",  # maternity: the child is, or is about to become, a parent
        "mental_health_referral",
    ),
    "police": (
        "domestic_abuse_household",  # a DA incident at the child's household, child recorded as present
        "missing_episode",
        "arrest",
        "asb",
    ),
    "education": (
        "attendance",  # value = attendance percentage for the term (0-100)
        "suspension",
        "exclusion",
        "sen_support",
        "ehcp",
        "free_school_meals",
        "school_move",
    ),
    "csc": (
        "contact",
        "referral",
        "assessment",
        "child_in_need",
        "cp_plan_start",
        "looked_after_start",
        "placement_start",  # value = PLACEMENT_KINDS code; on entry to care and at each move
        "looked_after_end",  # the child ceases to be looked after
    ),
}
#: event types whose `value` is required (all others leave it empty)
VALUED_EVENT_TYPES: frozenset[str] = frozenset({"attendance", "placement_start"})
#: placement kinds, as children's social care codes them on `placement_start` (value = the code):
#: 1 foster care with an unrelated carer, 2 kinship (family and friends / connected persons
#: fostering), 3 residential (children's homes, secure units, semi-independent and supported
#: accommodation), 4 other (placed with parents, placed for adoption, independent living, other)
PLACEMENT_KINDS: dict[int, str] = {1: "foster", 2: "kinship", 3: "residential", 4: "other"}
#: valued event types whose value must be one of a fixed set of codes
CODED_EVENT_VALUES: dict[str, tuple[int, ...]] = {"placement_start": tuple(PLACEMENT_KINDS)}
#: the episode in care: a start, placement starts (entry and moves) and an end
CARE_EPISODE_EVENT_TYPES: tuple[str, ...] = (
    "looked_after_start",
    "placement_start",
    "looked_after_end",
)
#: the outcome the risk model predicts: either of these within 12 months of the as-of date
OUTCOME_EVENT_TYPES: tuple[str, ...] = ("cp_plan_start", "looked_after_start")

# ---------------------------------------------------------------- raw (agency side, plaintext)
RAW_PEOPLE_COLUMNS: tuple[str, ...] = (
    "source_id",  # the agency's own record id (e.g. H0001234); unique within the file
    "first_name",
    "surname",
    "dob",  # YYYY-MM-DD
    "sex",  # SEXES
    "postcode",  # full UK postcode, e.g. "LS6 2AB"
    "ethnicity",  # ETHNICITIES
    "nhs_number",  # 10 digits, optional (always in health, sometimes elsewhere)
    "upn",  # unique pupil number, optional (education, sometimes csc)
    "extract_date",  # YYYY-MM-DD, the same on every row
)
RAW_EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",  # the agency's own event id; unique within the file
    "source_id",  # the person the event belongs to (RAW_PEOPLE_COLUMNS.source_id)
    "event_date",  # YYYY-MM-DD
    "event_type",  # EVENT_TYPES[agency]
    "value",  # number or empty; see VALUED_EVENT_TYPES
    "extract_date",
)
#: raw columns that identify a person and must never reach the hub
RAW_IDENTIFIER_COLUMNS: tuple[str, ...] = (
    "source_id",
    "first_name",
    "surname",
    "dob",
    "postcode",
    "nhs_number",
    "upn",
    "event_id",
)

# ---------------------------------------------------------------- pseudonymised (v2)
#: keyed HMAC-SHA256 tokens, lowercase hex, TOKEN_HEX_LENGTH characters; empty when the source is empty
TOKEN_HEX_LENGTH = 32
#: the version of the encodings (docs/data-contract.md §4); v1 is retired
ENCODING_VERSION = 2
#: salted, diffused keyed filters of name bigrams, lowercase hex of BLOOM_BITS bits; 960 bits
#: split into 16 words of 60 bits (15 hex characters), so each word is a non-negative signed
#: BIGINT in DuckDB and Spark SQL (whose bit_count takes BIGINT only)
BLOOM_BITS = 960
BLOOM_HEX_LENGTH = BLOOM_BITS // 4
BLOOM_WORD_BITS = 60

#: to the linkage unit: identifier encodings (and the clear fields linkage compares) only
PEOPLE_COLUMNS: tuple[str, ...] = (
    "agency",  # AGENCIES
    "record_token",  # token of agency + source_id: stable across extracts
    "first_name_bf",  # salted (dob), diffused keyed filter of the first name's bigrams
    "surname_bf",
    "first_name_nhs_bf",  # the same filter salted with the NHS number instead (empty without one)
    "surname_nhs_bf",
    "dob_token",  # token of the full date of birth
    "dob_swap_token",  # token of the dob with day and month swapped; empty if not a valid date or day == month
    "birth_year_month",  # clear (linkage unit only), YYYY-MM
    "sex",  # clear, SEXES
    "postcode_token",  # token of the normalised full postcode
    "postcode_sector",  # clear (linkage unit only), e.g. "LS6 2"
    "nhs_token",
    "upn_token",
    "extract_date",  # clear, YYYY-MM-DD
)
TOKEN_COLUMNS: tuple[str, ...] = (
    "record_token",
    "dob_token",
    "dob_swap_token",
    "postcode_token",
    "nhs_token",
    "upn_token",
)
BLOOM_COLUMNS: tuple[str, ...] = (
    "first_name_bf",
    "surname_bf",
    "first_name_nhs_bf",
    "surname_nhs_bf",
)
#: encodings of identifiers (names, dob, postcode, NHS number, UPN): linkage unit only, never at
#: the hub.  (record_token and event_token are keyed record keys, held by both.)
IDENTIFIER_ENCODING_COLUMNS: tuple[str, ...] = tuple(
    c for c in TOKEN_COLUMNS + BLOOM_COLUMNS if c != "record_token"
) + (  # v1 columns, so a v1 file is recognised and refused at the hub too
    "first_name_token",
    "surname_token",
    "first_name_soundex_token",
    "surname_soundex_token",
)
#: clear columns the linkage unit holds but the hub never does (finer than the analysis needs)
LINKAGE_ONLY_CLEAR_COLUMNS: tuple[str, ...] = ("birth_year_month", "postcode_sector")

#: to the analytics hub: one row per person record, coarse clear attributes only
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "agency",
    "record_token",  # the same record_token as in the linkage unit's people file
    "sex",  # SEXES
    "birth_year",  # YYYY (never the month or day)
    "ethnicity",  # ETHNICITIES
    "ward_code",  # electoral ward of the postcode (from the public lookup); empty if unknown
    "extract_date",
)

#: to the analytics hub: events, dated to the month
EVENT_COLUMNS: tuple[str, ...] = (
    "agency",
    "event_token",  # token of agency + event_id
    "record_token",  # the person's record_token
    "event_month",  # clear, YYYY-MM (the features and outcomes are monthly)
    "event_type",
    "value",
    "extract_date",
)
#: hub-side columns that hold clear dates (not identifiers; analysis needs them)
CLEAR_DATE_COLUMNS: tuple[str, ...] = ("event_month", "extract_date")


def columns_for(kind: str, raw: bool = False) -> tuple[str, ...]:
    """The columns of a file kind: pseudonymised (default) or raw (agency side)."""
    if raw:
        if kind == "people":
            return RAW_PEOPLE_COLUMNS
        if kind == "events":
            return RAW_EVENT_COLUMNS
        raise ValueError(f"unknown raw file kind {kind!r}; expected one of {RAW_KINDS}")
    if kind == "people":
        return PEOPLE_COLUMNS
    if kind == "attributes":
        return ATTRIBUTE_COLUMNS
    if kind == "events":
        return EVENT_COLUMNS
    raise ValueError(f"unknown file kind {kind!r}; expected one of {KINDS}")


def file_name(agency: str, kind: str) -> str:
    """The contract's file name for an agency's extract, the same raw and pseudonymised."""
    if agency not in AGENCIES:
        raise ValueError(f"unknown agency {agency!r}; expected one of {AGENCIES}")
    if kind not in KINDS:
        raise ValueError(f"unknown file kind {kind!r}; expected one of {KINDS}")
    return f"{agency}_{kind}.csv"


def parse_file_name(name: str) -> tuple[str, str]:
    """`health_people.csv` -> ("health", "people"); ValueError naming the file otherwise."""
    stem = name.removesuffix(".csv")
    agency, _, kind = stem.partition("_")
    if not name.endswith(".csv") or agency not in AGENCIES or kind not in KINDS:
        raise ValueError(
            f"{name}: not a contract file name (expected <agency>_<people|attributes|events>.csv, "
            f"agency one of {', '.join(AGENCIES)})"
        )
    return agency, kind
