"""The Splink model: input preparation, comparisons, blocking rules and training.

Works on the encoded fields only (tokens, Bloom filters, clear birth year-month, sex and
postcode sector).  All Splink work happens in a private in-memory DuckDB, never the warehouse.
"""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import pandas as pd
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from joinedup import contract

log = logging.getLogger(__name__)

#: pairs at or above this probability are joined into one child
THRESHOLD = 0.95
#: pairs at or above this probability are kept in linked.pairs (the review band)
REVIEW_BAND = 0.5
#: prior for the deterministic-rule estimate of the random-match probability
DETERMINISTIC_RECALL = 0.7

INPUT_COLUMNS: tuple[str, ...] = (
    "unique_id",
    "agency",
    "first_name_token",
    "surname_token",
    "first_name_soundex_token",
    "surname_soundex_token",
    "dob_token",
    "dob_swap_token",
    "birth_year_month",
    "birth_year",
    "sex",
    "postcode_token",
    "postcode_sector",
    "postcode_district",
    "nhs_token",
    "upn_token",
)


def record_key(agency: pd.Series, record_token: pd.Series) -> pd.Series:
    """The unique id of a record across agencies (never shown in reports)."""
    return agency + ":" + record_token


def prepare_input(people: pd.DataFrame) -> pd.DataFrame:
    """Staged people rows -> the model's input frame (empty strings and 'U' become NULL)."""
    df = pd.DataFrame({"unique_id": record_key(people["agency"], people["record_token"])})
    for col in contract.PEOPLE_COLUMNS:
        if col in ("record_token", "ethnicity", "extract_date"):
            continue
        s = people[col].astype("string").str.strip()
        df[col] = s.mask(s == "", pd.NA)
    df["sex"] = df["sex"].where(df["sex"].isin(["M", "F"]), pd.NA)
    df["birth_year"] = df["birth_year_month"].str.slice(0, 4)
    df["postcode_district"] = df["postcode_sector"].str.split(" ").str[0]
    return df.reset_index(drop=True)


def register_input(con: duckdb.DuckDBPyConnection, df: pd.DataFrame, name: str) -> None:
    """Create table `name` in the private DuckDB with BIT columns and set-bit counts for Dice."""
    con.register("_people_in", df)
    bf = []
    for short, col in (("fn", "first_name_bf"), ("sn", "surname_bf")):
        bits = f"from_hex({col})::BIT"
        bf.append(f"CASE WHEN {col} IS NULL THEN NULL ELSE {bits} END AS {short}_bits")
        bf.append(f"CASE WHEN {col} IS NULL THEN NULL ELSE bit_count({bits}) END AS {short}_n")
    keep = [c for c in INPUT_COLUMNS]
    con.execute(
        f"CREATE OR REPLACE TABLE {name} AS SELECT {', '.join(keep)}, {', '.join(bf)} "
        "FROM _people_in"
    )
    con.unregister("_people_in")


def _dice(short: str) -> str:
    return f"(2.0 * bit_count({short}_bits_l & {short}_bits_r) / ({short}_n_l + {short}_n_r))"


def _name(col: str, short: str) -> dict[str, Any]:
    dice = _dice(short)
    return {
        "output_column_name": col,
        "comparison_description": f"{col}: exact token, Bloom-filter Dice bands, Soundex",
        "comparison_levels": [
            {"sql_condition": f"{col}_token_l IS NULL OR {col}_token_r IS NULL",
             "label_for_charts": "null", "is_null_level": True},
            {"sql_condition": f"{col}_token_l = {col}_token_r", "label_for_charts": "exact",
             "tf_adjustment_column": f"{col}_token", "tf_adjustment_weight": 1.0},
            {"sql_condition": f"{dice} >= 0.88", "label_for_charts": "dice >= 0.88"},
            {"sql_condition": f"{dice} >= 0.75", "label_for_charts": "dice >= 0.75"},
            {"sql_condition": f"{col}_soundex_token_l = {col}_soundex_token_r",
             "label_for_charts": "soundex"},
            {"sql_condition": f"{dice} >= 0.6", "label_for_charts": "dice >= 0.6"},
            {"sql_condition": "ELSE", "label_for_charts": "else"},
        ],
    }  # fmt: skip


def _exact(col: str, label: str) -> dict[str, Any]:
    return {
        "output_column_name": label,
        "comparison_levels": [
            {"sql_condition": f"{col}_l IS NULL OR {col}_r IS NULL", "label_for_charts": "null",
             "is_null_level": True},
            {"sql_condition": f"{col}_l = {col}_r", "label_for_charts": "exact"},
            {"sql_condition": "ELSE", "label_for_charts": "different"},
        ],
    }  # fmt: skip


