"""Evaluation on any labelled people data: our privacy-preserving path vs plain Splink.

Owns the core of `joinedup linkage evaluate`: read raw people CSVs (the data contract's raw
format plus a truth column) or a FEBRL data set (`linkage.febrl`), then, each in its own
`multiprocessing` "spawn" child so wall time and peak memory (`ru_maxrss`) are measured
separately:

* **ours**: a throwaway key in a temp dir, the agency-side `pseudonymiser.pseudonymise.pseudonymise_files` on the raw
  files, then exactly what stage `link` does: `linkage.link.score` (Splink on the encodings) and
  `linkage.clustering.guarded_clusters` at the threshold.  Staging is skipped: every record is
  linked, none is quarantined;
* **plain**: `linkage.plain.run_plain` on the plaintext fields.

Quality is `linkage.evaluate.pairwise` and `.clusters` against the truth column.  The result is
one dict of figures (no identifiers, names, tokens or encodings); nothing is written outside the
temp dir, which is removed.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from joinedup import contract
from linkage import evaluate, model

#: raw columns a labelled file must have; the others of the contract are optional (empty if absent)
REQUIRED_COLUMNS: tuple[str, ...] = ("source_id", "first_name", "surname", "dob", "sex", "postcode")
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(
    c for c in contract.RAW_PEOPLE_COLUMNS if c not in REQUIRED_COLUMNS
)
#: our pairwise F1 must be at least this share of plain Splink's
TARGET_F1_RATIO = 0.99

Source = tuple[str, pd.DataFrame]  # (file label, raw people rows + truth column)


# ---------------------------------------------------------------- input
def read_people_file(path: str | Path, truth_column: str) -> pd.DataFrame:
    """One raw people CSV with a truth column -> frame of strings; ValueError naming the file
    (and column) if unreadable, or lacking the truth column or a required raw column."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            header = [h.strip() for h in next(csv.reader(f), [])]
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig"
        )
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: cannot read people file ({type(exc).__name__})") from None
    df.columns = header if len(header) == len(df.columns) else [c.strip() for c in df.columns]
    if truth_column not in df.columns:
        raise ValueError(f"{path}: no truth column {truth_column!r}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: lacks raw people column(s) {', '.join(map(repr, missing))}")
    return df


def _conform(label: str, df: pd.DataFrame, truth_column: str) -> pd.DataFrame:
    """Raw contract columns (optional ones filled empty) + `_truth`; checks ids and truth."""
    out = df.reset_index(drop=True).copy()
    for col in OPTIONAL_COLUMNS:
        if col not in out.columns:
            out[col] = ""
    out = out[[*contract.RAW_PEOPLE_COLUMNS]].astype(object).fillna("").astype(str)
    truth = df[truth_column].reset_index(drop=True).astype(object)
    if truth.isna().any() or (truth.astype(str).str.strip() == "").any():
        raise ValueError(f"{label}: truth column {truth_column!r} has empty values")
    ids = out["source_id"].str.strip()
    if (ids == "").any():
        raise ValueError(f"{label}: column 'source_id' has empty values")
    if ids.duplicated().any():
        raise ValueError(f"{label}: column 'source_id' is not unique")
    out["_truth"] = truth.astype(str).str.strip().values
    return out


def assign_agencies(labels: Sequence[str]) -> list[str]:
    """An agency per file: the one in a contract file name (`health_people.csv`), else the next
    unused agency of `contract.AGENCIES` in order (agency is only a label for linkage)."""
    named: list[str | None] = []
    for label in labels:
        try:
            agency, kind = contract.parse_file_name(Path(label).name)
            named.append(agency if kind == "people" else None)
        except ValueError:
            named.append(None)
    taken = [a for a in named if a]
    if len(set(taken)) != len(taken):
        raise ValueError("two people files name the same agency")
    free = [a for a in contract.AGENCIES if a not in taken]
    if sum(a is None for a in named) > len(free):
        raise ValueError(f"at most {len(contract.AGENCIES)} people files (one per agency)")
    return [a if a else free.pop(0) for a in named]


