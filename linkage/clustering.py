"""Clustering scored pairs into children, with a guard against chaining twins, and stable ids.

1. Splink's connected components over pairs at or above the threshold, after dropping every
   edge whose two records conflict: both have sex M/F and it differs, or both have an NHS token
   (or a UPN token) and they differ -- unless first name, surname and dob tokens all agree and
   the postcode sectors do not differ, which is far more likely a typo in the number than two
   children (an "identity edge").
   Edges with a twin signature (same dob, very different first names, no shared NHS/UPN) are
   dropped too.
2. A component can still hold a conflicting pair through a chain (A-B, B-C with A, C twins).
   Such components are re-clustered greedily: their edges in descending match weight (edges
   whose first names differ strongly last), joining two groups only when no conflict arises
   (cannot-link constraints; identity edges may join groups with different NHS/UPN tokens).
3. Child ids: a cluster keeps the previous id held by most of its records; a previous id goes to
   the cluster holding most of its records; other clusters get a fresh deterministic id.
"""

from __future__ import annotations

import hashlib

import duckdb
import pandas as pd
from splink import DuckDBAPI
from splink.clustering import cluster_pairwise_predictions_at_threshold

#: attributes on which two records of one child must not disagree (when both are present)
GUARD_COLUMNS: tuple[str, ...] = ("nhs_token", "upn_token", "sex")
#: guard attributes an identity edge may override (a typo in a number)
STRONG_ID_COLUMNS: tuple[str, ...] = ("nhs_token", "upn_token")
#: node columns the twin and identity rules need besides the guard columns
NAME_COLUMNS: tuple[str, ...] = (
    "first_name_bf",
    "first_name_soundex_token",
    "first_name_token",
    "surname_token",
    "dob_token",
    "postcode_sector",
)
#: an edge between records with the same dob but first names this dissimilar (Bloom Dice, and
#: different Soundex) and no shared NHS/UPN token is dropped: the typical twin (or sibling) pair
TWIN_DICE_DROP = 0.2
#: inside a component that must be re-clustered, edges whose first names differ this much are
#: considered last (their match weight is lowered by TWIN_WEIGHT_PENALTY)
TWIN_DICE_PENALTY = 0.5
TWIN_WEIGHT_PENALTY = 10.0


def _compare(edges: pd.DataFrame, attrs: pd.DataFrame, col: str) -> tuple[pd.Series, pd.Series]:
    """(both present and equal, both present and different) for one node attribute."""
    left = edges["unique_id_l"].map(attrs[col])
    right = edges["unique_id_r"].map(attrs[col])
    both = (left.notna() & right.notna()).fillna(False).astype(bool)
    equal = (left == right).fillna(False).astype(bool)
    return both & equal, both & ~equal


def identity_edges(edges: pd.DataFrame, nodes: pd.DataFrame) -> pd.Series:
    """True where first name, surname and dob tokens all agree and postcode sectors do not
    differ: a strong-id difference on such an edge is taken for a typo."""
    attrs = nodes.set_index("unique_id")
    ok = pd.Series(True, index=edges.index)
    for col in ("first_name_token", "surname_token", "dob_token"):
        ok &= _compare(edges, attrs, col)[0]
    return ok & ~_compare(edges, attrs, "postcode_sector")[1]


def conflict_mask(edges: pd.DataFrame, nodes: pd.DataFrame) -> pd.Series:
    """True for edges whose two records disagree on a guard attribute (both present), except
    NHS/UPN differences on identity edges."""
    attrs = nodes.set_index("unique_id")
    strong = pd.Series(False, index=edges.index)
    for col in STRONG_ID_COLUMNS:
        strong |= _compare(edges, attrs, col)[1]
    if strong.any():
        strong &= ~identity_edges(edges, nodes)
    return strong | _compare(edges, attrs, "sex")[1]


