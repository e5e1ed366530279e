"""Clerical review: the queue of uncertain pairs, reviewers' decisions, and how they constrain
clustering and feed back into evaluation.

Owns:

* the review band (`BAND_LOW` <= match probability <= `BAND_HIGH`, around `model.THRESHOLD`)
  and the bounded queue `linked.review_queue`, ordered by closeness to the threshold (in match
  weight, i.e. log2 odds);
* the evidence of a pair: one human-readable level label per comparison ("first_name: dice >=
  0.88", "dob: day/month swapped", "nhs: different"), evaluated with the model's own comparison
  SQL in the private Splink DuckDB -- never a token or Bloom-filter value;
* pair ids (`pair_id`): a short hash of the two stable record identities (agency +
  record_token), so decisions survive re-runs;
* decisions in `linked.review_decisions` (append-only; the latest decision per pair wins):
  `decide` (the CLI) and `pair_identity` / `insert_decision` (also used by
  `linkage.review_import` for the dashboard's decisions files);
* constraints for clustering: accepted pairs are forced links, rejected pairs cannot-links
  (`prepare_edges`, `enforce`);
* review figures: decisions so far and the agreement of the model's side of the threshold with
  reviewers (a precision / recall estimate on reviewed pairs).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Any

import duckdb
import pandas as pd

from linkage import clustering, model

#: pairs at or above this probability may be queued (the pairs kept in linked.pairs)
BAND_LOW = model.REVIEW_BAND
#: pairs at or below this probability may be queued: links just above the threshold are uncertain
#: too, and reviewing them gives a precision estimate as well as a recall estimate
BAND_HIGH = 0.99
#: the queue holds at most this many pairs (those closest to the threshold)
QUEUE_LIMIT = 500
DECISIONS = ("accept", "reject")
QUEUE_COLUMNS = [
    "pair_id", "rank", "agency_l", "record_token_l", "child_id_l", "agency_r", "record_token_r",
    "child_id_r", "same_child", "match_probability", "match_weight", "distance", "model_side",
    "evidence", "evidence_json", "decision", "run_id", "queued_at",
]  # fmt: skip


def weight_of(probability: float) -> float:
    """Match weight (log2 odds) of a match probability."""
    p = min(max(probability, 1e-12), 1 - 1e-12)
    return math.log2(p / (1 - p))


def pair_id(key_l: str, key_r: str) -> str:
    """Stable short id of a record pair (order-independent) from the record keys
    `agency:record_token`; 'R' + 12 hex characters."""
    a, b = sorted((key_l, key_r))
    return "R" + hashlib.sha256(f"pair|{a}|{b}".encode()).hexdigest()[:12]


def pair_ids(left: pd.Series, right: pd.Series) -> pd.Series:
    return pd.Series(
        [pair_id(a, b) for a, b in zip(left, right, strict=True)], index=left.index, dtype=object
    )


# ---- evidence -------------------------------------------------------------------------------


def _levels(linker: Any) -> list[tuple[str, str, dict[int, tuple[str, float]]]]:
    """(output name, gamma CASE statement, {level value: (label, match weight)}) per comparison."""
    out = []
    for comp in linker._settings_obj.comparisons:
        levels: dict[int, tuple[str, float]] = {}
        for cl in comp.comparison_levels:
            w = 0.0
            if not cl.is_null_level:
                m, u = cl.m_probability, cl.u_probability
                if m and u:
                    w = math.log2(m / u)
            levels[int(cl.comparison_vector_value)] = (str(cl.label_for_charts), w)
        out.append((comp.output_column_name, comp._case_statement, levels))
    return out


def evidence(
    linker: Any, con: duckdb.DuckDBPyConnection, table: str, pairs: pd.DataFrame
) -> pd.DataFrame:
    """Per-comparison evidence for `pairs(unique_id_l, unique_id_r)` whose records are rows of
    `table` in the linker's private DuckDB `con`: `(unique_id_l, unique_id_r, evidence,
    evidence_json)`. Only level labels and parameter weights leave the private database."""
    cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    comps = _levels(linker)
    if pairs.empty:
        return pd.DataFrame(columns=["unique_id_l", "unique_id_r", "evidence", "evidence_json"])
    sides = ", ".join(f'l."{c}" AS "{c}_l", r."{c}" AS "{c}_r"' for c in cols)
    cases = ", ".join(case for _, case, _ in comps)
    con.register("_review_pairs", pairs[["unique_id_l", "unique_id_r"]])
    try:
        gammas = con.execute(
            f"WITH j AS (SELECT {sides} FROM _review_pairs p "
            f"JOIN {table} l ON l.unique_id = p.unique_id_l "
            f"JOIN {table} r ON r.unique_id = p.unique_id_r) "
            f"SELECT unique_id_l, unique_id_r, {cases} FROM j"
        ).df()
    finally:
        con.unregister("_review_pairs")
    texts, jsons = [], []
    for row in gammas.itertuples(index=False):
        parts, detail = [], {}
        for i, (name, _, levels) in enumerate(comps):
            label, w = levels.get(int(row[2 + i]), ("unknown", 0.0))
            parts.append(f"{name}: {label} ({w:+.1f})" if label != "null" else f"{name}: null")
            detail[name] = {"level": label, "weight": round(w, 2)}
        texts.append("; ".join(parts))
        jsons.append(json.dumps(detail))
    return pd.DataFrame(
        {
            "unique_id_l": gammas["unique_id_l"],
            "unique_id_r": gammas["unique_id_r"],
            "evidence": texts,
            "evidence_json": jsons,
        }
    )


def band(pairs: pd.DataFrame, low: float = BAND_LOW, high: float = BAND_HIGH) -> pd.DataFrame:
    """Pairs in the review band, ordered by closeness to the threshold is done in `queue`."""
    p = pairs["match_probability"]
    return pairs[(p >= low) & (p <= high)]


def queue(
    pairs: pd.DataFrame,
    evidence_frame: pd.DataFrame,
    child_of: pd.Series,
    decisions: pd.DataFrame,
    threshold: float,
    run_id: str,
    limit: int = QUEUE_LIMIT,
) -> pd.DataFrame:
    """The review queue: band pairs (`pairs(unique_id_l, unique_id_r, match_weight,
    match_probability)`, already restricted to the band) ranked by |match weight - threshold
    weight|, at most `limit` pending pairs plus decided pairs still in the band, with the
    latest decision. `child_of`: child id by record key."""
    if pairs.empty:
        return pd.DataFrame(columns=QUEUE_COLUMNS)
    q = pairs[["unique_id_l", "unique_id_r", "match_weight", "match_probability"]].copy()
    q["pair_id"] = pair_ids(q["unique_id_l"], q["unique_id_r"])
    q["distance"] = (q["match_weight"].astype(float) - weight_of(threshold)).abs()
    latest = decisions.set_index("pair_id")["decision"] if not decisions.empty else pd.Series()
    q["decision"] = q["pair_id"].map(latest)
    q = q.sort_values(["distance", "pair_id"], kind="stable")
    pending = q[q["decision"].isna()].head(limit)
    q = pd.concat([pending, q[q["decision"].notna()]]).sort_values(
        ["distance", "pair_id"], kind="stable"
    )
    q["rank"] = range(1, len(q) + 1)
    q = q.merge(evidence_frame, on=["unique_id_l", "unique_id_r"], how="left")
    q["evidence"] = q["evidence"].fillna("evidence unavailable")
    q["agency_l"], q["record_token_l"] = _split(q["unique_id_l"])
    q["agency_r"], q["record_token_r"] = _split(q["unique_id_r"])
    q["child_id_l"] = q["unique_id_l"].map(child_of)
    q["child_id_r"] = q["unique_id_r"].map(child_of)
    q["same_child"] = q["child_id_l"] == q["child_id_r"]
    q["model_side"] = (q["match_probability"] >= threshold).map({True: "link", False: "no link"})
    q["run_id"] = run_id
    q["queued_at"] = pd.Timestamp(dt.datetime.now(dt.UTC).replace(tzinfo=None))
    return q[QUEUE_COLUMNS]


def _split(keys: pd.Series) -> tuple[pd.Series, pd.Series]:
    parts = keys.str.split(":", n=1)
    return parts.str[0], parts.str[1]


# ---- decisions ------------------------------------------------------------------------------


def latest_decisions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The latest decision per pair: `(pair_id, unique_id_l, unique_id_r, decision, reviewer,
    match_probability, decided_at)`."""
    df = con.execute(
        "SELECT pair_id, agency_l, record_token_l, agency_r, record_token_r, decision, reviewer, "
        "match_probability, decided_at FROM linked.review_decisions "
        "QUALIFY row_number() OVER (PARTITION BY pair_id ORDER BY decided_at DESC, "
        "decision_id DESC) = 1 ORDER BY pair_id"
    ).df()
    df["unique_id_l"] = model.record_key(df["agency_l"], df["record_token_l"])
    df["unique_id_r"] = model.record_key(df["agency_r"], df["record_token_r"])
    return df[["pair_id", "unique_id_l", "unique_id_r", "decision", "reviewer",
               "match_probability", "decided_at"]]  # fmt: skip


#: the longest reviewer name and reason a decision may hold
REVIEWER_MAX, REASON_MAX = 80, 500


def pair_identity(con: duckdb.DuckDBPyConnection, pair: str) -> tuple | None:
    """(agency_l, record_token_l, agency_r, record_token_r, match probability) of a queued or
    previously decided pair, or None when the linkage unit does not know the pair id."""
    rows = con.execute(
        "SELECT agency_l, record_token_l, agency_r, record_token_r, match_probability "
        "FROM linked.review_queue WHERE pair_id = ? "
        "UNION ALL SELECT agency_l, record_token_l, agency_r, record_token_r, match_probability "
        "FROM linked.review_decisions WHERE pair_id = ?",
        [pair, pair],
    ).fetchall()
    return tuple(rows[0]) if rows else None


def insert_decision(
    con: duckdb.DuckDBPyConnection, decision_id: str, pair: str, identity: tuple, decision: str,
    reviewer: str, reason: str | None, decided_at: dt.datetime,
) -> None:  # fmt: skip
    """Append one checked decision (`identity` from `pair_identity`; `decided_at` naive UTC)."""
    a_l, t_l, a_r, t_r, prob = identity
    con.execute(
        "INSERT INTO linked.review_decisions (decision_id, pair_id, agency_l, record_token_l, "
        "agency_r, record_token_r, decision, reviewer, reason, match_probability, decided_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [decision_id, pair, a_l, t_l, a_r, t_r, decision, reviewer, reason, prob, decided_at],
    )


def decide(
    con: duckdb.DuckDBPyConnection,
    pair: str,
    decision: str,
    reviewer: str,
    reason: str | None = None,
) -> dict:
    """Record a reviewer's decision on a queued (or previously decided) pair. Append-only; the
    latest decision per pair wins; applied on the next link run.  (Decisions made in the
    dashboard arrive as files: `linkage.review_import`.)"""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)} (got {decision!r})")
    reviewer = (reviewer or "").strip()
    if not reviewer or len(reviewer) > REVIEWER_MAX:
        raise ValueError(
            f"--reviewer must be a non-empty name of at most {REVIEWER_MAX} characters"
        )
    if reason is not None and len(reason) > REASON_MAX:
        raise ValueError(f"--reason must be at most {REASON_MAX} characters")
    identity = pair_identity(con, pair)
    if identity is None:
        raise ValueError(f"unknown pair id {pair!r}: run `joinedup linkage review list`")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    decision_id = (
        "D" + hashlib.sha256(f"{pair}|{now.isoformat()}|{reviewer}".encode()).hexdigest()[:12]
    )
    insert_decision(con, decision_id, pair, identity, decision, reviewer, reason, now)
    n = con.execute(
        "SELECT count(*) FROM linked.review_decisions WHERE pair_id = ?", [pair]
    ).fetchall()[0][0]
    return {
        "pair_id": pair,
        "decision": decision,
        "decision_id": decision_id,
        "decisions_on_this_pair": int(n),
        "applies": "on the next link run (joinedup link or joinedup linkage incremental)",
    }


def list_queue(
    con: duckdb.DuckDBPyConnection, limit: int = 20, include_decided: bool = False
) -> dict:
    """The queue for analysts: pair id, probability, agencies, child ids, evidence. No record
    token is shown."""
    if limit < 1:
        raise ValueError(f"--limit must be at least 1 (got {limit})")
    where = "" if include_decided else "WHERE decision IS NULL"
    rows = con.execute(
        f"SELECT pair_id, rank, agency_l, child_id_l, agency_r, child_id_r, same_child, "
        f"match_probability, match_weight, model_side, evidence, decision FROM "
        f"linked.review_queue {where} ORDER BY rank LIMIT ?",
        [limit],
    ).df()
    counts = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE decision IS NULL) FROM linked.review_queue"
    ).fetchall()[0]
    records = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in rows.to_dict("records")
    ]
    lines = {
        f"#{r['rank']} {r['pair_id']}": (
            f"p={r['match_probability']:.3f} w={r['match_weight']:+.2f} ({r['model_side']}) "
            f"{r['agency_l']}/{r['agency_r']} {r['child_id_l']}/{r['child_id_r']}"
            f"{' same child' if r['same_child'] else ''}"
            f"{' decided: ' + r['decision'] if r['decision'] else ''} | {r['evidence']}"
        )
        for r in records
    }
    return {
        "queued": int(counts[0]),
        "pending": int(counts[1]),
        "shown": len(records),
        **lines,
        "rows": records,
    }


# ---- constraints for clustering -------------------------------------------------------------


def constraints(
    decisions: pd.DataFrame, keys: set[str]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(accepted, rejected) record-key pairs among the latest decisions whose two records are
    both in `keys`."""
    if decisions.empty:
        return [], []
    d = decisions[decisions["unique_id_l"].isin(keys) & decisions["unique_id_r"].isin(keys)]
    acc = d[d["decision"] == "accept"]
    rej = d[d["decision"] == "reject"]
    return (
        list(zip(acc["unique_id_l"], acc["unique_id_r"], strict=True)),
        list(zip(rej["unique_id_l"], rej["unique_id_r"], strict=True)),
    )


FORCED_WEIGHT = 100.0


def prepare_edges(
    edges: pd.DataFrame, accepted: list[tuple[str, str]], rejected: list[tuple[str, str]]
) -> pd.DataFrame:
    """Edges for `clustering.guarded_clusters`: rejected pairs removed, accepted pairs present
    with probability 1 and a weight above every model edge (considered first)."""
    e = edges[["unique_id_l", "unique_id_r", "match_weight", "match_probability"]]
    if not accepted and not rejected:
        return e
    pid = pair_ids(e["unique_id_l"], e["unique_id_r"])
    drop = {pair_id(a, b) for a, b in accepted + rejected}
    e = e[~pid.isin(drop)]
    if accepted:
        forced = pd.DataFrame(
            [(min(a, b), max(a, b)) for a, b in accepted], columns=["unique_id_l", "unique_id_r"]
        )
        forced["match_weight"] = FORCED_WEIGHT
        forced["match_probability"] = 1.0
        e = pd.concat([e, forced], ignore_index=True)
    return e


class _Constrained:
    """Union-find over records with cannot-link pairs and guard attributes."""

    def __init__(self, members: list[str], attrs: dict[str, tuple], cannot: list[tuple[str, str]]):
        self.parent = {u: u for u in members}
        self.items = {u: {u} for u in members}
        self.values = {u: [({v} if v is not None else set()) for v in attrs[u]] for u in members}
        self.cannot: dict[str, set[str]] = {}
        for a, b in cannot:
            self.cannot.setdefault(a, set()).add(b)
            self.cannot.setdefault(b, set()).add(a)

    def find(self, u: str) -> str:
        while self.parent[u] != u:
            self.parent[u] = self.parent[self.parent[u]]
            u = self.parent[u]
        return u

    def join(self, a: str, b: str, lenient: tuple[int, ...] | None) -> bool:
        """Join unless a cannot-link would be violated, or (lenient is not None) the groups
        conflict on a guard attribute not in `lenient`."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        small, big = (ra, rb) if len(self.items[ra]) <= len(self.items[rb]) else (rb, ra)
        for u in self.items[small]:
            if self.cannot.get(u, set()) & self.items[big]:
                return False
        va, vb = self.values[ra], self.values[rb]
        if lenient is not None:
            for i, (x, y) in enumerate(zip(va, vb, strict=True)):
                if x and y and x != y and i not in lenient:
                    return False
        self.parent[small] = big
        self.items[big] |= self.items.pop(small)
        self.values[big] = [x | y for x, y in zip(va, vb, strict=True)]
        return True


def enforce(
    clusters: pd.DataFrame,
    nodes: pd.DataFrame,
    edges: pd.DataFrame,
    accepted: list[tuple[str, str]],
    rejected: list[tuple[str, str]],
    threshold: float,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Make `clusters(unique_id, cluster_id, guard_split)` respect the decisions.

    1. cannot-link: every cluster holding both records of a rejected pair is re-clustered
       greedily (accepted edges first, then model edges by descending weight, joins refused if
       they would put a rejected pair or conflicting guard attributes together);
    2. must-link: clusters joined by an accepted pair are merged (a reviewer overrides the
       guards), unless that would put a rejected pair together (reject wins; counted).
    `edges` are those passed to `guarded_clusters` (from `prepare_edges`)."""
    counts = {"clusters_split_by_reject": 0, "clusters_merged_by_accept": 0,
              "accepts_refused_by_reject": 0}  # fmt: skip
    if not accepted and not rejected:
        return clusters, counts
    out = clusters.copy()
    out["cluster_id"] = out["cluster_id"].astype(str)
    cid = out.set_index("unique_id")["cluster_id"]
    # 1. cannot-link
    bad = sorted({cid[a] for a, b in rejected if a in cid.index and b in cid.index
                  and cid[a] == cid[b]})  # fmt: skip
    if bad:
        members = out.loc[out["cluster_id"].isin(bad), "unique_id"].tolist()
        sub = nodes[nodes["unique_id"].isin(members)]
        attrs = {
            r.unique_id: tuple(None if pd.isna(getattr(r, c)) else getattr(r, c)
                               for c in clustering.GUARD_COLUMNS)
            for r in sub.itertuples(index=False)
        }  # fmt: skip
        inside = edges[edges["unique_id_l"].isin(attrs) & edges["unique_id_r"].isin(attrs)]
        inside = inside[inside["match_probability"] >= threshold].copy()
        forced = inside["match_weight"] >= FORCED_WEIGHT
        model_edges = inside[~forced]
        keep = ~clustering.conflict_mask(model_edges, sub) & ~clustering.twin_signature(
            model_edges, sub, clustering.TWIN_DICE_DROP
        )
        model_edges = model_edges[keep].copy()
        penalty = (
            clustering.twin_signature(model_edges, sub, clustering.TWIN_DICE_PENALTY)
            * clustering.TWIN_WEIGHT_PENALTY
        )
        model_edges["order"] = (model_edges["match_weight"] - penalty).round(6)
        model_edges["identity"] = clustering.identity_edges(model_edges, sub)
        model_edges = model_edges.sort_values(
            ["order", "unique_id_l", "unique_id_r"], ascending=[False, True, True], kind="stable"
        )
        groups = _Constrained(sorted(attrs), attrs, rejected)
        lenient_ids = tuple(clustering.GUARD_COLUMNS.index(c) for c in clustering.STRONG_ID_COLUMNS)
        for r in inside[forced].sort_values(["unique_id_l", "unique_id_r"]).itertuples():
            groups.join(r.unique_id_l, r.unique_id_r, None)
        for r in model_edges.itertuples():
            groups.join(r.unique_id_l, r.unique_id_r, lenient_ids if r.identity else ())
        new = {u: "x" + groups.find(u) for u in attrs}
        mask = out["unique_id"].isin(attrs)
        out.loc[mask, "cluster_id"] = out.loc[mask, "unique_id"].map(new)
        out.loc[mask, "guard_split"] = True
        counts["clusters_split_by_reject"] = len(bad)
    # 2. must-link
    if accepted:
        cid = out.set_index("unique_id")["cluster_id"]
        members = out.groupby("cluster_id")["unique_id"].apply(list).to_dict()
        clusters_ids = sorted(members)
        attrs_c = {c: () for c in clusters_ids}
        cannot_c = [(cid[a], cid[b]) for a, b in rejected if a in cid.index and b in cid.index]
        groups = _Constrained(clusters_ids, attrs_c, cannot_c)
        for a, b in sorted(accepted):
            if a not in cid.index or b not in cid.index or cid[a] == cid[b]:
                continue
            if groups.find(cid[a]) == groups.find(cid[b]):
                continue
            if groups.join(cid[a], cid[b], None):
                counts["clusters_merged_by_accept"] += 1
            else:
                counts["accepts_refused_by_reject"] += 1
        root = {c: groups.find(c) for c in clusters_ids}
        out["cluster_id"] = out["cluster_id"].map(root)
    return out, counts


# ---- figures --------------------------------------------------------------------------------


def figures(
    decisions: pd.DataFrame,
    pairs: pd.DataFrame,
    child_of: pd.Series,
    threshold: float,
    queue_frame: pd.DataFrame,
) -> dict:
    """Decisions so far and how the model's side of the threshold agrees with them: among
    reviewed pairs, precision = accepted among those the model links (p >= threshold), recall
    = model links among those accepted. Current probabilities are used where the pair is still
    scored, else the probability at decision time. Also whether the final children respect the
    decisions."""
    out: dict[str, Any] = {
        "band": [BAND_LOW, BAND_HIGH],
        "queued": int(len(queue_frame)),
        "pending": int(queue_frame["decision"].isna().sum()) if len(queue_frame) else 0,
        "decisions": int(len(decisions)),
        "accepted": int((decisions["decision"] == "accept").sum()) if len(decisions) else 0,
        "rejected": int((decisions["decision"] == "reject").sum()) if len(decisions) else 0,
    }
    if decisions.empty:
        return out
    d = decisions.copy()
    if not pairs.empty:
        cur = pairs.assign(pair_id=pair_ids(pairs["unique_id_l"], pairs["unique_id_r"]))
        cur = cur.set_index("pair_id")["match_probability"]
        d["p"] = d["pair_id"].map(cur).fillna(d["match_probability"])
    else:
        d["p"] = d["match_probability"]
    model_link = d["p"].fillna(0) >= threshold
    accept = d["decision"] == "accept"
    tp = int((model_link & accept).sum())
    out["model_links_reviewed"] = int(model_link.sum())
    out["model_agreement"] = round(float((model_link == accept).mean()), 4)
    out["precision_on_reviewed"] = (
        round(tp / int(model_link.sum()), 4) if model_link.any() else None
    )
    out["recall_on_reviewed"] = round(tp / int(accept.sum()), 4) if accept.any() else None
    same = d["unique_id_l"].map(child_of) == d["unique_id_r"].map(child_of)
    known = d["unique_id_l"].isin(child_of.index) & d["unique_id_r"].isin(child_of.index)
    out["decisions_respected"] = int(((same == accept) & known).sum())
    out["decisions_not_respected"] = int(((same != accept) & known).sum())
    out["decisions_on_withdrawn_records"] = int((~known).sum())
    return out
