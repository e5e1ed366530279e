"""The Splink model: input preparation, comparisons, blocking rules and training.

Works on the encoded fields only (tokens, contract-v2 name filters, clear birth year-month, sex
and postcode sector).  Name filters are salted with the date of birth (day and month in
ascending order), so two filters are comparable only when the two records' dob tokens agree
(directly or day/month swapped); otherwise the name comparison is the null level.  Name
similarity is Hamming similarity on 60-bit BIGINT words (`bit_count`, `|`, `&` only, so the same
SQL runs in DuckDB and Spark SQL).  All Splink work happens in a private in-memory DuckDB, never the warehouse.

Owns the blocking-rule selection: `choose_blocking_rules` runs Splink's blocking analysis
(`splink.blocking_analysis.count_comparisons_from_blocking_rules`) over candidate rules, ordered
from the most precise, against a comparisons budget that grows linearly with the number of
records; a candidate whose count exceeds its share of the budget is replaced by a tighter variant
or dropped.  `build_linker` does this for prediction and for the EM training rules, records the
analysis (`blocking_analysis(linker)`, also in `train`'s figures) and keeps Splink's
cumulative-comparisons chart (`blocking_chart(linker)`, a Vega-Lite dict).
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from splink import DuckDBAPI, Linker, SettingsCreator, block_on
from splink.blocking_analysis import count_comparisons_from_blocking_rules
from splink.internals.charts import CumulativeBlockingRuleComparisonsGeneratedChart

from joinedup import contract
from linkage import exact_u, name_weights

log = logging.getLogger(__name__)

#: pairs at or above this probability are joined into one child
THRESHOLD = 0.95
#: pairs at or above this probability are kept in linked.pairs (the review band)
REVIEW_BAND = 0.5
#: prior for the deterministic-rule estimate of the random-match probability
DETERMINISTIC_RECALL = 0.7

#: Splink's unique id column: the record's position in the input, in the order the caller gives
#: (`link` reads records in the agencies' file order).  Not the record key: Splink samples
#: records by a hash of the unique id (u estimation, blocking counts on large inputs), and the
#: record key holds the record token, so every sample, and through it the links, would move
#: with the agencies' key.  `unique_id` (the record key) stays a column beside it.
SPLINK_ID = "splink_id"

INPUT_COLUMNS: tuple[str, ...] = (
    SPLINK_ID,
    "unique_id",
    "agency",
    "first_name_bf",
    "surname_bf",
    "first_name_nhs_bf",
    "surname_nhs_bf",
    "dob_token",
    "dob_swap_token",
    "name_salt",
    "birth_year_month",
    "birth_year",
    "birth_month_index",
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
    """Staged people rows -> the model's input frame (empty strings and 'U' become NULL), with
    SPLINK_ID numbering the rows in the order given."""
    df = pd.DataFrame(
        {
            SPLINK_ID: np.arange(len(people), dtype=np.int64),
            "unique_id": record_key(people["agency"], people["record_token"]).to_numpy(),
        }
    )
    for col in contract.PEOPLE_COLUMNS:
        if col in ("record_token", "extract_date"):
            continue
        s = people[col].astype("string").str.strip()
        df[col] = s.mask(s == "", pd.NA)
    sex = df["sex"].str.upper()
    df["sex"] = sex.where(sex.isin(["M", "F"]), pd.NA)
    # the name filters' salt class: the lesser of the dob and swapped-dob tokens (equal exactly
    # when the two dobs are equal up to a day/month swap, which is when filters are comparable)
    dob, swap = df["dob_token"], df["dob_swap_token"]
    df["name_salt"] = dob.where(swap.isna() | (dob <= swap), swap)
    df["birth_year"] = df["birth_year_month"].str.slice(0, 4)
    # months since year 0 from the clear year-month: near misses (a month or a year apart)
    year = pd.to_numeric(df["birth_year_month"].str.slice(0, 4), errors="coerce")
    month = pd.to_numeric(df["birth_year_month"].str.slice(5, 7), errors="coerce")
    df["birth_month_index"] = (year * 12 + month - 1).astype("Int64")
    df["postcode_district"] = df["postcode_sector"].str.split(" ").str[0]
    return df.reset_index(drop=True)


#: words per name filter: BLOOM_BITS bits as 60-bit words (15 hex characters), each a
#: non-negative signed BIGINT, the type Spark SQL's bit_count takes
BLOOM_WORDS = contract.BLOOM_BITS // contract.BLOOM_WORD_BITS
_WORD_HEX = contract.BLOOM_WORD_BITS // 4
#: name-similarity bands: Hamming similarity 1 - 2 * (differing bits) / BLOOM_BITS at least
#: this (unrelated names ~0.17, p99.9 ~0.55; one typo ~0.65 median: measured, see
#: docs/data-contract.md §4.5)
NAME_BANDS: tuple[float, ...] = (0.55, 0.45, 0.35)


def register_input(con: duckdb.DuckDBPyConnection, df: pd.DataFrame, name: str) -> None:
    """Create table `name` in the private DuckDB with each name filter as BLOOM_WORDS BIGINT
    words (`fn_w0..`, `sn_w0..`), so the Hamming distance is a sum of integer `bit_count`s."""
    con.register("_people_in", df)
    bf = []
    for short, col in FILTER_WORDS.items():
        bf.extend(
            f"CAST(('0x' || substr({col}, {1 + _WORD_HEX * i}, {_WORD_HEX})) AS BIGINT) "
            f"AS {short}_w{i}"
            for i in range(BLOOM_WORDS)
        )
    keep = [c for c in INPUT_COLUMNS]
    con.execute(
        f"CREATE OR REPLACE TABLE {name} AS SELECT {', '.join(keep)}, {', '.join(bf)} "
        "FROM _people_in"
    )
    con.unregister("_people_in")


def _hamming(short: str) -> str:
    """SQL: differing bits of two name filters; (a | b) - (a & b) counts = XOR, in any dialect."""
    terms = [
        f"bit_count({short}_w{i}_l | {short}_w{i}_r) - bit_count({short}_w{i}_l & {short}_w{i}_r)"
        for i in range(BLOOM_WORDS)
    ]
    return "(" + " + ".join([f"CAST({terms[0]} AS INTEGER)", *terms[1:]]) + ")"


def max_differing_bits(similarity: float) -> int:
    """The most differing bits a pair may have to reach a Hamming similarity."""
    return int((1.0 - similarity) * contract.BLOOM_BITS / 2)


#: word-column prefix -> filter column
FILTER_WORDS: dict[str, str] = {
    "fn": "first_name_bf",
    "sn": "surname_bf",
    "fni": "first_name_nhs_bf",
    "sni": "surname_nhs_bf",
}


def _comparable(bf: str, salt: str) -> str:
    """SQL: both filters present and salted alike (`salt`: the column whose equality means the
    same salt: `name_salt` for the dob-salted filters, `nhs_token` for the NHS-salted ones)."""
    return (
        f"({bf}_l IS NOT NULL AND {bf}_r IS NOT NULL AND {salt}_l IS NOT NULL "
        f"AND {salt}_r IS NOT NULL AND {salt}_l = {salt}_r)"
    )


def _name(col: str, short: str) -> dict[str, Any]:
    """Levels of one name: each record pair compares its dob-salted filters where the dobs agree
    (up to a swap), and its NHS-salted filters where the NHS tokens agree; a level holds if it
    holds for either comparable pair; null if neither pair is comparable."""
    pairs = [
        (_comparable(f"{col}_bf", "name_salt"), f"{col}_bf", _hamming(short)),
        (_comparable(f"{col}_nhs_bf", "nhs_token"), f"{col}_nhs_bf", _hamming(f"{short}i")),
    ]
    either = " OR ".join(ok for ok, _, _ in pairs)
    levels: list[dict[str, Any]] = [
        {"sql_condition": f"NOT ({either})", "label_for_charts": "null or not comparable",
         "is_null_level": True},
        {"sql_condition": " OR ".join(f"({ok} AND {bf}_l = {bf}_r)" for ok, bf, _ in pairs),
         "label_for_charts": "exact"},
    ]  # fmt: skip
    levels += [
        {"sql_condition": " OR ".join(
            f"({ok} AND {hd} <= {max_differing_bits(b)})" for ok, _, hd in pairs),
         "label_for_charts": f"sim >= {b}"}
        for b in NAME_BANDS
    ]  # fmt: skip
    levels.append({"sql_condition": "ELSE", "label_for_charts": "else"})
    return {
        "output_column_name": col,
        "comparison_description": f"{col}: exact filter, Hamming-similarity bands (same salt)",
        "comparison_levels": levels,
    }


#: fewer non-match pairs than this and the name u-probabilities keep Splink's random-sampling
#: estimate (which over-states them, so names weigh less: the safe side)
MIN_NAME_U_PAIRS = 200


def _level_index(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Per pair, the index of its name level among the non-null levels (0 = exact, then one per
    NAME_BANDS, last = else), computed as the SQL of `_name` does."""

    def ints(s: pd.Series) -> list[int]:
        return [int(v, 16) for v in s.astype(str)]

    differ = np.array([(x ^ y).bit_count() for x, y in zip(ints(a), ints(b), strict=True)])
    out = np.full(len(differ), len(NAME_BANDS) + 1)
    for i, band in reversed(list(enumerate(NAME_BANDS, start=1))):
        out[differ <= max_differing_bits(band)] = i
    out[(a.to_numpy() == b.to_numpy())] = 0
    return out


