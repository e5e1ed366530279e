"""Stage `link` (linkage unit): Splink over the encoded staged records -> one child per person.

Runs in the linkage unit's own store (`settings.for_unit("linkage")`), which holds identifier
encodings and never an event.  Reads `staging.current_people` and the review decisions; then

* mode `full`: trains and predicts with Splink in a private in-memory DuckDB (`linkage.model`)
  and saves the trained model (`linkage.incremental`);
* mode `incremental`: scores, with the saved model, only pairs touching a new or changed record
  and re-clusters only the affected components (`linkage.incremental`);
* mode `auto` (default): incremental when possible, else full (figures say which ran and why).

Clusters with the twin guard (`linkage.clustering`) and the reviewers' decisions as must-link /
cannot-link constraints (`linkage.review`), keeps child ids stable, and records every id change
with its cause (`id_history`). Replaces `linked.records`, `linked.pairs` and
`linked.review_queue` and appends to `linked.child_id_history`, all in one transaction. Writes
`outputs/linkage/metrics.json` and `report.html` (with truth figures on synthetic data), then the
hand-off to the hub (`linkage.handoff`: record token -> child id, aggregate quality figures and
the review queue without tokens).  Every run first imports the decisions files the dashboard
sent (`linkage.review_import`, from `settings.review_decisions_inbox`), so they apply in it.
"""

from __future__ import annotations

import datetime as dt
import logging
import resource
import time
import uuid

import duckdb
import numpy as np
import pandas as pd

from joinedup.config import Settings
from linkage import (
    clustering,
    evaluate,
    handoff,
    incremental,
    model,
    report,
    review,
    review_import,
    truth,
)
from linkage.errors import LinkageError
from warehouse.db import connect

log = logging.getLogger(__name__)

RECORD_COLUMNS = ["agency", "record_token", "child_id", "load_id", "row_number",
                  "match_probability_max"]  # fmt: skip
PAIR_COLUMNS = ["record_token_l", "agency_l", "record_token_r", "agency_r", "match_weight",
                "match_probability"]  # fmt: skip


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    q = "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?"
    return bool(con.execute(q, [schema, name]).fetchall()[0][0])


