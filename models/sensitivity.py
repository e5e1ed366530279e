"""Sensitivity of the risk scores to linkage: the same population linked at two thresholds,
scored with the same registered model, and compared with each other and with the published
scores.  Writes `outputs_dir/linkage_sensitivity.json` (figures only: no ids, no tokens).
"Published" = `scores.current` in the hub's warehouse (what `publish` snapshots) with the linkage
now in the hub's `linked.records`; its linkage threshold and mode come from the linkage unit's
hand-off quality figures in the hub's inbox (else the linkage unit's last successful link run).

Owns the comparison (`compare_scores`, `compare_records`) and the definition of "the same child"
across linkages.  Child ids are not comparable across linkages (a full re-link keeps ids stable
only where it can), so a child is identified by its **primary record**: the smallest record key
(`agency:record_token`) among its records, the same key the clustering labels a component by.
Two children in different linkages are *the same child* when they have the same primary record;
this matching is one-to-one and symmetric (it is equivalent to "each holds the other's primary
record").  When a looser threshold merges two children, the merged child is the same as the one
that held the smaller primary record; the other is counted as leaving.

Never touches the real stores (contract v2: the linkage unit's store holds the people encodings,
the hub's warehouse the attributes and events): both DuckDB files (and their WALs, if any) are
copied to a temporary home; at each threshold the linkage unit's copy is re-linked in full mode
(`linkage.link.run`, which hands its mapping off through `linkage.handoff` to the temporary
home's inbox), the hub's copy assembles its linked tables from that mapping
(`warehouse.assemble.read_mapping` / `build_linked`), features are rebuilt there
(`models.features.build`) for the model's test months and the scoring as-of, and scored with the
current registered model (`models.registry.load_current`; no re-training).  The truth folder, when
present (synthetic data), is linked read-only into the temporary home so each linkage's
precision / recall against truth can be reported.

Imports `joinedup`, `warehouse`, `linkage.link`, `linkage.handoff`, `linkage.model`, `models.*`.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from joinedup.config import Settings
from warehouse.db import connect

OUTPUT_FILE = "linkage_sensitivity.json"
#: stricter and looser than the linkage model's THRESHOLD (0.95, match weight 4.25 bits):
#: 0.99 (6.63 bits) and 0.8 (2.0 bits) are about 2.4 bits either side, i.e. evidence about
#: 5x stronger / weaker in odds; both are above the review band (0.5), below which no pair is
#: kept, so a threshold there could not change anything
DEFAULT_THRESHOLDS: tuple[float, float] = (0.8, 0.99)


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ------------------------------------------------------------------ the stores' copy
def _copy_store(src: Path, dest: Path) -> None:
    """Byte copy of a DuckDB file and its WAL, if any."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    wal = src.with_name(src.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, dest.with_name(dest.name + ".wal"))


def copy_home(settings: Settings, dest: Path) -> Settings:
    """Hub settings of a fresh home under `dest` holding byte copies of the hub's warehouse and
    the linkage unit's store (and WALs) and, read-only, the truth folder.  The real home is only
    read.  `copy.for_unit("linkage")` names the linkage unit's copy."""
    home = dest / "home"
    copy = dataclasses.replace(settings, home=home, unit="hub")
    real = {unit: settings.for_unit(unit) for unit in ("hub", "linkage")}
    for unit, s in real.items():
        if not s.warehouse_path.exists():
            what = "warehouse" if unit == "hub" else "linkage unit's store"
            raise FileNotFoundError(f"no {what} at {s.warehouse_path}: run the pipeline first")
    for unit, s in real.items():
        c = copy.for_unit(unit)
        c.ensure_dirs()
        _copy_store(s.warehouse_path, c.warehouse_path)
    if settings.truth_dir.is_dir():
        copy.truth_dir.rmdir()
        copy.truth_dir.symlink_to(settings.truth_dir.resolve(), target_is_directory=True)
    return copy