def name_u_probabilities(df: pd.DataFrame) -> dict[str, list[float]] | None:
    """u-probabilities of the name levels, from pairs that share the name salt (dob, up to a
    day/month swap) but are non-matches by a strong id (NHS or UPN tokens present on both sides
    and different); add-one smoothed.  None if fewer than MIN_NAME_U_PAIRS such pairs.

    Why: the name levels are null unless the salts agree, so Splink's random sampling sees
    names only on the few random pairs with the same dob, most of which are the same child;
    its u would be far too high (measured ~0.24 for an exact first name instead of ~0.01)."""
    cols = ["unique_id", "dob_token", "dob_swap_token", "nhs_token", "upn_token",
            "first_name_bf", "surname_bf"]  # fmt: skip
    x = df[cols][df["dob_token"].notna() & (df["nhs_token"].notna() | df["upn_token"].notna())]
    same = x.merge(x, on="dob_token", suffixes=("_l", "_r"))
    same = same[same["unique_id_l"] < same["unique_id_r"]]
    swap = x.merge(x, left_on="dob_swap_token", right_on="dob_token", suffixes=("_l", "_r"))
    pairs = pd.concat([same, swap], ignore_index=True)
    differ = pd.Series(False, index=pairs.index)
    for c in ("nhs_token", "upn_token"):
        both = pairs[f"{c}_l"].notna() & pairs[f"{c}_r"].notna()
        differ |= both & (pairs[f"{c}_l"] != pairs[f"{c}_r"])
    pairs = pairs[differ.to_numpy()]
    out: dict[str, list[float]] = {}
    for col in ("first_name", "surname"):
        bf = f"{col}_bf"
        p = pairs[pairs[f"{bf}_l"].notna() & pairs[f"{bf}_r"].notna()]
        if len(p) < MIN_NAME_U_PAIRS:
            return None
        levels = _level_index(p[f"{bf}_l"], p[f"{bf}_r"])
        counts = np.bincount(levels, minlength=len(NAME_BANDS) + 2) + 1.0
        out[col] = list(counts / counts.sum())
    return out


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
            {"sql_condition": "abs(birth_month_index_l - birth_month_index_r) = 1",
             "label_for_charts": "adjacent month"},
            {"sql_condition": "abs(birth_month_index_l - birth_month_index_r) = 12",
             "label_for_charts": "same month, year +/- 1"},
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