# ---------------------------------------------------------------- the two paths (child side)
def _quiet() -> None:
    logging.getLogger("splink").setLevel(logging.ERROR)


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _count_comparisons(df: pd.DataFrame) -> int:
    """Pairs our prediction blocking rules generate over the model input (exact count)."""
    import duckdb
    from splink import DuckDBAPI
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    con = duckdb.connect(":memory:")
    try:
        cols = sorted({c for c in df.columns if c != "agency"})
        sdf = DuckDBAPI(connection=con).register(df[cols], dataset_display_name="count_in")
        recs = count_comparisons_from_blocking_rules(
            sdf,
            blocking_rules=model.prediction_rules(),
            link_type="dedupe_only",
            record_sample_proportion=1.0,
        )
        return int(recs[-1]["cumulative_comparison_count"])
    finally:
        con.close()


#: key of the diagnostic clustering of our scores without the twin/conflict guard
WITHOUT_GUARD = "without_guard"


def _components(nodes: pd.DataFrame, pairs: pd.DataFrame, threshold: float) -> pd.Series:
    """Plain connected components of `pairs` at `threshold` (diagnostic: our scores without
    the guard) -> cluster id by unique id."""
    import duckdb
    from splink import DuckDBAPI
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    con = duckdb.connect(":memory:")
    try:
        out = cluster_pairwise_predictions_at_threshold(
            nodes,
            pairs[["unique_id_l", "unique_id_r", "match_probability"]],
            db_api=DuckDBAPI(connection=con),
            node_id_column_name="unique_id",
            threshold_match_probability=threshold,
        ).as_pandas_dataframe()
    finally:
        con.close()
    return out.set_index("unique_id")["cluster_id"]


def run_ours(
    sources: list[tuple[str, pd.DataFrame]],
    seed: int,
    threshold: float,
    review_band: float,
    strong_ids: Sequence[str] = ("nhs_token", "upn_token"),
) -> tuple[list[str], dict]:
    """Our path on [(agency, raw rows)]: pseudonymise with a throwaway key, score, cluster.
    Returns (cluster id per input row, in order, and figures)."""
    from linkage import clustering, link
    from pseudonymiser import keys
    from pseudonymiser.pseudonymise import pseudonymise_files

    _quiet()
    started = time.perf_counter()
    steps: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="joinedup-eval-") as tmp:
        home = Path(tmp)
        source, dest = home / "raw", home / "pseudonymised"
        source.mkdir()
        t = time.perf_counter()
        for agency, raw in sources:
            raw[list(contract.RAW_PEOPLE_COLUMNS)].to_csv(
                source / contract.file_name(agency, "people"), index=False
            )
        key_file = keys.generate_key(home / "throwaway.key")
        pseudonymise_files(key_file, source, dest=dest, dest_linkage=dest)
        people = pd.concat(
            [
                pd.read_csv(
                    dest / contract.file_name(agency, "people"),
                    dtype=str,
                    keep_default_na=False,
                    na_filter=False,
                )
                for agency, _ in sources
            ],
            ignore_index=True,
        )
        steps["pseudonymise"] = round(time.perf_counter() - t, 2)
    df, scored, model_figures, _charts, score_steps = link.score(people, seed, review_band)
    steps.update(score_steps)
    t = time.perf_counter()
    nodes = df[["unique_id", *clustering.GUARD_COLUMNS, *clustering.NAME_COLUMNS]]
    clusters = clustering.guarded_clusters(nodes, scored, threshold, strong_ids)
    steps["cluster"] = round(time.perf_counter() - t, 2)
    seconds_total = round(time.perf_counter() - started, 2)
    peak = _peak_rss_mb()
    unguarded = _components(df[["unique_id"]], scored, threshold)
    above = scored[scored["match_probability"] >= threshold]
    ids = clusters.set_index("unique_id")["cluster_id"].astype(str)
    per_row = df["unique_id"].map(ids)
    if per_row.isna().any():
        raise RuntimeError("a record is missing from the clusters")
    figures = {
        "records": int(len(df)),
        "comparisons": _count_comparisons(df),
        "pairs_scored": int(len(scored)),
        "pairs_above_threshold": int(len(above)),
        "guard_edges_dropped": int(clustering.conflict_mask(above, nodes, strong_ids).sum()),
        "twin_edges_dropped": int(
            clustering.twin_signature(above, nodes, clustering.TWIN_DICE_DROP).sum()
        ),
        "guard_records_reclustered": int(clusters["guard_split"].sum()),
        **model_figures,
        "seconds": steps,
        "seconds_total": seconds_total,
        "peak_rss_mb": peak,
        WITHOUT_GUARD: df["unique_id"].map(unguarded).astype(str).tolist(),
    }
    return per_row.tolist(), figures