def comparisons() -> list[dict[str, Any]]:
    dob = {
        "output_column_name": "dob",
        "comparison_levels": [
            {"sql_condition": "dob_token_l IS NULL OR dob_token_r IS NULL",
             "label_for_charts": "null", "is_null_level": True},
            {"sql_condition": "dob_token_l = dob_token_r", "label_for_charts": "exact"},
            {"sql_condition": "dob_token_l = dob_swap_token_r OR dob_swap_token_l = dob_token_r",
             "label_for_charts": "day/month swapped"},
            {"sql_condition": "birth_year_month_l = birth_year_month_r",
             "label_for_charts": "same year-month"},
            {"sql_condition": "birth_year_l = birth_year_r", "label_for_charts": "same year"},
            {"sql_condition": "ELSE", "label_for_charts": "different"},
        ],
    }  # fmt: skip
    postcode = {
        "output_column_name": "postcode",
        "comparison_levels": [
            {"sql_condition": "postcode_token_l IS NULL OR postcode_token_r IS NULL",
             "label_for_charts": "null", "is_null_level": True},
            {"sql_condition": "postcode_token_l = postcode_token_r", "label_for_charts": "exact"},
            {"sql_condition": "postcode_sector_l = postcode_sector_r",
             "label_for_charts": "same sector"},
            {"sql_condition": "postcode_district_l = postcode_district_r",
             "label_for_charts": "same district"},
            {"sql_condition": "ELSE", "label_for_charts": "different"},
        ],
    }  # fmt: skip
    return [
        _name("first_name", "fn"),
        _name("surname", "sn"),
        dob,
        postcode,
        _exact("nhs_token", "nhs"),
        _exact("upn_token", "upn"),
        _exact("sex", "sex"),
    ]


def prediction_rules() -> list:
    """Blocking rules for prediction: each keeps the number of compared pairs bounded."""
    return [
        block_on("dob_token"),
        block_on("nhs_token"),
        block_on("upn_token"),
        "l.dob_swap_token = r.dob_token",
        block_on("surname_token", "birth_year_month"),
        block_on("first_name_token", "birth_year_month"),
        block_on("first_name_soundex_token", "surname_soundex_token", "postcode_sector"),
        block_on("postcode_token", "first_name_soundex_token"),
        block_on("first_name_token", "surname_token", "birth_year"),
    ]


def settings() -> SettingsCreator:
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=comparisons(),
        blocking_rules_to_generate_predictions=prediction_rules(),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
        max_iterations=20,
        em_convergence=0.001,
    )


def build_linker(df: pd.DataFrame) -> tuple[Linker, duckdb.DuckDBPyConnection]:
    """A linker over `df` (from `prepare_input`) in a fresh private in-memory DuckDB."""
    con = duckdb.connect(":memory:")
    register_input(con, df, "people_in")
    db_api = DuckDBAPI(connection=con)
    sdf = db_api.register("people_in", dataset_display_name="people")
    return Linker(sdf, settings(), log_level=None), con


def train(linker: Linker, seed: int, max_pairs_u: float = 2e6) -> dict:
    """Random-match probability (deterministic rules), u (random sampling), m (EM, 3 rules).

    A step that cannot run on the data (too few records or pairs, e.g. a tiny extract) is
    skipped and counted in `training_steps_skipped`; parameters it would have estimated keep
    Splink's defaults."""
    skipped: list[str] = []

    def step(name: str, func, *args, **kwargs) -> None:
        try:
            func(*args, **kwargs)
        except Exception as exc:  # a skipped step is reported, not fatal
            log.warning("linkage training step %s skipped: %s", name, type(exc).__name__)
            skipped.append(name)

    t = linker.training
    step(
        "probability_two_random_records_match",
        t.estimate_probability_two_random_records_match,
        [block_on("nhs_token"), block_on("dob_token", "first_name_token", "surname_token")],
        recall=DETERMINISTIC_RECALL,
    )
    step("u", t.estimate_u_using_random_sampling, max_pairs=max_pairs_u, seed=seed)
    for name, rule in (
        ("em_dob", block_on("dob_token")),
        ("em_names", block_on("first_name_token", "surname_token")),
        ("em_postcode", block_on("postcode_token")),
    ):
        step(name, t.estimate_parameters_using_expectation_maximisation, rule,
             estimate_without_term_frequencies=True)  # fmt: skip
    return {
        "probability_two_random_records_match": _prior(linker),
        "training_steps_skipped": skipped,
    }


def _prior(linker: Linker) -> float:
    return float(linker._settings_obj._probability_two_random_records_match)