def _on(*cols: str) -> str:
    """Equality of each column on both sides, as blocking-rule SQL."""
    return " AND ".join(f"l.{c} = r.{c}" for c in cols)


_SWAP = "l.dob_swap_token = r.dob_token"


@dataclass(frozen=True)
class Candidate:
    """A blocking candidate: its variants from the loosest to the tightest; each variant is a
    group of rules (SQL) that together find what the loose rule found, with fewer pairs."""

    name: str
    variants: tuple[tuple[str, ...], ...]


#: prediction candidates, the most precise first (a pair is scored if any chosen rule holds).
#: Equal name filters imply the same dob salt, so they are used only with a dob rule.
PREDICTION_CANDIDATES: tuple[Candidate, ...] = (
    Candidate("nhs", ((_on("nhs_token"),),)),
    Candidate("upn", ((_on("upn_token"),),)),
    Candidate("dob", (
        (_on("dob_token"),),
        (_on("dob_token", "surname_bf"), _on("dob_token", "first_name_bf"),
         _on("dob_token", "postcode_sector")),
        (_on("dob_token", "surname_bf"), _on("dob_token", "first_name_bf")),
    )),
    Candidate("dob_swap", (
        (_SWAP,),
        (f"{_SWAP} AND {_on('surname_bf')}", f"{_SWAP} AND {_on('first_name_bf')}"),
    )),
    Candidate("postcode_year", (
        (_on("postcode_token", "birth_year"),),
        (_on("postcode_token", "birth_year", "sex"),),
    )),
    Candidate("sector_month", (
        (_on("postcode_sector", "birth_year_month"),),
        (_on("postcode_sector", "birth_year_month", "sex"),),
    )),
    Candidate("district_month_sex", (
        (_on("postcode_district", "birth_year_month", "sex"),),
    )),
)  # fmt: skip