def relink(copy: Settings, threshold: float, run_id: str, seed: int) -> dict:
    """Re-link the linkage unit's copy in full mode at `threshold` (its hand-off goes to the
    copy's inbox) and assemble the hub's copy from that mapping.  Returns the link figures."""
    from linkage import link
    from linkage.handoff import MAPPING_FILE
    from warehouse.assemble import build_linked, read_mapping

    figs = link.run(copy.for_unit("linkage"), mode="full", threshold=threshold, report=False,
                    run_id=run_id, seed=seed)  # fmt: skip
    mapping = read_mapping(copy.handoff_inbox / MAPPING_FILE)
    with connect(copy) as con:
        build_linked(con, copy, mapping)
    return figs


def _records(con) -> pd.DataFrame:
    """`(child_id, key)` for every linked record; key = `agency:record_token`."""
    return con.execute(
        "SELECT child_id, agency || ':' || record_token AS key FROM linked.records "
        "WHERE child_id IS NOT NULL"
    ).df()


def primary_records(records: pd.DataFrame) -> pd.Series:
    """child_id -> its primary record (the smallest record key)."""
    return records.groupby("child_id")["key"].min()


# ------------------------------------------------------------------ comparisons
def compare_records(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """How the children of linkage `a` and linkage `b` (each `(child_id, key)` over the same
    records) differ: identical record sets, children merged / split, records in changed
    children."""
    m = a.merge(b, on="key", suffixes=("_a", "_b"))
    n_b_per_a = m.groupby("child_id_a")["child_id_b"].nunique()
    n_a_per_b = m.groupby("child_id_b")["child_id_a"].nunique()
    # a child is unchanged when it maps onto exactly one child that maps back onto it alone
    pairs = m[["child_id_a", "child_id_b"]].drop_duplicates()
    pairs = pairs[
        pairs["child_id_a"].map(n_b_per_a).eq(1) & pairs["child_id_b"].map(n_a_per_b).eq(1)
    ]
    changed_a = ~m["child_id_a"].isin(pairs["child_id_a"])
    return {
        "records_compared": int(len(m)),
        "records_only_in_one_linkage": int(len(a) + len(b) - 2 * len(m)),
        "children_a": int(a["child_id"].nunique()),
        "children_b": int(b["child_id"].nunique()),
        "children_with_identical_records": int(len(pairs)),
        "children_a_split_across_several_children_b": int((n_b_per_a > 1).sum()),
        "children_b_merging_several_children_a": int((n_a_per_b > 1).sum()),
        "records_in_children_that_changed": int(changed_a.sum()),
    }


def _ranked(scores: pd.DataFrame, primary: pd.Series) -> pd.DataFrame:
    """Scores with the primary record and the rank within each as-of (score descending, ties
    broken by primary record)."""
    s = scores.copy()
    s["primary"] = s["child_id"].map(primary)
    s = s.dropna(subset=["primary"])  # a child with no linked record cannot be matched
    s = s.sort_values(["as_of", "score", "primary"], ascending=[True, False, True])
    s["rank"] = s.groupby("as_of").cumcount() + 1
    return s


def compare_scores(
    a: pd.DataFrame,
    b: pd.DataFrame,
    rec_a: pd.DataFrame,
    rec_b: pd.DataFrame,
    k: int,
) -> dict:
    """Top-k overlap, children entering / leaving the top k, and Spearman rank correlation of
    the scores of matched children, per as-of month present in both `a` and `b`.

    `a`, `b`: `(child_id, as_of, score)`; `rec_a`, `rec_b`: `(child_id, key)` of their
    linkages.  Matching is by primary record (module docstring)."""
    pa, pb = primary_records(rec_a), primary_records(rec_b)
    ra, rb = _ranked(a, pa), _ranked(b, pb)
    # record-set signature, to say whether a child leaving the top k had its records changed
    sig_a = rec_a.sort_values("key").groupby("child_id")["key"].agg("|".join)
    sig_b = rec_b.sort_values("key").groupby("child_id")["key"].agg("|".join)
    ra["records"] = ra["child_id"].map(sig_a)
    rb["records"] = rb["child_id"].map(sig_b)
    per: list[dict] = []
    for as_of in sorted(set(ra["as_of"]) & set(rb["as_of"])):
        xa, xb = ra[ra["as_of"] == as_of], rb[rb["as_of"] == as_of]
        m = xa.merge(xb, on="primary", suffixes=("_a", "_b"))
        top_a, top_b = xa[xa["rank"] <= k], xb[xb["rank"] <= k]
        both = m[(m["rank_a"] <= k) & (m["rank_b"] <= k)]
        leaving = top_a[~top_a["primary"].isin(both["primary"])]
        entering = top_b[~top_b["primary"].isin(both["primary"])]
        same_records = set(m.loc[m["records_a"] == m["records_b"], "primary"])
        rho = spearmanr(m["score_a"], m["score_b"]).statistic if len(m) > 2 else float("nan")
        per.append(
            {
                "as_of": str(pd.Timestamp(as_of).date()),
                "children_scored_without_linked_records": int(
                    (a["as_of"] == as_of).sum() - len(xa) + (b["as_of"] == as_of).sum() - len(xb)
                ),
                "children_scored_a": int(len(xa)),
                "children_scored_b": int(len(xb)),
                "children_matched": int(len(m)),
                "top_k_a": int(len(top_a)),
                "top_k_b": int(len(top_b)),
                "top_k_overlap": int(len(both)),
                "top_k_overlap_share": round(len(both) / max(1, len(top_a)), 4),
                "leaving_top_k": int(len(leaving)),
                "leaving_with_records_changed": int((~leaving["primary"].isin(same_records)).sum()),
                "leaving_displaced_with_records_unchanged": int(
                    leaving["primary"].isin(same_records).sum()
                ),
                "entering_top_k": int(len(entering)),
                "entering_with_records_changed": int(
                    (~entering["primary"].isin(same_records)).sum()
                ),
                "spearman_rank_correlation_matched": None
                if np.isnan(rho)
                else round(float(rho), 5),
            }
        )
    rhos = [p["spearman_rank_correlation_matched"] for p in per]
    rhos = [r for r in rhos if r is not None]
    return {
        "k": k,
        "as_of_months": len(per),
        "top_k_overlap_mean_share": round(
            float(np.mean([p["top_k_overlap_share"] for p in per])), 4
        )
        if per
        else None,
        "top_k_overlap_min": min((p["top_k_overlap"] for p in per), default=None),
        "leaving_top_k_total": sum(p["leaving_top_k"] for p in per),
        "entering_top_k_total": sum(p["entering_top_k"] for p in per),
        "spearman_rank_correlation_min": round(min(rhos), 5) if rhos else None,
        "spearman_rank_correlation_median": round(float(np.median(rhos)), 5) if rhos else None,
        "per_as_of": per,
    }


def _capacity_figures(scored: pd.DataFrame, primary: pd.Series, k: int) -> dict | None:
    """Precision and recall of the top k per labelled as-of month (outcomes as linked at this
    threshold), pooled over the months."""
    lab = scored.dropna(subset=["label"])
    if lab.empty:
        return None
    r = _ranked(lab, primary)
    top = r[r["rank"] <= k]
    pos = float(r["label"].sum())
    return {
        "labelled_as_of_months": int(r["as_of"].nunique()),
        "rows": int(len(r)),
        "positives": int(pos),
        "precision_at_capacity": round(float(top["label"].mean()), 4) if len(top) else None,
        "recall_at_capacity": round(float(top["label"].sum()) / pos, 4) if pos else None,
    }


# ------------------------------------------------------------------ one linkage
def _months(settings: Settings, meta: dict, which: str) -> tuple[list[date], list[bool]]:
    """As-of dates to score: the model's test months (labelled) and the scoring as-of."""
    scoring = date.fromisoformat(settings.extract_date)
    if which == "scoring":
        return [scoring], [False]
    if which != "test":
        raise ValueError(f"months must be 'test' or 'scoring' (got {which!r})")
    first, last = (meta.get("training_window") or {}).get("test") or [None, None]
    if not first:
        return [scoring], [False]
    test = pd.date_range(first, last, freq="MS").date.tolist()
    return [*test, scoring], [True] * len(test) + [False]


def _score_linkage(copy: Settings, bundle: dict, meta: dict, dates, labelled) -> pd.DataFrame:
    """Rebuild features for `dates` in the copy and score them with the registered model."""
    from models import features
    from models.score import check_model

    with connect(copy) as con:
        features.build(con, dates, labelled)
        cols = [r[0] for r in con.execute("DESCRIBE features.child_month").fetchall()]
        check_model(bundle, meta, cols)
        feats = bundle["features"]
        rows = con.execute(
            f"SELECT child_id, as_of, label, {', '.join(feats)} FROM features.child_month "
            "ORDER BY as_of, child_id"
        ).df()
    X = rows[feats].to_numpy(dtype=np.float64)
    out = rows[["child_id", "as_of", "label"]].copy()
    out["as_of"] = pd.to_datetime(out["as_of"])
    out["score"] = bundle["model"].predict_proba(X)[:, 1] if len(rows) else []
    return out


def _linkage_described(settings: Settings, copy: Settings) -> dict:
    """What is known of the linkage behind the hub's linked tables: the linkage unit's hand-off
    quality figures in the hub's inbox (read only), else the last successful link run recorded
    in the copy of the linkage unit's store (taken before any re-link)."""
    from linkage.handoff import QUALITY_FILE

    figures: dict | None = None
    quality = settings.handoff_inbox / QUALITY_FILE
    if quality.is_file():
        try:
            figures = json.loads(quality.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            figures = None
    if figures is None:
        linkage = copy.for_unit("linkage")
        if linkage.warehouse_path.exists():
            try:
                with connect(linkage) as con:
                    last = con.execute(
                        "SELECT figures FROM audit.stage_runs WHERE stage = 'link' "
                        "AND status = 'success' ORDER BY finished_at DESC LIMIT 1"
                    ).fetchall()
                if last and last[0][0]:
                    figures = json.loads(last[0][0])
            except duckdb.Error:  # no audit table: the linkage is not described
                figures = None
    if not figures:
        return {}
    return {"threshold": figures.get("threshold"), "mode": figures.get("mode"),
            "children": figures.get("children")}  # fmt: skip


def _published(con, info: dict) -> tuple[pd.DataFrame | None, dict]:
    """scores.current (the published scores) and what is known of the linkage behind them."""
    info = dict(info)
    try:
        s = con.execute("SELECT child_id, as_of, score, model_version FROM scores.current").df()
    except duckdb.Error:  # never scored
        return None, info
    if s.empty:
        return None, info
    info["model_version"] = str(s["model_version"].iloc[0])
    s["as_of"] = pd.to_datetime(s["as_of"])
    return s[["child_id", "as_of", "score"]], info


def _label(t: float) -> str:
    return f"threshold_{t:g}"


# ------------------------------------------------------------------ the command
def run(
    settings: Settings,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
    months: str = "test",
    version: str | None = None,
    workdir: Path | None = None,
    keep_workdir: bool = False,
    write: bool = True,
    **_: object,
) -> dict:
    """Re-link a copy of the linkage unit's store at each threshold (full mode), assemble a
    copy of the hub from each resulting mapping, rebuild features, score with the current
    registered model and compare; write `outputs/linkage_sensitivity.json`.

    `months`: "test" (the model's test months, labelled, plus the scoring as-of; default) or
    "scoring" (the scoring as-of only).  `version`: a registered model version instead of the
    current (promoted) one; it may be unpromoted, since nothing here is published."""
    from linkage import model as linkage_model
    from models.registry import is_promoted, load_current

    t0 = time.perf_counter()
    settings = settings.for_unit("hub")  # a hub report: the hub's registry and outputs
    ths = tuple(float(t) for t in thresholds)
    if len(ths) != 2:
        raise ValueError(f"give two thresholds (got {len(ths)})")
    for t in ths:
        if not linkage_model.REVIEW_BAND <= t < 1:
            raise ValueError(
                f"threshold {t} outside [{linkage_model.REVIEW_BAND}, 1): pairs below the review "
                "band are not kept, so they cannot change the linkage"
            )
    bundle, meta = load_current(settings, version, allow_unpromoted=version is not None)
    k = settings.capacity_per_month
    dates, labelled = _months(settings, meta, months)
    tmp = Path(tempfile.mkdtemp(prefix="joinedup-sensitivity-", dir=workdir))
    linkages: dict[str, dict] = {}
    scored: dict[str, pd.DataFrame] = {}
    records: dict[str, pd.DataFrame] = {}
    try:
        copy = copy_home(settings, tmp)
        described = _linkage_described(settings, copy)
        with connect(copy) as con:
            published, published_info = _published(con, described)
            if published is not None:
                published_info["same_model_as_rescoring"] = published_info[
                    "model_version"
                ] == meta.get("version")
            records["published"] = _records(con)
        stricter_first = sorted(ths, reverse=True)
        names = [_label(t) for t in stricter_first]
        if names[0] == names[1]:  # the same threshold twice: two independent re-links
            names = [f"{names[0]}_run1", f"{names[0]}_run2"]
        for name, t in zip(names, stricter_first, strict=True):
            t1 = time.perf_counter()
            figs = relink(copy, t, name, settings.seed)
            t_link = time.perf_counter() - t1
            with connect(copy) as con:
                records[name] = _records(con)
            t1 = time.perf_counter()
            scored[name] = _score_linkage(copy, bundle, meta, dates, labelled)
            truth = figs.get("truth") or {}
            linkages[name] = {
                "threshold": t,
                "children": figs.get("children"),
                "pairs_above_threshold": figs.get("pairs_above_threshold"),
                "linkage_precision_vs_truth": truth.get("precision"),
                "linkage_recall_vs_truth": truth.get("recall"),
                "linkage_f1_vs_truth": truth.get("f1"),
                "twin_false_merges": truth.get("twin_false_merges"),
                "link_seconds": round(t_link, 2),
                "features_and_score_seconds": round(time.perf_counter() - t1, 2),
                "capacity_on_test_months": _capacity_figures(
                    scored[name], primary_records(records[name]), k
                ),
            }
    finally:
        if not keep_workdir:
            shutil.rmtree(tmp, ignore_errors=True)

    comparisons: dict[str, dict] = {}
    record_changes: dict[str, dict] = {}
    pairs = [(names[0], names[1])]
    if published is not None:
        pairs += [("published", n) for n in names]
        scored["published"] = published
    for a, b in pairs:
        key = f"{a}_vs_{b}"
        cols = ["child_id", "as_of", "score"]
        comparisons[key] = compare_scores(
            scored[a][cols], scored[b][cols],
            records[a], records[b], k,
        )  # fmt: skip
        record_changes[key] = compare_records(records[a], records[b])

    summary: dict = {}
    for key, cmp in comparisons.items():
        summary[f"{key}: top_k_overlap_mean_share"] = cmp["top_k_overlap_mean_share"]
        summary[f"{key}: spearman_min"] = cmp["spearman_rank_correlation_min"]
    for key, rc in record_changes.items():
        summary[f"{key}: children_with_changed_records"] = (
            rc["children_a"] - rc["children_with_identical_records"]
        )
    result = {
        "summary": summary,
        "what": "the same population linked at two thresholds and scored with the same "
        "registered model (no re-training); top-k = the k highest scores per as-of month",
        "same_child_definition": "children in two linkages are the same child when their "
        "primary record (the smallest agency:record_token key among their records) is the "
        "same; one-to-one. A child whose records changed can still match; a child merged into "
        "another with a smaller primary record counts as leaving",
        "model_version": meta.get("version"),
        "model_kind": meta.get("model_kind"),
        "model_promoted": is_promoted(settings, meta["version"]),
        "k_capacity_per_month": k,
        "as_of_months_scored": [str(d) for d in dates],
        "thresholds": {
            "stricter": max(ths),
            "looser": min(ths),
            "linkage_model_default": linkage_model.THRESHOLD,
            "review_band": linkage_model.REVIEW_BAND,
        },
        "published_scores": published_info if published is not None else None,
        "linkage_at_threshold": linkages,
        "record_changes_between_linkages": record_changes,
        "score_comparisons": comparisons,
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_mib": _peak_rss_mib(),
    }
    if write:
        settings.outputs_dir.mkdir(parents=True, exist_ok=True)
        out = settings.outputs_dir / OUTPUT_FILE
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        result["output"] = str(out)
    return result
