"""Incremental linking: the saved model, which records are new, scoring only their pairs, and
the components that must be re-clustered.

Owns:

* the saved Splink model (`model_path(settings)` = `outputs/linkage/model.json`, written after
  every full link): Splink's settings with trained m/u parameters and the prior -- comparison
  SQL and parameters only, never a token, Bloom filter or term-frequency table -- plus
  `model.meta.json` (a fingerprint of the comparisons, so a changed model definition forces a
  full re-link; when and on how many records it was trained);
* record status (`record_status`): each current record is `new` (not in the previous
  `linked.records`), `changed` (re-delivered with different linkage fields than the version
  last linked) or `same`; previously linked records no longer current are `withdrawn`;
* incremental scoring (`score_new`): the saved model over all current records in a private
  DuckDB, with every prediction blocking rule restricted to pairs where at least one record is
  new or changed (`AND (l.is_new OR r.is_new)`), so term frequencies still come from all
  records and existing-vs-existing pairs are never compared again;
* affected records (`affected`): the closure of the new / changed / decided records over
  previous children, current pairs at or above the threshold and accepted review decisions --
  whole components, so re-clustering them gives what clustering everything would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import duckdb
import pandas as pd
from splink import DuckDBAPI, Linker

from joinedup import contract
from joinedup.config import Settings
from linkage import model

log = logging.getLogger(__name__)

#: the staged columns whose change makes a record "changed" (everything the model reads)
LINK_FIELDS: tuple[str, ...] = tuple(
    c for c in contract.PEOPLE_COLUMNS if c not in ("record_token", "ethnicity", "extract_date")
)


def model_path(settings: Settings) -> Path:
    return settings.outputs_dir / "linkage" / "model.json"


def _meta_path(settings: Settings) -> Path:
    return settings.outputs_dir / "linkage" / "model.meta.json"


def definition_fingerprint() -> str:
    """sha256 (16 hex) of the model definition the parameters belong to: the comparisons and
    their levels (`linkage.model.comparisons()`). Blocking rules are left out: they only choose
    which pairs are scored (and may be chosen from the data); an incremental run uses the rules
    saved with the model."""
    text = json.dumps(model.comparisons(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_model(settings: Settings, linker: Linker, run_id: str, n_records: int) -> str:
    """Write the trained model (settings + parameters, no data) and its meta file."""
    d = linker.misc.save_model_to_json()
    _write_atomic(model_path(settings), json.dumps(d, indent=2) + "\n")
    meta = {
        "fingerprint": definition_fingerprint(),
        "trained_run_id": run_id,
        "trained_records": int(n_records),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _write_atomic(_meta_path(settings), json.dumps(meta, indent=2) + "\n")
    return str(model_path(settings))


def load_model(settings: Settings) -> tuple[dict, dict] | None:
    """(model dict, meta) or None if no model was saved."""
    p, m = model_path(settings), _meta_path(settings)
    if not p.exists() or not m.exists():
        return None
    return json.loads(p.read_text(encoding="utf-8")), json.loads(m.read_text(encoding="utf-8"))


def record_status(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """`(unique_id, status)` for every current record (new | changed | same) and every
    previously linked record no longer current (withdrawn)."""
    differs = " OR ".join(f"p.{c} IS DISTINCT FROM c.{c}" for c in LINK_FIELDS)
    df = con.execute(
        f"""
        SELECT c.agency, c.record_token,
               CASE WHEN r.record_token IS NULL THEN 'new'
                    WHEN c.load_id = r.load_id AND c.row_number = r.row_number THEN 'same'
                    WHEN p.record_token IS NULL THEN 'changed'
                    WHEN {differs} THEN 'changed' ELSE 'same' END AS status
        FROM staging.current_people c
        LEFT JOIN linked.records r USING (agency, record_token)
        LEFT JOIN staging.people p ON p.load_id = r.load_id AND p.row_number = r.row_number
        UNION ALL
        SELECT r.agency, r.record_token, 'withdrawn' FROM linked.records r
        ANTI JOIN staging.current_people c USING (agency, record_token)
        """
    ).df()
    df["unique_id"] = model.record_key(df["agency"], df["record_token"])
    return df[["unique_id", "status"]]


def _restrict(rule: dict | str) -> dict:
    sql = rule["blocking_rule"] if isinstance(rule, dict) else rule
    out = dict(rule) if isinstance(rule, dict) else {"blocking_rule": rule}
    out["blocking_rule"] = f"({sql}) AND (l.is_new OR r.is_new)"
    return out


def count_compared(con: duckdb.DuckDBPyConnection, table: str, rules: list[str]) -> int:
    """Distinct record pairs the blocking rules generate (each pair counted once, as Splink
    does: a pair is attributed to the first rule that generates it)."""
    total = 0
    for i, rule in enumerate(rules):
        prev = " ".join(f"AND NOT coalesce(({r}), false)" for r in rules[:i])
        total += con.execute(
            f"SELECT count(*) FROM {table} l JOIN {table} r ON ({rule}) "
            f"AND l.unique_id < r.unique_id {prev}"
        ).fetchall()[0][0]
    return int(total)


def build_linker(
    df: pd.DataFrame, is_new: pd.Series, model_dict: dict
) -> tuple[Linker, duckdb.DuckDBPyConnection, list[str]]:
    """A linker with the saved model over all current records (`df` from
    `model.prepare_input`), its blocking rules restricted to pairs touching a new record.
    Returns (linker, private connection, restricted rule SQL)."""
    con = duckdb.connect(":memory:")
    model.register_input(con, df, "people_in")
    flags = pd.DataFrame({"unique_id": df["unique_id"], "is_new": is_new.to_numpy(dtype=bool)})
    con.register("_flags", flags)
    con.execute(
        "CREATE OR REPLACE TABLE people_in AS SELECT p.*, f.is_new FROM people_in p "
        "JOIN _flags f USING (unique_id)"
    )
    con.unregister("_flags")
    settings = dict(model_dict)
    settings["blocking_rules_to_generate_predictions"] = [
        _restrict(r) for r in model_dict["blocking_rules_to_generate_predictions"]
    ]
    db_api = DuckDBAPI(connection=con)
    sdf = db_api.register("people_in", dataset_display_name="people")
    linker = Linker(sdf, settings, log_level=None)
    rules = [
        br.blocking_rule_sql for br in linker._settings_obj._blocking_rules_to_generate_predictions
    ]
    return linker, con, rules


def affected(
    seeds: set[str],
    previous: pd.DataFrame,
    edges: pd.DataFrame,
    accepted: list[tuple[str, str]],
    threshold: float,
) -> set[str]:
    """Record keys in the components (over previous children, edges at or above the threshold
    and accepted pairs) that contain a seed record."""
    parent: dict[str, str] = {}

    def find(u: str) -> str:
        parent.setdefault(u, u)
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    first = previous.groupby("child_id")["unique_id"].transform("first")
    for a, b in zip(first, previous["unique_id"], strict=True):
        union(a, b)
    above = edges[edges["match_probability"] >= threshold]
    for a, b in zip(above["unique_id_l"], above["unique_id_r"], strict=True):
        union(a, b)
    for a, b in accepted:
        union(a, b)
    roots = {find(s) for s in seeds}
    return {u for u in list(parent) if find(u) in roots} | set(seeds)