#: EM training candidates; each rule estimates the comparisons whose columns it does not use
TRAINING_CANDIDATES: tuple[Candidate, ...] = (
    Candidate("em_dob", (
        (_on("dob_token"),),
        (_on("dob_token", "surname_bf"),),
        (_on("dob_token", "postcode_sector"),),
    )),
    Candidate("em_nhs", (
        (_on("nhs_token"),),
        (_on("nhs_token", "sex"),),
    )),
    Candidate("em_postcode", (
        (_on("postcode_token"),),
        (_on("postcode_token", "sex"),),
    )),
)  # fmt: skip

#: prediction comparisons allowed per input record: the budget grows linearly with the data
COMPARISONS_PER_RECORD = 12.0
#: no one prediction candidate may take more than this share of the budget
RULE_SHARE = 0.3
#: EM comparisons allowed per input record, per training rule
EM_COMPARISONS_PER_RECORD = 2.0
#: the budget never falls below this (tiny extracts keep the loose rules)
MIN_BUDGET = 50_000
#: counts are exact up to this many records; above, Splink's sampled estimate (deterministic
#: hash sample of this many records' worth on each side of the join, at least
#: MIN_SAMPLE_PROPORTION): the same choices as exact counts at 100k records, 3x faster
EXACT_COUNT_RECORDS = 20_000
MIN_SAMPLE_PROPORTION = 0.05


def prediction_rules() -> list[str]:
    """The loosest variant of every prediction candidate (what a small extract uses; larger
    ones get the rules `choose_blocking_rules` picks)."""
    return [r for c in PREDICTION_CANDIDATES for r in c.variants[0]]


def sample_proportion(n_records: int) -> float:
    if n_records <= EXACT_COUNT_RECORDS:
        return 1.0
    return max(MIN_SAMPLE_PROPORTION, round(EXACT_COUNT_RECORDS / n_records, 4))