def run_plain_path(
    sources: list[tuple[str, pd.DataFrame]],
    seed: int,
    threshold: float,
    review_band: float,
    strong_ids: Sequence[str] = (),
) -> tuple[list[str], dict]:
    """Plain Splink on the plaintext of [(agency, raw rows)]; same return shape as `run_ours`."""
    from linkage import plain

    _quiet()
    started = time.perf_counter()
    frames = []
    for agency, raw in sources:
        f = raw[list(contract.RAW_PEOPLE_COLUMNS)].copy()
        f["unique_id"] = agency + ":" + f["source_id"].str.strip()
        frames.append(f)
    raw_all = pd.concat(frames, ignore_index=True)
    clusters, _pairs, figures = plain.run_plain(raw_all, seed, threshold, review_band)
    seconds_total = round(time.perf_counter() - started, 2)
    peak = _peak_rss_mb()
    per_row = raw_all["unique_id"].map(clusters.set_index("unique_id")["cluster_id"])
    if per_row.isna().any():
        raise RuntimeError("a record is missing from the clusters")
    figures = {**figures, "seconds_total": seconds_total, "peak_rss_mb": peak}
    return per_row.astype(str).tolist(), figures


def _run(func, isolate: bool, *args):
    """`func(*args)` in a fresh spawn child (own peak memory) or, if not `isolate`, here."""
    if not isolate:
        return func(*args)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(func, *args).result()


# ---------------------------------------------------------------- evaluation
def _quality(truth: pd.Series, cluster_ids: list[str]) -> dict:
    records = pd.DataFrame({"child_id": cluster_ids, "person_id": truth.values}).astype(str)
    return {**evaluate.pairwise(records), **evaluate.clusters(records)}