def first_name_dice(edges: pd.DataFrame, nodes: pd.DataFrame) -> pd.Series:
    """Dice similarity of the first-name Bloom filters of each edge's records (NaN if absent)."""
    bf = nodes.set_index("unique_id")["first_name_bf"].dropna()
    ints = {u: int(h, 16) for u, h in bf.items() if h}
    counts = {u: v.bit_count() for u, v in ints.items()}
    out = []
    for a, b in zip(edges["unique_id_l"], edges["unique_id_r"], strict=True):
        if a in ints and b in ints and counts[a] + counts[b]:
            out.append(2 * (ints[a] & ints[b]).bit_count() / (counts[a] + counts[b]))
        else:
            out.append(float("nan"))
    return pd.Series(out, index=edges.index, dtype=float)


def twin_signature(edges: pd.DataFrame, nodes: pd.DataFrame, max_dice: float) -> pd.Series:
    """True for edges that look like two children of one family: same dob, first names with
    Dice below `max_dice` and different Soundex, and no shared NHS or UPN token."""
    attrs = nodes.set_index("unique_id")
    same = {}
    for col in ("dob_token", "first_name_soundex_token", "nhs_token", "upn_token"):
        left = edges["unique_id_l"].map(attrs[col])
        right = edges["unique_id_r"].map(attrs[col])
        same[col] = (left.notna() & right.notna() & (left == right)).fillna(False).astype(bool)
    dice = first_name_dice(edges, nodes)
    return (
        same["dob_token"]
        & (dice < max_dice).fillna(False)
        & ~same["first_name_soundex_token"]
        & ~same["nhs_token"]
        & ~same["upn_token"]
    )


def _components(nodes: pd.DataFrame, edges: pd.DataFrame, threshold: float) -> pd.DataFrame:
    con = duckdb.connect(":memory:")
    try:
        db_api = DuckDBAPI(connection=con)
        out = cluster_pairwise_predictions_at_threshold(
            nodes[["unique_id"]],
            edges[["unique_id_l", "unique_id_r", "match_probability"]],
            db_api=db_api,
            node_id_column_name="unique_id",
            threshold_match_probability=threshold,
        )
        return out.as_pandas_dataframe()[["unique_id", "cluster_id"]]
    finally:
        con.close()