def _previous(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    if not _table_exists(con, "linked", "records"):
        return None
    prev = con.execute("SELECT agency, record_token, child_id FROM linked.records").df()
    prev["unique_id"] = model.record_key(prev["agency"], prev["record_token"])
    return prev[["unique_id", "child_id"]]


def _split_key(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    parts = s.str.split(":", n=1)
    return parts.str[0], parts.str[1]


def _records(people: pd.DataFrame, ids: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    keys = model.record_key(people["agency"], people["record_token"])
    rec = people[["agency", "record_token", "load_id", "row_number"]].copy()
    rec["unique_id"] = keys.values
    rec = rec.merge(ids[["unique_id", "child_id"]], on="unique_id", how="left")
    best = pd.concat(
        [
            pairs[["unique_id_l", "match_probability"]].rename(
                columns={"unique_id_l": "unique_id"}
            ),
            pairs[["unique_id_r", "match_probability"]].rename(
                columns={"unique_id_r": "unique_id"}
            ),
        ]
    )
    best = best.groupby("unique_id")["match_probability"].max().rename("match_probability_max")
    rec = rec.merge(best, left_on="unique_id", right_index=True, how="left")
    return rec[RECORD_COLUMNS]


def _pairs_table(pairs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["agency_l"], out["record_token_l"] = _split_key(pairs["unique_id_l"])
    out["agency_r"], out["record_token_r"] = _split_key(pairs["unique_id_r"])
    out["match_weight"] = pairs["match_weight"].astype(float)
    out["match_probability"] = pairs["match_probability"].astype(float)
    return out[PAIR_COLUMNS]


#: the tables the link stage writes and checks with their committed suites
LINKED_TABLES = ["linked.records"]
HISTORY_COLUMNS = ["child_id", "event", "detail", "from_child_id", "n_records", "cause"]


def write_tables(
    con: duckdb.DuckDBPyConnection,
    records: pd.DataFrame,
    pairs: pd.DataFrame,
    history: list[tuple[str, str, str]] | pd.DataFrame,
    run_id: str,
    queue: pd.DataFrame | None = None,
    mode: str = "full",
    settings: Settings | None = None,
) -> dict:
    """Replace the linkage unit's linked tables (and the review queue, if given) and append id
    history, in one transaction.  With `settings`, the linked_records suite runs before COMMIT (a critical failure rolls everything back and raises
    `DownstreamCheckFailed`); returns their outcomes."""
    from expectations.downstream import checked_transaction

    if isinstance(history, pd.DataFrame):
        hist = history.reindex(columns=HISTORY_COLUMNS)
    else:
        hist = pd.DataFrame(history, columns=["child_id", "event", "detail"]).reindex(
            columns=HISTORY_COLUMNS
        )
    hist["n_records"] = hist["n_records"].astype("Int64")
    hist["run_id"] = run_id
    hist["mode"] = mode
    hist["at"] = pd.Timestamp(dt.datetime.now(dt.UTC).replace(tzinfo=None))
    con.register("_records", records)
    con.register("_pairs", pairs)
    con.register("_history", hist)
    if queue is not None:
        con.register("_queue", queue)
    try:
        with checked_transaction(con, settings, LINKED_TABLES, "link.before_commit") as checks:
            con.execute(
                "CREATE OR REPLACE TABLE linked.records AS SELECT agency, record_token, child_id, "
                "load_id, CAST(row_number AS BIGINT) AS row_number, "
                "CAST(match_probability_max AS DOUBLE) AS match_probability_max FROM _records "
                "ORDER BY agency, load_id, row_number"
            )
            con.execute(
                "CREATE OR REPLACE TABLE linked.pairs AS SELECT * FROM _pairs "
                "ORDER BY match_probability DESC, agency_l, record_token_l"
            )
            con.execute(
                'INSERT INTO linked.child_id_history (child_id, event, detail, run_id, "at", '
                "from_child_id, n_records, cause, mode) SELECT child_id, event, detail, run_id, "
                '"at", from_child_id, n_records, cause, mode FROM _history'
            )
            if queue is not None:
                con.execute("DELETE FROM linked.review_queue")
                cols = ", ".join(review.QUEUE_COLUMNS)
                con.execute(f"INSERT INTO linked.review_queue ({cols}) SELECT {cols} FROM _queue")
    finally:
        for name in ("_records", "_pairs", "_history", "_queue"):
            try:
                con.unregister(name)
            except Exception:  # not registered (no queue)
                pass
    return checks


# ---- id history ------------------------------------------------------------------------------


def id_history(
    previous: pd.DataFrame | None,
    current: pd.DataFrame,
    reasons: dict[str, str],
    fallback: str,
) -> pd.DataFrame:
    """History rows from the previous and current `(unique_id, child_id)`: one row per
    transition, so which old ids went to which new ids, how many records, and why.

    * `new`: a child none of whose records had an id (detail: records);
    * `merged`: an old id no longer used whose records went into this child;
    * `split`: records of an old id that went into a child with a fresh id;
    * `moved`: records of an old id (still used) that went into another existing child;
    * `retired`: an old id with no current record.
    `cause`: the reasons of the records involved (new / changed / withdrawn record, review
    accept / reject), else `fallback`."""
    rows: list[dict] = []
    prev = previous if previous is not None else pd.DataFrame(columns=["unique_id", "child_id"])
    old_ids = set(prev["child_id"].dropna())
    cur_ids = set(current["child_id"])
    m = current.merge(prev, on="unique_id", how="left", suffixes=("", "_old"))
    moves = (
        m.dropna(subset=["child_id_old"])
        .query("child_id != child_id_old")
        .groupby(["child_id", "child_id_old"])
        .size()
        .reset_index(name="n")
        .sort_values(["child_id", "child_id_old"])
    )
    had_old = set(m.dropna(subset=["child_id_old"])["child_id"])
    fresh = cur_ids - old_ids - had_old
    absorbed = set(moves["child_id_old"])
    retired = old_ids - cur_ids - absorbed
    # member lists only for the ids that appear in a history row
    want_new = set(moves["child_id"]) | fresh
    want_old = absorbed | retired
    members_new = (
        current[current["child_id"].isin(want_new)].groupby("child_id")["unique_id"].agg(list)
    ).to_dict()
    members_old = (
        prev[prev["child_id"].isin(want_old)].groupby("child_id")["unique_id"].agg(list)
    ).to_dict()

    def cause(*groups: list[str]) -> str:
        found = sorted({reasons[u] for g in groups for u in g if u in reasons})
        return ", ".join(found) if found else fallback

    for r in moves.itertuples(index=False):
        new, old, n = r.child_id, r.child_id_old, int(r.n)
        size = len(members_new[new])
        if new not in old_ids:
            event, detail = "split", f"{n} of {size} records came from {old}"
        elif old not in cur_ids:
            event, detail = "merged", f"absorbed {old} ({n} records)"
        else:
            event, detail = "moved", f"{n} records moved from {old}"
        rows.append({"child_id": new, "event": event, "detail": detail, "from_child_id": old,
                     "n_records": n, "cause": cause(members_new[new], members_old.get(old, []))})  # fmt: skip
    for new in sorted(fresh):
        n = len(members_new[new])
        rows.append({"child_id": new, "event": "new", "detail": f"new child ({n} records)",
                     "from_child_id": None, "n_records": n,
                     "cause": cause(members_new[new])})  # fmt: skip
    for old in sorted(retired):
        n = len(members_old[old])
        rows.append({"child_id": old, "event": "retired", "detail": "no current records",
                     "from_child_id": None, "n_records": n,
                     "cause": cause(members_old[old])})  # fmt: skip
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


# ---- scoring ---------------------------------------------------------------------------------


def pairs_frame(pred: object, df: pd.DataFrame) -> pd.DataFrame:
    """Splink's predictions as `(unique_id_l, unique_id_r, match_weight, match_probability)` by
    record key, `unique_id_l < unique_id_r`.  Splink names records by `model.SPLINK_ID` (a model
    saved before it existed, by the record key); `df` is the input frame, for the mapping."""
    p = pred.as_pandas_dataframe()  # type: ignore[attr-defined]
    sid = model.SPLINK_ID
    if f"{sid}_l" in p.columns:
        key = pd.Series(df["unique_id"].to_numpy(), index=df[sid].to_numpy())
        a = key.reindex(p[f"{sid}_l"].to_numpy()).to_numpy()
        b = key.reindex(p[f"{sid}_r"].to_numpy()).to_numpy()
        p = p.assign(unique_id_l=np.where(a < b, a, b), unique_id_r=np.where(a < b, b, a))
    return p[["unique_id_l", "unique_id_r", "match_weight", "match_probability"]]


def _score(
    people: pd.DataFrame,
    seed: int,
    review_band: float,
    save: tuple[Settings, str] | None = None,
) -> dict:
    """Full scoring: train and predict over all records; evidence for the review band; the
    model saved when `save=(settings, run_id)`."""
    steps: dict[str, float] = {}
    t = time.perf_counter()
    df = model.prepare_input(people)
    linker, con = model.build_linker(df)
    try:
        steps["prepare"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        figures = model.train(linker, seed=seed)
        steps["train"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        pred = linker.inference.predict(threshold_match_probability=review_band)
        pairs = pairs_frame(pred, df)
        steps["predict"] = round(time.perf_counter() - t, 2)
        charts = report.splink_charts(linker, pred)
        t = time.perf_counter()
        rules = [
            br.blocking_rule_sql
            for br in linker._settings_obj._blocking_rules_to_generate_predictions
        ]
        compared = incremental.count_compared(con, "people_in", rules)
        ev = review.evidence(linker, con, "people_in", review.band(pairs))
        steps["evidence"] = round(time.perf_counter() - t, 2)
        saved = None
        if save is not None:
            saved = incremental.save_model(save[0], linker, save[1], len(df))
    finally:
        con.close()
    return {"df": df, "pairs": pairs, "figures": figures, "charts": charts, "steps": steps,
            "evidence": ev, "pairs_compared": compared, "model_saved": saved}  # fmt: skip


def score(
    people: pd.DataFrame, seed: int, review_band: float
) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict[str, dict], dict]:
    """Train and predict. Returns (model input, scored pairs >= review band, model figures,
    Splink chart specs, step seconds)."""
    s = _score(people, seed, review_band)
    return s["df"], s["pairs"], s["figures"], s["charts"], s["steps"]


def _score_incremental(
    people: pd.DataFrame, new_keys: set[str], model_dict: dict, review_band: float,
    old_band: pd.DataFrame,
) -> dict:  # fmt: skip
    """Incremental scoring with the saved model: only pairs touching a new/changed record."""
    steps: dict[str, float] = {}
    t = time.perf_counter()
    df = model.prepare_input(people)
    is_new = df["unique_id"].isin(new_keys)
    linker, con, rules = incremental.build_linker(df, is_new, model_dict)
    try:
        steps["prepare"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        compared = incremental.count_compared(con, "people_in", rules)
        pred = linker.inference.predict(threshold_match_probability=review_band)
        pairs = pairs_frame(pred, df)
        steps["predict"] = round(time.perf_counter() - t, 2)
        charts = report.splink_charts(linker, pred)
        t = time.perf_counter()
        want = pd.concat([review.band(pairs), old_band], ignore_index=True)
        ev = review.evidence(linker, con, "people_in", want)
        steps["evidence"] = round(time.perf_counter() - t, 2)
        prior = float(linker._settings_obj._probability_two_random_records_match)
    finally:
        con.close()
    return {"df": df, "pairs": pairs, "charts": charts, "steps": steps, "evidence": ev,
            "pairs_compared": compared,
            "figures": {"probability_two_random_records_match": prior,
                        "training_steps_skipped": []}}  # fmt: skip


# ---- clustering with decisions ---------------------------------------------------------------


def _cluster(
    nodes: pd.DataFrame, pairs: pd.DataFrame, decisions: pd.DataFrame, threshold: float
) -> tuple[pd.DataFrame, dict[str, int]]:
    keys = set(nodes["unique_id"])
    accepted, rejected = review.constraints(decisions, keys)
    edges = review.prepare_edges(pairs, accepted, rejected)
    clusters = clustering.guarded_clusters(nodes, edges, threshold)
    return review.enforce(clusters, nodes, edges, accepted, rejected, threshold)


def _ids_avoiding(clusters: pd.DataFrame, previous: pd.DataFrame, others: set[str]) -> pd.Series:
    """`assign_child_ids` over affected clusters, then any fresh id that equals an id of an
    unaffected child (vanishingly rare: 40-bit ids) re-drawn."""
    ids, _ = clustering.assign_child_ids(clusters, previous)
    clash = [c for c, v in ids.items() if v in others]
    if clash:
        taken = others | set(ids) | set(previous["child_id"])
        seeds = clusters.groupby("cluster_id")["unique_id"].min()
        for c in clash:
            ids[c] = clustering.fresh_id(f"{seeds[c]}|redrawn", taken)
            taken.add(ids[c])
    return ids


def _choose_mode(
    requested: str,
    settings: Settings,
    previous: pd.DataFrame | None,
    share_new: float | None,
    people: pd.DataFrame,
) -> tuple[str, str, tuple[dict, dict] | None]:
    if requested not in ("auto", "full", "incremental"):
        raise ValueError(f"mode must be auto, full or incremental (got {requested!r})")
    if requested == "full":
        return "full", "requested", None
    if previous is None or previous.empty:
        return "full", "no previous linked.records", None
    saved = incremental.load_model(settings)
    if saved is None:
        return "full", "no saved model", None
    if saved[1].get("fingerprint") != incremental.definition_fingerprint():
        return "full", "model definition changed since the saved model", None
    if requested == "auto" and share_new is not None and share_new > AUTO_FULL_SHARE:
        return "full", f"more than {AUTO_FULL_SHARE:.0%} of records new or changed", None
    return "incremental", "requested" if requested == "incremental" else "auto", saved


#: in mode auto, a full re-link (with re-training) runs when more records than this share are
#: new or changed
AUTO_FULL_SHARE = 0.5


def _previous_pairs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    if not _table_exists(con, "linked", "pairs"):
        return pd.DataFrame(columns=["unique_id_l", "unique_id_r", "match_weight",
                                     "match_probability"])  # fmt: skip
    p = con.execute("SELECT * FROM linked.pairs").df()
    p["unique_id_l"] = model.record_key(p["agency_l"], p["record_token_l"])
    p["unique_id_r"] = model.record_key(p["agency_r"], p["record_token_r"])
    return p[["unique_id_l", "unique_id_r", "match_weight", "match_probability"]]


def run(settings: Settings, **options: object) -> dict:
    """Stage `link`. Options: mode (auto | full | incremental; default auto: incremental when a
    saved model of the current definition and previous linked.records exist and at most half
    the records are new or changed, else full), threshold, review_band, review_limit, seed,
    run_id, report (bool)."""
    started = time.perf_counter()
    threshold = float(options.get("threshold", model.THRESHOLD))
    review_band = float(options.get("review_band", model.REVIEW_BAND))
    review_limit = int(options.get("review_limit", review.QUEUE_LIMIT))
    seed = int(options.get("seed", settings.seed))
    run_id = str(options.get("run_id") or uuid.uuid4().hex[:12])
    requested = str(options.get("mode") or "auto")
    steps: dict[str, float] = {}
    with connect(settings) as con:
        t = time.perf_counter()
        # in the agencies' own order (file, row): never by token or load id (a file hash),
        # which move with the key (model.SPLINK_ID numbers the records in this order)
        people = con.execute(
            "SELECT p.* FROM staging.current_people p LEFT JOIN raw.loads l USING (load_id) "
            "ORDER BY p.agency, p.extract_date, l.file_name, p.row_number, p.record_token"
        ).df()
        previous = _previous(con)
        # decisions made in the dashboard since the last run apply in this one
        imported = review_import.import_inbox(con, settings.review_decisions_inbox)
        for f in imported["files"]:
            if f["error"]:
                log.warning("review decisions file rejected: %s", f["error"])
        decisions = review.latest_decisions(con)
        status = incremental.record_status(con) if previous is not None else None
        steps["read"] = round(time.perf_counter() - t, 2)
        if people.empty:
            raise LinkageError("staging.current_people is empty: nothing to link")
        share = None
        if status is not None:
            share = float(status["status"].isin(["new", "changed"]).sum()) / max(len(people), 1)
        mode, mode_reason, saved = _choose_mode(requested, settings, previous, share, people)
        keys = model.record_key(people["agency"], people["record_token"])
        reasons: dict[str, str] = {}
        if status is not None:
            label = {"new": "new record", "changed": "changed record",
                     "withdrawn": "withdrawn record"}  # fmt: skip
            for u, s in zip(status["unique_id"], status["status"], strict=True):
                if s in label:
                    reasons[u] = label[s]
        prev_child = previous.set_index("unique_id")["child_id"] if previous is not None else None
        for d in decisions.itertuples(index=False):
            if (
                prev_child is not None
                and d.unique_id_l in prev_child.index
                and (d.unique_id_r in prev_child.index)
            ):
                same = prev_child[d.unique_id_l] == prev_child[d.unique_id_r]
                if same == (d.decision == "accept"):
                    continue  # already respected
            for u in (d.unique_id_l, d.unique_id_r):
                reasons.setdefault(u, f"review {d.decision}")

        extra: dict = {"mode": mode, "mode_reason": mode_reason}
        if mode == "full":
            s = _score(people, seed, review_band, save=(settings, run_id))
            df, scored, all_pairs = s["df"], s["pairs"], s["pairs"]
            extra["model_saved"] = s["model_saved"]
            t = time.perf_counter()
            nodes = df[["unique_id", *clustering.GUARD_COLUMNS, *clustering.NAME_COLUMNS]]
            clusters, ccounts = _cluster(nodes, scored, decisions, threshold)
            ids, _ = clustering.assign_child_ids(clusters, previous)
            assignment = pd.DataFrame(
                {"unique_id": clusters["unique_id"], "child_id": clusters["cluster_id"].map(ids)}
            )
            extra["records_reclustered"] = int(len(clusters))
            fallback = "full re-link (model re-trained)"
        else:
            assert saved is not None and status is not None and previous is not None
            new_keys = set(status.loc[status["status"].isin(["new", "changed"]), "unique_id"])
            gone = set(status.loc[status["status"] == "withdrawn", "unique_id"])
            current = set(keys)
            old_pairs = _previous_pairs(con)
            stale = new_keys | gone
            old_pairs = old_pairs[
                ~old_pairs["unique_id_l"].isin(stale) & ~old_pairs["unique_id_r"].isin(stale)
                & old_pairs["unique_id_l"].isin(current) & old_pairs["unique_id_r"].isin(current)
            ]  # fmt: skip
            s = _score_incremental(people, new_keys, saved[0], review_band, review.band(old_pairs))
            df, scored = s["df"], s["pairs"]
            all_pairs = pd.concat([old_pairs, scored], ignore_index=True)
            t = time.perf_counter()
            accepted, _ = review.constraints(decisions, current)
            seeds = (set(reasons) & current) | gone
            aff = incremental.affected(seeds, previous, all_pairs, accepted, threshold) & current
            nodes_all = df[["unique_id", *clustering.GUARD_COLUMNS, *clustering.NAME_COLUMNS]]
            nodes = nodes_all[nodes_all["unique_id"].isin(aff)]
            keep = previous[previous["unique_id"].isin(current - aff)]
            parts = [keep[["unique_id", "child_id"]]]
            ccounts = {}
            if len(nodes):
                sub = all_pairs[
                    all_pairs["unique_id_l"].isin(aff) & all_pairs["unique_id_r"].isin(aff)
                ]
                clusters, ccounts = _cluster(nodes, sub, decisions, threshold)
                # the closure holds whole previous children: only their ids are candidates
                prev_aff = previous[previous["unique_id"].isin(aff | gone)]
                ids = _ids_avoiding(clusters, prev_aff, set(keep["child_id"]))
                parts.append(pd.DataFrame({"unique_id": clusters["unique_id"],
                                           "child_id": clusters["cluster_id"].map(ids)}))  # fmt: skip
            else:
                clusters = pd.DataFrame({"unique_id": [], "guard_split": []})
            assignment = pd.concat(parts, ignore_index=True)
            extra["records_new"] = int((status["status"] == "new").sum())
            extra["records_changed"] = int((status["status"] == "changed").sum())
            extra["records_withdrawn"] = len(gone)
            extra["records_reclustered"] = len(aff)
            extra["model_trained_run_id"] = saved[1].get("trained_run_id")
            fallback = "component re-clustered"
        extra["pairs_compared"] = s["pairs_compared"]
        extra["pairs_kept"] = int(len(all_pairs))
        extra["decision_constraints"] = ccounts
        model_figures, charts = s["figures"], s["charts"]
        steps.update(s["steps"])
        above = scored[scored["match_probability"] >= threshold]
        dropped = int(clustering.conflict_mask(above, df).sum())
        twin_dropped = int(clustering.twin_signature(above, df, clustering.TWIN_DICE_DROP).sum())
        history = id_history(previous, assignment, reasons, fallback)
        records = _records(people, assignment, all_pairs)
        child_of = assignment.set_index("unique_id")["child_id"]
        queue = review.queue(review.band(all_pairs), s["evidence"], child_of, decisions,
                             threshold, run_id, review_limit)  # fmt: skip
        steps["cluster"] = round(time.perf_counter() - t, 2)

        t = time.perf_counter()
        checks = write_tables(
            con, records, _pairs_table(all_pairs), history, run_id, queue, mode, settings=settings
        )
        steps["write"] = round(time.perf_counter() - t, 2)

        sizes = records.groupby("child_id").size()
        size_dist = {int(k): int(v) for k, v in sizes.value_counts().sort_index().items()}
        events = history["event"].value_counts().to_dict()
        figures: dict = {
            "run_id": run_id,
            "records": int(len(records)),
            "records_by_agency": {k: int(v) for k, v in people["agency"].value_counts().items()},
            "children": int(sizes.size),
            "cluster_sizes": size_dist,
            "pairs_scored": int(len(scored)),
            "pairs_above_threshold": int(len(above)),
            "guard_edges_dropped": dropped,
            "twin_edges_dropped": twin_dropped,
            "guard_records_reclustered": int(clusters["guard_split"].sum()),
            "threshold": threshold,
            "review_band": review_band,
            "id_history": {str(k): int(v) for k, v in events.items()},
            "checks": checks,
            **extra,
            **model_figures,
            "review": {
                **review.figures(decisions, all_pairs, child_of, threshold, queue),
                **{k: v for k, v in imported.items() if k != "files"},
            },
            "review_import": imported["files"],
        }
        if truth.has_truth(settings):
            t = time.perf_counter()
            rec_truth = truth.record_truth(settings, con)
            joined = records.merge(rec_truth, on=["agency", "record_token"])
            figures["truth"] = evaluate.evaluate(joined, truth.twins(settings))
            steps["evaluate"] = round(time.perf_counter() - t, 2)
    figures["seconds"] = steps
    figures["seconds_total"] = round(time.perf_counter() - started, 2)
    figures["peak_rss_mb"] = _peak_rss_mb()
    if options.get("report", True):
        charts["Cluster sizes"] = report.cluster_size_chart(size_dist)
        figures["outputs"] = report.write(settings.outputs_dir / "linkage", figures, charts)
    figures["handoff"] = handoff.send(settings, records, figures, queue)
    return figures
