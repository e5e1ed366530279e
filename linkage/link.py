"""Stage `link`: Splink over the encoded staged records -> one child per person.

Reads `staging.current_people` / `staging.current_events`; trains and predicts with Splink in a
private in-memory DuckDB (`linkage.model`); clusters with a twin guard and keeps child ids stable
(`linkage.clustering`); then replaces `linked.records`, `linked.pairs`, `linked.children`,
`linked.events` and appends to `linked.child_id_history`, all in one warehouse transaction.
Writes `outputs/linkage/metrics.json` and `report.html` (with truth figures on synthetic data).
"""

from __future__ import annotations

import datetime as dt
import logging
import resource
import time
import uuid

import duckdb
import pandas as pd

from joinedup.config import Settings
from linkage import clustering, evaluate, model, report, truth
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


def score(
    people: pd.DataFrame, seed: int, review_band: float
) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict[str, dict], dict]:
    """Train and predict. Returns (model input, scored pairs >= review band, model figures,
    Splink chart specs, step seconds)."""
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
        pairs = pred.as_pandas_dataframe()[
            ["unique_id_l", "unique_id_r", "match_weight", "match_probability"]
        ]
        steps["predict"] = round(time.perf_counter() - t, 2)
        charts = report.splink_charts(linker, pred)
    finally:
        con.close()
    return df, pairs, figures, charts, steps


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


_CHILDREN_SQL = """
CREATE OR REPLACE TABLE linked.children AS
WITH r AS (
    SELECT lr.child_id, p.agency, p.sex, p.birth_year_month, p.ethnicity, p.postcode_sector,
           p.extract_date
    FROM linked.records lr JOIN staging.current_people p USING (agency, record_token)
),
sex AS ({sex}), bym AS ({bym}), eth AS ({eth}), pcs AS ({pcs}),
agg AS (SELECT child_id, count(*) AS n_records,
               string_agg(DISTINCT agency, ',' ORDER BY agency) AS agencies
        FROM r GROUP BY child_id)
SELECT agg.child_id, coalesce(sex.v, 'U') AS sex, bym.v AS birth_year_month,
       coalesce(eth.v, 'UNK') AS ethnicity, pcs.v AS postcode_sector, a.ward_code, a.imd_decile,
       agg.n_records, agg.agencies
FROM agg LEFT JOIN sex USING (child_id) LEFT JOIN bym USING (child_id)
LEFT JOIN eth USING (child_id) LEFT JOIN pcs USING (child_id)
LEFT JOIN reference.areas a ON a.postcode_sector = pcs.v
ORDER BY agg.child_id
"""


def _mode(col: str, where: str, recent_first: bool = False) -> str:
    order = "last DESC, n DESC" if recent_first else "n DESC, last DESC"
    return (
        f"SELECT child_id, v FROM (SELECT child_id, {col} AS v, count(*) AS n, "
        f"max(extract_date) AS last FROM r WHERE {where} GROUP BY ALL) "
        f"QUALIFY row_number() OVER (PARTITION BY child_id ORDER BY {order}, v) = 1"
    )


def children_sql() -> str:
    return _CHILDREN_SQL.format(
        sex=_mode("sex", "sex IN ('M', 'F')"),
        bym=_mode("birth_year_month", "coalesce(birth_year_month, '') <> ''"),
        eth=_mode("ethnicity", "ethnicity IS NOT NULL AND ethnicity NOT IN ('', 'UNK')"),
        pcs=_mode("postcode_sector", "coalesce(postcode_sector, '') <> ''", recent_first=True),
    )


_EVENTS_SQL = """
CREATE OR REPLACE TABLE linked.events AS
SELECT r.child_id, e.agency, e.event_token, e.record_token, e.event_date, e.event_type, e.value,
       e.load_id, e.row_number
FROM staging.current_events e LEFT JOIN linked.records r USING (agency, record_token)
ORDER BY e.agency, e.load_id, e.row_number
"""


def write_tables(
    con: duckdb.DuckDBPyConnection,
    records: pd.DataFrame,
    pairs: pd.DataFrame,
    history: list[tuple[str, str, str]],
    run_id: str,
) -> None:
    """Replace the linked tables and append id history, in one transaction."""
    hist = pd.DataFrame(history, columns=["child_id", "event", "detail"])
    hist["run_id"] = run_id
    hist["at"] = pd.Timestamp(dt.datetime.now(dt.UTC).replace(tzinfo=None))
    con.register("_records", records)
    con.register("_pairs", pairs)
    con.register("_history", hist)
    con.execute("BEGIN TRANSACTION")
    try:
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
        con.execute(children_sql())
        con.execute(_EVENTS_SQL)
        con.execute(
            "CREATE TABLE IF NOT EXISTS linked.child_id_history (child_id VARCHAR, event VARCHAR, "
            'detail VARCHAR, run_id VARCHAR, "at" TIMESTAMP)'
        )
        con.execute(
            'INSERT INTO linked.child_id_history SELECT child_id, event, detail, run_id, "at" '
            "FROM _history"
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        for name in ("_records", "_pairs", "_history"):
            con.unregister(name)


def run(settings: Settings, **options: object) -> dict:
    """Stage `link`. Options: threshold, review_band, seed, run_id, report (bool)."""
    started = time.perf_counter()
    threshold = float(options.get("threshold", model.THRESHOLD))
    review_band = float(options.get("review_band", model.REVIEW_BAND))
    seed = int(options.get("seed", settings.seed))
    run_id = str(options.get("run_id") or uuid.uuid4().hex[:12])
    steps: dict[str, float] = {}
    with connect(settings) as con:
        t = time.perf_counter()
        people = con.execute(
            "SELECT * FROM staging.current_people ORDER BY agency, load_id, row_number"
        ).df()
        previous = _previous(con)
        steps["read"] = round(time.perf_counter() - t, 2)
        if people.empty:
            raise LinkageError("staging.current_people is empty: nothing to link")
        df, scored, model_figures, charts, score_steps = score(people, seed, review_band)
        steps.update(score_steps)

        t = time.perf_counter()
        nodes = df[["unique_id", *clustering.GUARD_COLUMNS, *clustering.NAME_COLUMNS]]
        above = scored[scored["match_probability"] >= threshold]
        dropped = int(clustering.conflict_mask(above, nodes).sum())
        twin_dropped = int(clustering.twin_signature(above, nodes, clustering.TWIN_DICE_DROP).sum())
        clusters = clustering.guarded_clusters(nodes, scored, threshold)
        ids, history = clustering.assign_child_ids(clusters, previous)
        clusters["child_id"] = clusters["cluster_id"].map(ids)
        records = _records(people, clusters, scored)
        steps["cluster"] = round(time.perf_counter() - t, 2)

        t = time.perf_counter()
        write_tables(con, records, _pairs_table(scored), history, run_id)
        n_events = con.execute("SELECT count(*) FROM linked.events").fetchall()[0][0]
        n_orphans = con.execute(
            "SELECT count(*) FROM linked.events WHERE child_id IS NULL"
        ).fetchall()[0][0]
        steps["write"] = round(time.perf_counter() - t, 2)

        sizes = records.groupby("child_id").size()
        size_dist = {int(k): int(v) for k, v in sizes.value_counts().sort_index().items()}
        events = pd.Series([h[1] for h in history]).value_counts().to_dict() if history else {}
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
            "events": int(n_events),
            "events_without_child": int(n_orphans),
            **model_figures,
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
    return figures