def evaluate_sources(
    sources: Sequence[Source],
    truth_column: str,
    seed: int = 42,
    threshold: float = model.THRESHOLD,
    review_band: float = model.REVIEW_BAND,
    isolate: bool = True,
    dataset: str | None = None,
    description: str | None = None,
    verified_ids: bool = True,
) -> dict:
    """Both paths on labelled raw people files [(label, frame)]; one dict of figures.

    With `isolate` (the default) each path runs in its own spawn child, so `peak_rss_mb` is
    that path's alone; without it both run in this process and peak memory is not reported.
    `verified_ids`: whether the NHS / UPN columns hold verified identifiers, which our guard
    then never lets two different values join (plain Splink has no guard either way)."""
    if not sources:
        raise ValueError("no people files to evaluate")
    labels = [label for label, _ in sources]
    agencies = assign_agencies(labels)
    conformed = [
        (agency, _conform(label, df, truth_column))
        for agency, (label, df) in zip(agencies, sources, strict=True)
    ]
    truth = pd.concat([df["_truth"] for _, df in conformed], ignore_index=True)
    inputs = [(agency, df.drop(columns="_truth")) for agency, df in conformed]
    started = time.perf_counter()
    results = {}
    for name, func in (("ours", run_ours), ("plain", run_plain_path)):
        strong = ("nhs_token", "upn_token") if verified_ids else ()
        cluster_ids, figures = _run(func, isolate, inputs, seed, threshold, review_band, strong)
        if not isolate:
            figures.pop("peak_rss_mb", None)
        diagnostic = figures.pop(WITHOUT_GUARD, None)
        results[name] = {**_quality(truth, cluster_ids), **figures}
        if diagnostic is not None:  # what the guard costs or saves, on our own scores
            q = _quality(truth, diagnostic)
            results[name][WITHOUT_GUARD] = {k: q[k] for k in ("precision", "recall", "f1")}
    sizes = truth.value_counts()
    ours_f1, plain_f1 = results["ours"]["f1"], results["plain"]["f1"]
    ratio = round(ours_f1 / plain_f1, 5) if plain_f1 else None
    out: dict = {
        "dataset": dataset or "files",
        "linkage": description
        or (
            "deduplication of one file"
            if len(sources) == 1
            else f"{len(sources)} files as {len(sources)} agencies, union deduplicated"
        ),
        "files": [
            {"file": label, "agency": agency, "rows": int(len(df))}
            for (label, df), agency in zip(sources, agencies, strict=True)
        ],
        "truth_column": truth_column,
        "records": int(len(truth)),
        "persons": int(sizes.size),
        "true_pairs": int((sizes * (sizes - 1) // 2).sum()),
        "seed": seed,
        "threshold": threshold,
        "review_band": review_band,
        "measured_in_separate_processes": isolate,
        "ids_treated_as_verified": bool(verified_ids),
        "ours": results["ours"],
        "plain": results["plain"],
        "f1_ratio_ours_to_plain": ratio,
        "target_f1_ratio": TARGET_F1_RATIO,
        "meets_target": bool(ratio is not None and ratio >= TARGET_F1_RATIO),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return out


def evaluate_files(paths: Sequence[str | Path], truth_column: str, **options) -> dict:
    """`evaluate_sources` on raw people CSVs (contract raw format + `truth_column`)."""
    if not paths:
        raise ValueError("give at least one people file (or --dataset)")
    sources = [(str(p), read_people_file(p, truth_column)) for p in paths]
    options.setdefault("dataset", "files")
    return evaluate_sources(sources, truth_column, **options)


def evaluate_dataset(name: str, soc_sec_id_as: str = "nhs_number", **options) -> dict:
    """`evaluate_sources` on a FEBRL data set (`febrl3` or `febrl4`); `soc_sec_id_as` says
    where FEBRL's soc_sec_id goes (`linkage.febrl.ID_MAPPINGS`).  FEBRL corrupts soc_sec_id in
    about 10% of duplicates and it has no check digit, so by default it is not a verified id
    (`verified_ids=False`): evidence in the match weight, not a guard."""
    options.setdefault("verified_ids", False)
    from linkage import febrl

    sources = febrl.load(name, soc_sec_id_as)
    out = evaluate_sources(
        sources, febrl.TRUTH_COLUMN, dataset=name, description=febrl.description(name), **options
    )
    out["soc_sec_id_as"] = soc_sec_id_as
    return out


def synth_sources(
    agency_dir: Path, truth_dir: Path, truth_column: str = "person_id"
) -> list[Source]:
    """Labelled sources from a `synth.generate.run` county: each agency's raw people file with
    the true `person_id` from `truth_dir/people_<agency>.parquet` (joined on row number)."""
    out: list[Source] = []
    for agency in contract.AGENCIES:
        path = agency_dir / contract.file_name(agency, "people")
        truth_path = truth_dir / f"people_{agency}.parquet"
        if not path.is_file() or not truth_path.is_file():
            continue
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
        t = pd.read_parquet(truth_path, columns=["row_number", "person_id"])
        by_row = t.set_index(t["row_number"].astype("int64"))["person_id"]
        raw[truth_column] = by_row.reindex(range(1, len(raw) + 1)).to_numpy()
        out.append((path.name, raw))
    if not out:
        raise ValueError(f"no synthetic people files with truth in {agency_dir}")
    return out