def _counts(sdf: Any, rules: Sequence[str], proportion: float) -> list[dict[str, Any]]:
    with warnings.catch_warnings():  # small sampled counts warn; the estimate is still used
        warnings.simplefilter("ignore", UserWarning)
        return count_comparisons_from_blocking_rules(
            sdf,
            blocking_rules=list(rules),
            link_type="dedupe_only",
            unique_id_column_name=SPLINK_ID,
            record_sample_proportion=proportion,
        )


def choose_blocking_rules(
    sdf: Any,
    n_records: int,
    candidates: Sequence[Candidate] = PREDICTION_CANDIDATES,
    per_record: float = COMPARISONS_PER_RECORD,
    share: float = RULE_SHARE,
) -> dict[str, Any]:
    """Pick blocking rules by Splink's blocking analysis against a budget of
    `max(MIN_BUDGET, per_record * n_records)` comparisons.

    Each rule of each candidate's variants is counted alone (Splink's count, exact up to
    EXACT_COUNT_RECORDS records, else a deterministic sampled estimate); a candidate takes its
    loosest variant whose summed count fits `share` of the budget, else it is dropped.  Then the
    chosen rules are counted together (marginal and cumulative counts, Splink's order); while
    the cumulative count exceeds the budget the last (least precise) rule is dropped.

    Returns {"budget", "record_sample_proportion", "candidates": [per candidate: name, variant
    taken (index or None), rules with their counts], "rules": chosen SQL, "cumulative":
    Splink's records, "comparisons_chosen"}."""
    budget = int(max(MIN_BUDGET, per_record * n_records))
    cap = budget * share
    proportion = sample_proportion(n_records)
    all_rules = list(dict.fromkeys(r for c in candidates for v in c.variants for r in v))
    alone: dict[str, int] = {}
    for rule in all_rules:
        alone[rule] = int(_counts(sdf, [rule], proportion)[0]["marginal_comparison_count"])
    report: list[dict[str, Any]] = []
    chosen: list[str] = []
    for cand in candidates:
        taken = None
        for i, variant in enumerate(cand.variants):
            if sum(alone[r] for r in variant) <= cap:
                taken = i
                break
        report.append(
            {
                "name": cand.name,
                "variant": taken,
                "variants": [
                    {"rules": [{"rule": r, "comparisons": alone[r]} for r in v],
                     "comparisons": sum(alone[r] for r in v)}
                    for v in cand.variants
                ],
            }
        )  # fmt: skip
        if taken is not None:
            chosen.extend(r for r in cand.variants[taken] if r not in chosen)
    cumulative = _counts(sdf, chosen, proportion) if chosen else []
    while cumulative and cumulative[-1]["cumulative_comparison_count"] > budget:
        dropped = chosen.pop()
        log.info("blocking: dropped a rule over the budget (%s rules left)", len(chosen))
        for entry in report:
            if any(dropped == r["rule"] for v in entry["variants"] for r in v["rules"]):
                entry.setdefault("dropped_for_budget", []).append(dropped)
        cumulative = _counts(sdf, chosen, proportion) if chosen else []
    return {
        "budget": budget,
        "per_record": per_record,
        "rule_share": share,
        "record_sample_proportion": proportion,
        "candidates": report,
        "rules": chosen,
        "cumulative": [dict(r) for r in cumulative],
        "comparisons_chosen": int(cumulative[-1]["cumulative_comparison_count"])
        if cumulative
        else 0,
    }


