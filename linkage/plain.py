"""Plain Splink on the plaintext fields: the baseline our privacy-preserving path is judged by.

Owns `link_plain` / `run_plain`: raw people rows (the data contract's raw format, plaintext,
agency side) -> clusters, with Splink 5's own comparison library on the SAME fields our path uses
(first name, surname, dob, sex, postcode, NHS number, UPN), the same training recipe as
`linkage.model.train` (random-match probability from deterministic rules, u by random sampling,
EM on dob / names / postcode), blocking rules equivalent to `linkage.model.prediction_rules` but
on clear values, and Splink's connected components at the same threshold (no twin guard: this is
plain Splink).  Normalisation of names, postcodes and ids reuses `pseudonymiser.encoding`, so both
paths see the same cleaned values; only the encoding differs.

Comparisons (levels in order):

* first name, surname: `NameComparison` (null, exact with term-frequency adjustment,
  Jaro-Winkler >= 0.92, >= 0.88, >= 0.7, else);
* dob: `DateOfBirthComparison` on the ISO string (exact, Levenshtein <= 1, within 1 month,
  1 year, 10 years, else; an invalid date can still match exactly);
* postcode: exact, same sector, same district (sector and district as `pseudonymiser.encoding`
  derives them, so non-UK postcodes never match on an empty sector), else;
* NHS number, UPN, sex: `ExactMatch` (sex other than M/F is null).

Blocking: by default the fixed loose rules of `prediction_rules()`; `run_plain(rules=...)`
takes any rules on plain's columns instead, and `translate_rules` maps our token-column rules
(e.g. the ones `linkage.model.build_linker` chose) to plain's columns, so both paths can score
exactly the same pairs (the benchmark's like-for-like comparison).  Token equality is equality of
the normalised values (`pseudonymiser.pseudonymise.encode_people` tokenises what `prepare_plain`
keeps clear, with the same `pseudonymiser.encoding` normalisers).

Runs in its own in-memory DuckDB.  Never logs or prints identifiers; figures are counts and
seconds only.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import pandas as pd
from splink import DuckDBAPI, Linker, SettingsCreator, block_on
from splink import comparison_level_library as cll
from splink import comparison_library as cl
from splink.blocking_analysis import count_comparisons_from_blocking_rules

from linkage import model
from pseudonymiser import encoding as enc

log = logging.getLogger(__name__)

#: the raw contract columns plain linkage reads (others, e.g. ethnicity, are ignored)
PLAIN_FIELDS: tuple[str, ...] = (
    "first_name",
    "surname",
    "dob",
    "sex",
    "postcode",
    "nhs_number",
    "upn",
)


#: the columns of `prepare_plain`'s frame
PLAIN_COLUMNS: tuple[str, ...] = (
    "unique_id",
    "first_name",
    "surname",
    "first_name_soundex",
    "surname_soundex",
    "dob",
    "dob_swap",
    "birth_year_month",
    "birth_year",
    "sex",
    "postcode",
    "postcode_sector",
    "postcode_district",
    "nhs_number",
    "upn",
)

#: our model's input columns (`linkage.model.INPUT_COLUMNS`) -> the plain column holding the
#: same normalised value in clear (a token is equal exactly when the values are)
TOKEN_TO_PLAIN: dict[str, str] = {
    # equal v2 name filters = equal names under the same dob salt; rules use them only together
    # with a dob equality, where the plain names' equality is the same condition
    "first_name_bf": "first_name",
    "surname_bf": "surname",
    "dob_token": "dob",
    "dob_swap_token": "dob_swap",
    "birth_year_month": "birth_year_month",
    "birth_year": "birth_year",
    "sex": "sex",
    "postcode_token": "postcode",
    "postcode_sector": "postcode_sector",
    "postcode_district": "postcode_district",
    "nhs_token": "nhs_number",
    "upn_token": "upn",
}

#: a column reference in blocking-rule SQL: `l.col`, `r.col` (optionally double-quoted)
_COLUMN_REF = re.compile(r'\b([lr])\.(?:"([A-Za-z_][A-Za-z0-9_]*)"|([A-Za-z_][A-Za-z0-9_]*))')


def translate_rule(token_rule: str) -> str:
    """One blocking rule on our model's columns -> the same rule on plain's columns.

    Every `l.<col>` / `r.<col>` is mapped by `TOKEN_TO_PLAIN` (e.g. `l.dob_swap_token =
    r.dob_token` -> `l.dob_swap = r.dob`); the rest of the SQL is kept.  Raises ValueError on a
    column with no plain equivalent, or on a rule with no `l.`/`r.` column at all."""
    if not isinstance(token_rule, str):
        raise ValueError(f"a blocking rule must be SQL text, not {type(token_rule).__name__}")
    found = False

    def sub(m: re.Match[str]) -> str:
        nonlocal found
        found = True
        col = m.group(2) or m.group(3)
        if col not in TOKEN_TO_PLAIN:
            raise ValueError(f"blocking rule column {col!r} has no plain equivalent")
        return f"{m.group(1)}.{TOKEN_TO_PLAIN[col]}"

    out = _COLUMN_REF.sub(sub, token_rule)
    if not found:
        raise ValueError("blocking rule names no l./r. column")
    return out


def translate_rules(token_rules: Sequence[str]) -> list[str]:
    """Our token-column blocking rules -> the same rules on plain's clear columns, in order
    (`translate_rule` each; ValueError on a column plain cannot map)."""
    return [translate_rule(r) for r in token_rules]


def _clean(s: pd.Series, func: Callable[[str], str]) -> pd.Series:
    out = enc.map_distinct(s, func).astype("string")
    return out.mask(out == "", pd.NA)


def unique_ids(raw_people: pd.DataFrame) -> pd.Series:
    """The record ids `link_plain` uses: column `unique_id` if present, else
    `agency + ":" + source_id` if there is an `agency` column, else `source_id`."""
    if "unique_id" in raw_people.columns:
        ids = raw_people["unique_id"].astype(str)
    elif "agency" in raw_people.columns:
        ids = (
            raw_people["agency"].astype(str) + ":" + raw_people["source_id"].astype(str).str.strip()
        )
    else:
        ids = raw_people["source_id"].astype(str).str.strip()
    if ids.duplicated().any():
        raise ValueError("record ids are not unique (add an `agency` or `unique_id` column)")
    return ids.reset_index(drop=True)


def prepare_plain(raw_people: pd.DataFrame) -> pd.DataFrame:
    """Raw people rows -> the plain model's input (normalised clear values; empty -> NULL)."""
    missing = [c for c in ("source_id", *PLAIN_FIELDS) if c not in raw_people.columns]
    if missing and not ("unique_id" in raw_people.columns and missing == ["source_id"]):
        raise ValueError(f"raw people lack column(s) {', '.join(missing)}")
    raw = raw_people.reset_index(drop=True).astype({c: object for c in PLAIN_FIELDS})
    raw = raw.fillna({c: "" for c in PLAIN_FIELDS})
    df = pd.DataFrame({"unique_id": unique_ids(raw_people)})
    df["first_name"] = _clean(raw["first_name"], enc.normalise_name)
    df["surname"] = _clean(raw["surname"], enc.normalise_name)
    df["first_name_soundex"] = _clean(raw["first_name"], enc.soundex)
    df["surname_soundex"] = _clean(raw["surname"], enc.soundex)
    df["dob"] = _clean(raw["dob"], enc.normalise_dob)
    df["dob_swap"] = _clean(raw["dob"], enc.swap_dob)
    df["birth_year_month"] = _clean(raw["dob"], enc.birth_year_month)
    df["birth_year"] = df["birth_year_month"].str.slice(0, 4)
    sex = raw["sex"].astype(str).str.strip().str.upper()
    df["sex"] = sex.where(sex.isin(["M", "F"]), pd.NA).astype("string")
    df["postcode"] = _clean(raw["postcode"], enc.normalise_postcode)
    df["postcode_sector"] = _clean(raw["postcode"], enc.postcode_sector)
    df["postcode_district"] = df["postcode_sector"].str.split(" ").str[0]
    df["nhs_number"] = _clean(raw["nhs_number"], enc.normalise_nhs)
    df["upn"] = _clean(raw["upn"], enc.normalise_upn)
    return df[list(PLAIN_COLUMNS)]