class _Groups:
    """Union-find that refuses to join groups with conflicting guard attributes."""

    def __init__(self, attrs: dict[str, tuple]) -> None:
        self.parent = {u: u for u in attrs}
        self.values = {u: [({v} if v is not None else set()) for v in a] for u, a in attrs.items()}

    def find(self, u: str) -> str:
        while self.parent[u] != u:
            self.parent[u] = self.parent[self.parent[u]]
            u = self.parent[u]
        return u

    def join(self, a: str, b: str, lenient: tuple[int, ...] = ()) -> bool:
        """Join the groups of a and b unless they conflict on an attribute not in `lenient`."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        va, vb = self.values[ra], self.values[rb]
        for i, (x, y) in enumerate(zip(va, vb, strict=True)):
            if x and y and x != y and i not in lenient:
                return False
        self.parent[rb] = ra
        self.values[ra] = [x | y for x, y in zip(va, vb, strict=True)]
        return True


def guarded_clusters(nodes: pd.DataFrame, edges: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """`nodes(unique_id, GUARD_COLUMNS, NAME_COLUMNS)`, `edges(unique_id_l, unique_id_r,
    match_weight, match_probability)` -> `(unique_id, cluster_id, guard_split)`; no cluster
    holds a conflicting pair."""
    edges = edges[edges["match_probability"] >= threshold]
    edges = edges[~conflict_mask(edges, nodes) & ~twin_signature(edges, nodes, TWIN_DICE_DROP)]
    clusters = _components(nodes, edges, threshold)
    clusters["guard_split"] = False
    member = nodes.merge(clusters, on="unique_id")
    distinct = member.groupby("cluster_id")[list(GUARD_COLUMNS)].nunique()
    conflicted = distinct.index[(distinct > 1).any(axis=1)]
    if len(conflicted) == 0:
        return clusters
    sub = member[member["cluster_id"].isin(conflicted)]
    attrs = {
        r.unique_id: tuple(
            None if pd.isna(v) else v for v in (getattr(r, c) for c in GUARD_COLUMNS)
        )
        for r in sub.itertuples(index=False)
    }
    groups = _Groups(attrs)
    inside = edges[edges["unique_id_l"].isin(attrs) & edges["unique_id_r"].isin(attrs)].copy()
    penalty = twin_signature(inside, nodes, TWIN_DICE_PENALTY) * TWIN_WEIGHT_PENALTY
    weight = inside["match_weight"] if "match_weight" in inside else 0.0
    # rounded, then ids: the order must not depend on float noise or on the input row order
    inside["order"] = (weight - penalty).round(6)
    inside["identity"] = identity_edges(inside, nodes)
    inside = inside.sort_values(
        ["order", "unique_id_l", "unique_id_r"], ascending=[False, True, True], kind="stable"
    )
    lenient = tuple(GUARD_COLUMNS.index(c) for c in STRONG_ID_COLUMNS)
    for r in inside.itertuples():
        groups.join(r.unique_id_l, r.unique_id_r, lenient if r.identity else ())
    new_id = {u: f"{groups.find(u)}" for u in attrs}
    mask = clusters["unique_id"].isin(attrs)
    clusters.loc[mask, "cluster_id"] = clusters.loc[mask, "unique_id"].map(new_id)
    clusters.loc[mask, "guard_split"] = True
    return clusters


def fresh_id(seed: str, taken: set[str]) -> str:
    """ "C" + 10 hex chars derived from `seed`; rehashed until not in `taken`."""
    n = 0
    while True:
        cid = "C" + hashlib.sha256(f"child|{seed}|{n}".encode()).hexdigest()[:10]
        if cid not in taken:
            return cid
        n += 1


def assign_child_ids(
    clusters: pd.DataFrame, previous: pd.DataFrame | None
) -> tuple[pd.Series, list[tuple[str, str, str]]]:
    """Stable ids. `clusters(unique_id, cluster_id)`, `previous(unique_id, child_id)` ->
    (child id per cluster_id, history rows (child_id, event, detail))."""
    history: list[tuple[str, str, str]] = []
    prev = previous if previous is not None else pd.DataFrame(columns=["unique_id", "child_id"])
    m = clusters[["unique_id", "cluster_id"]].merge(prev, on="unique_id", how="left")
    counts = (
        m.dropna(subset=["child_id"])
        .groupby(["cluster_id", "child_id"])
        .size()
        .reset_index(name="n")
    )
    # each previous id goes to the cluster holding most of its records (ties: smaller cluster id)
    counts = counts.sort_values(["n", "child_id", "cluster_id"], ascending=[False, True, True])
    assigned: dict[str, str] = {}
    used: set[str] = set()
    for r in counts.itertuples(index=False):
        if r.cluster_id in assigned or r.child_id in used:
            continue
        assigned[r.cluster_id] = r.child_id
        used.add(r.child_id)
    taken = set(prev["child_id"].dropna()) | used
    seeds = clusters.groupby("cluster_id")["unique_id"].min()
    for cid in sorted(seeds.index, key=lambda c: seeds[c]):
        if cid not in assigned:
            assigned[cid] = fresh_id(seeds[cid], taken)
            taken.add(assigned[cid])
    # history
    by_cluster = counts.groupby("cluster_id")["child_id"].apply(list).to_dict()
    split_from: dict[str, list[str]] = {}
    for cid, olds in by_cluster.items():
        new = assigned[cid]
        for old in olds:
            if old == new:
                continue
            if old in used:
                split_from.setdefault(new, []).append(old)
            else:
                history.append((new, "merged", f"absorbed {old}"))
    for new, olds in split_from.items():
        history.append((new, "split", "records moved from " + ", ".join(sorted(olds))))
    for cid, new in assigned.items():
        if cid not in by_cluster:
            history.append((new, "new", "new child"))
    for old in sorted(set(prev["child_id"].dropna()) - set(assigned.values())):
        absorbed = any(h[2] == f"absorbed {old}" for h in history)
        if not absorbed:
            history.append((old, "retired", "no current records"))
    return pd.Series(assigned, name="child_id"), history