def choose_training_rules(sdf: Any, n_records: int) -> dict[str, Any]:
    """One EM rule per training candidate: its loosest variant within
    `EM_COMPARISONS_PER_RECORD * n_records` comparisons (else its tightest)."""
    budget = int(max(MIN_BUDGET, EM_COMPARISONS_PER_RECORD * n_records))
    proportion = sample_proportion(n_records)
    out = []
    for cand in TRAINING_CANDIDATES:
        counts = [
            int(_counts(sdf, [v[0]], proportion)[0]["marginal_comparison_count"])
            for v in cand.variants
        ]
        # never a variant with no pairs (EM on it would train nothing, or worse); the loosest
        # within budget, else the tightest that still has pairs, else the rule is left out
        usable = [k for k, n in enumerate(counts) if n > 0]
        if not usable:
            continue
        i = next((k for k in usable if counts[k] <= budget), usable[-1])
        out.append(
            {"name": cand.name, "rule": cand.variants[i][0], "comparisons": counts[i],
             "variant": i, "variant_comparisons": counts}
        )  # fmt: skip
    return {"budget": budget, "rules": out}


def splink_settings(
    comparison_specs: Sequence[Any], rules: Sequence[Any], unique_id: str = "unique_id"
) -> SettingsCreator:
    """The Splink settings both linkage paths share (dedupe of `unique_id`, no retained
    columns, EM limits); `linkage.plain` passes its plaintext comparisons and rules."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=unique_id,
        comparisons=list(comparison_specs),
        blocking_rules_to_generate_predictions=list(rules),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
        max_iterations=20,
        em_convergence=0.001,
    )


def settings(rules: Sequence[str] | None = None) -> SettingsCreator:
    """Splink settings with the given prediction rules (default: `prediction_rules()`)."""
    return splink_settings(comparisons(), rules or prediction_rules(), unique_id=SPLINK_ID)


def training_step(skipped: list[str], name: str, func: Any, *args: Any, **kwargs: Any) -> None:
    """Run one Splink training step; a step that cannot run on the data (too few records or
    pairs) is logged and appended to `skipped`, never fatal."""
    try:
        func(*args, **kwargs)
    except Exception as exc:  # a skipped step is reported, not fatal
        log.warning("linkage training step %s skipped: %s", name, type(exc).__name__)
        skipped.append(name)


#: the blocking analysis of each linker `build_linker` made (read by `train` and the report)
_ANALYSES: weakref.WeakKeyDictionary[Linker, dict[str, Any]] = weakref.WeakKeyDictionary()
#: the registered input of each linker `build_linker` made (for the name-u probe linker)
_SOURCES: weakref.WeakKeyDictionary[Linker, Any] = weakref.WeakKeyDictionary()


def build_linker(
    df: pd.DataFrame, per_record: float = COMPARISONS_PER_RECORD
) -> tuple[Linker, duckdb.DuckDBPyConnection]:
    """A linker over `df` (from `prepare_input`) in a fresh private in-memory DuckDB, with
    prediction and EM rules chosen by Splink's blocking analysis (`blocking_analysis`)."""
    con = duckdb.connect(":memory:")
    register_input(con, df, "people_in")
    db_api = DuckDBAPI(connection=con)
    sdf = db_api.register("people_in", dataset_display_name="people")
    n = len(df)
    analysis = choose_blocking_rules(sdf, n, per_record=per_record)
    analysis["training"] = choose_training_rules(sdf, n)
    linker = Linker(sdf, settings(analysis["rules"]), log_level=None)
    _ANALYSES[linker] = analysis
    _SOURCES[linker] = sdf
    return linker, con


def blocking_analysis(linker: Linker) -> dict[str, Any] | None:
    """The blocking analysis `build_linker` ran for this linker (None for other linkers)."""
    try:
        return _ANALYSES.get(linker)
    except TypeError:  # not weak-referenceable: not a linker build_linker made
        return None


def blocking_figures(analysis: dict[str, Any]) -> dict[str, Any]:
    """The analysis as model figures: budget, per-candidate counts and the rules kept."""
    return {
        "budget": analysis["budget"],
        "comparisons_per_record": analysis["per_record"],
        "record_sample_proportion": analysis["record_sample_proportion"],
        "comparisons_chosen": analysis["comparisons_chosen"],
        "candidates": analysis["candidates"],
        "rules_kept": [
            {"rule": r["blocking_rule"], "marginal": int(r["marginal_comparison_count"]),
             "cumulative": int(r["cumulative_comparison_count"])}
            for r in analysis["cumulative"]
        ],
        "training_rules": analysis.get("training", {}).get("rules", []),
    }  # fmt: skip