def comparisons() -> list[Any]:
    """Splink comparison-library comparisons on the same fields as `linkage.model`."""
    postcode = cl.CustomComparison(
        output_column_name="postcode",
        comparison_levels=[
            cll.NullLevel("postcode"),
            cll.ExactMatchLevel("postcode"),
            cll.ExactMatchLevel("postcode_sector").configure(label_for_charts="same sector"),
            cll.ExactMatchLevel("postcode_district").configure(label_for_charts="same district"),
            cll.ElseLevel(),
        ],
    )
    return [
        cl.NameComparison("first_name"),
        cl.NameComparison("surname"),
        cl.DateOfBirthComparison(
            "dob", input_is_string=True, datetime_format="%Y-%m-%d", invalid_dates_as_null=False
        ),
        postcode,
        cl.ExactMatch("nhs_number"),
        cl.ExactMatch("upn"),
        cl.ExactMatch("sex"),
    ]


def prediction_rules() -> list[Any]:
    """The fixed loose prediction rules (the default; `linkage.model`'s loose candidates on
    clear columns, plus dob alone)."""
    return [
        block_on("dob"),
        block_on("nhs_number"),
        block_on("upn"),
        "l.dob_swap = r.dob",
        block_on("surname", "birth_year_month"),
        block_on("first_name", "birth_year_month"),
        block_on("first_name_soundex", "surname_soundex", "postcode_sector"),
        block_on("postcode", "first_name_soundex"),
        block_on("first_name", "surname", "birth_year"),
    ]


def training_rules() -> list[tuple[str, Any]]:
    """The default EM training rules, (step name, rule)."""
    return [
        ("em_dob", block_on("dob")),
        ("em_names", block_on("first_name", "surname")),
        ("em_postcode", block_on("postcode")),
    ]


def settings(rules: Sequence[Any] | None = None) -> SettingsCreator:
    """Splink settings with the given prediction rules (default: `prediction_rules()`)."""
    return model.splink_settings(comparisons(), rules or prediction_rules())


def train(
    linker: Linker,
    seed: int,
    max_pairs_u: float = 2e6,
    em_rules: Sequence[str] | None = None,
) -> dict:
    """`linkage.model.train`'s recipe on clear columns; skipped steps are counted, not fatal.

    `em_rules`: EM training rules on plain's columns (e.g. our chosen ones via
    `translate_rules`); default `training_rules()`."""
    skipped: list[str] = []

    def step(name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        model.training_step(skipped, name, func, *args, **kwargs)

    t = linker.training
    step(
        "probability_two_random_records_match",
        t.estimate_probability_two_random_records_match,
        [block_on("nhs_number"), block_on("dob", "first_name", "surname")],
        recall=model.DETERMINISTIC_RECALL,
    )
    step("u", t.estimate_u_using_random_sampling, max_pairs=max_pairs_u, seed=seed)
    if em_rules is None:
        em = training_rules()
    else:
        em = [(f"em_{i}", rule) for i, rule in enumerate(em_rules, start=1)]
    for name, rule in em:
        step(name, t.estimate_parameters_using_expectation_maximisation, rule,
             estimate_without_term_frequencies=True)  # fmt: skip
    return {
        "probability_two_random_records_match": float(
            linker._settings_obj._probability_two_random_records_match
        ),
        "training_steps_skipped": skipped,
    }


def count_comparisons(sdf: Any, rules: Sequence[Any]) -> int:
    """Exact number of pairs `rules` generate (Splink's blocking analysis, dedupe)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        recs = count_comparisons_from_blocking_rules(
            sdf,
            blocking_rules=list(rules),
            link_type="dedupe_only",
            unique_id_column_name="unique_id",
            record_sample_proportion=1.0,
        )
    return int(recs[-1]["cumulative_comparison_count"]) if recs else 0


def run_plain(
    raw_people: pd.DataFrame,
    seed: int,
    threshold: float = model.THRESHOLD,
    review_band: float = model.REVIEW_BAND,
    rules: Sequence[str] | None = None,
    em_rules: Sequence[str] | None = None,
    count: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Plain Splink end to end. Returns (clusters[unique_id, cluster_id], scored pairs >=
    `review_band` [unique_id_l, unique_id_r, match_weight, match_probability], figures).

    `rules`: prediction blocking rules (SQL on plain's columns, `PLAIN_COLUMNS`; e.g.
    `translate_rules` of ours); default the fixed `prediction_rules()`.  `em_rules`: EM training
    rules likewise; default `training_rules()`.  Predicts at `review_band` (like our path) and
    clusters the pairs >= `threshold` with Splink's connected components.

    Figures: records, comparisons (pairs the blocking rules generate: Splink's exact count, run
    after the timed steps and timed apart as `seconds_count`; None without `count`),
    pairs_scored (>= review band, as `linked.pairs`), pairs_above_threshold, clusters,
    threshold, blocking_rules (the rules used, SQL, or "fixed"), the training figures, and
    `seconds` per step (prepare, train, predict, cluster) with `seconds_total` their sum."""
    steps: dict[str, float] = {}
    t = time.perf_counter()
    df = prepare_plain(raw_people)
    con = duckdb.connect(":memory:")
    seconds_count = None
    try:
        db_api = DuckDBAPI(connection=con)
        sdf = db_api.register(df, dataset_display_name="plain_people")
        linker = Linker(sdf, settings(rules), log_level=None)
        steps["prepare"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        figures = train(linker, seed=seed, em_rules=em_rules)
        steps["train"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        pred = linker.inference.predict(threshold_match_probability=review_band)
        pairs = pred.as_pandas_dataframe()[
            ["unique_id_l", "unique_id_r", "match_weight", "match_probability"]
        ]
        steps["predict"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
            pred, threshold_match_probability=threshold
        )
        clusters = clustered.as_pandas_dataframe()[["unique_id", "cluster_id"]]
        steps["cluster"] = round(time.perf_counter() - t, 2)
        comparisons_made = None
        if count:
            t = time.perf_counter()
            comparisons_made = count_comparisons(sdf, list(rules or prediction_rules()))
            seconds_count = round(time.perf_counter() - t, 2)
    finally:
        con.close()
    clusters = clusters.astype({"unique_id": str, "cluster_id": str})
    figures = {
        "records": int(len(df)),
        "comparisons": comparisons_made,
        "pairs_scored": int(len(pairs)),
        "pairs_above_threshold": int((pairs["match_probability"] >= threshold).sum()),
        "clusters": int(clusters["cluster_id"].nunique()),
        "threshold": threshold,
        "review_band": review_band,
        "blocking_rules": list(rules) if rules else "fixed",
        "training_rules": list(em_rules) if em_rules is not None else "fixed",
        **figures,
        "seconds": steps,
        "seconds_total": round(sum(steps.values()), 2),
        "seconds_count": seconds_count,
    }
    return clusters, pairs, figures


def link_plain(
    raw_people: pd.DataFrame,
    seed: int,
    threshold: float = model.THRESHOLD,
    rules: Sequence[str] | None = None,
    em_rules: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Plain Splink over plaintext raw people rows -> `DataFrame[unique_id, cluster_id]`.

    `raw_people`: one row per record with the raw contract columns first_name, surname, dob
    (YYYY-MM-DD), sex, postcode, nhs_number, upn (empty or NaN = missing; extra columns are
    ignored) and an id: `unique_id` if present, else `agency:source_id` with an `agency` column,
    else `source_id` (ids must be unique; all rows are deduplicated together, like our path).
    `seed` seeds u sampling; records joined by pairs with match probability >= `threshold`
    share a cluster.  Both output columns are strings, one row per input row.  `rules` /
    `em_rules`: blocking rules on plain's columns (see `run_plain`; `translate_rules` maps
    ours), default the fixed ones.

    The run's figures (`run_plain`'s: comparisons, pairs_scored, seconds per step, ...) are in
    the result's `.attrs["figures"]`.  This signature is stable (the benchmark imports it)."""
    clusters, _, figures = run_plain(
        raw_people, seed=seed, threshold=threshold, rules=rules, em_rules=em_rules
    )
    clusters.attrs["figures"] = figures
    return clusters