def blocking_chart(linker: Linker) -> dict[str, Any] | None:
    """Splink's cumulative-comparisons chart of the chosen rules (Vega-Lite dict), or None."""
    analysis = blocking_analysis(linker)
    if not analysis or not analysis["cumulative"]:
        return None
    return CumulativeBlockingRuleComparisonsGeneratedChart(analysis["cumulative"]).chart_dict


def train(linker: Linker, seed: int, max_pairs_u: float = 2e6) -> dict:
    """Random-match probability (deterministic rules), u (random sampling), m (EM, 3 rules).

    A step that cannot run on the data (too few records or pairs, e.g. a tiny extract) is
    skipped and counted in `training_steps_skipped`; parameters it would have estimated keep
    Splink's defaults."""
    skipped: list[str] = []

    def step(name: str, func: Any, *args: Any, **kwargs: Any) -> None:
        training_step(skipped, name, func, *args, **kwargs)

    t = linker.training
    step(
        "probability_two_random_records_match",
        t.estimate_probability_two_random_records_match,
        [block_on("nhs_token"), block_on("dob_token", "first_name_bf", "surname_bf")],
        recall=DETERMINISTIC_RECALL,
    )
    prior = _prior(linker)
    step("u", t.estimate_u_using_random_sampling, max_pairs=max_pairs_u, seed=seed)
    exact = exact_u.apply_exact_u(linker)  # the equality levels' u without sampling noise
    analysis = blocking_analysis(linker)
    if analysis is not None:
        em_rules = [(r["name"], r["rule"]) for r in analysis["training"]["rules"]]
    else:
        em_rules = [(c.name, c.variants[0][0]) for c in TRAINING_CANDIDATES]
    dob_rule = dict(em_rules).get("em_dob")
    sdf = _SOURCES.get(linker)
    name_u, name_em = ({}, {"ran": False})
    if sdf is not None:
        name_u, name_em = name_weights.name_u_from_dob_block(linker, sdf, comparisons(), dob_rule)
    if len(name_u) < 2:  # the dob block could not estimate the names: strong-id non-matches
        fallback = name_u_probabilities(_input_frame(linker)) or {}
        name_u = {**fallback, **name_u}
    if name_u:
        name_weights.set_name_u(linker, name_u)
    else:
        skipped.append("name_u")
    for name, rule in em_rules:
        step(name, t.estimate_parameters_using_expectation_maximisation, rule,
             estimate_without_term_frequencies=True)  # fmt: skip
    if name_u:  # EM re-populates u from the trained values: set them again
        name_weights.set_name_u(linker, name_u)
        name_weights.monotone_name_weights(linker)
    # the random-match probability comes from the deterministic rules; EM within a blocking
    # rule must not move it
    linker._settings_obj._probability_two_random_records_match = prior
    out: dict[str, Any] = {
        "probability_two_random_records_match": _prior(linker),
        "training_steps_skipped": skipped,
        "name_u_em": name_em,
        "u_exact_levels": sorted(exact),
    }
    if analysis is not None:
        out["blocking"] = blocking_figures(analysis)
    return out


def _input_frame(linker: Linker) -> pd.DataFrame:
    """The model input the linker was built on, read back from its DuckDB table."""
    table = linker._input_tables_dict
    name = next(iter(table.values())).physical_name
    cols = ", ".join(["unique_id", "dob_token", "dob_swap_token", "nhs_token", "upn_token",
                      "first_name_bf", "surname_bf"])  # fmt: skip
    return linker._db_api._execute_sql_against_backend(f"SELECT {cols} FROM {name}").df()


def _prior(linker: Linker) -> float:
    return float(linker._settings_obj._probability_two_random_records_match)
