"""Clustering scored pairs into children, with a guard against chaining twins, and stable ids.

1. Connected components over pairs at or above the threshold (numpy label propagation on
   record positions; a cluster is labelled by its smallest record key, as Splink's
   `cluster_pairwise_predictions_at_threshold` labels it), after dropping every
   edge whose two records conflict: both have sex M/F and it differs, or both have an NHS token
   (or a UPN token) and they differ -- unless first-name and surname filters and dob tokens all
   agree (equal v2 name filters mean equal names under the same dob salt) and
   the postcode sectors do not differ, which is far more likely a typo in the number than two
   children (an "identity edge").
   Edges with a twin signature (same dob and surname, very different first names by the name
   filters' Hamming similarity, no shared NHS/UPN) are dropped too.  Only *verified* identifiers are guards (`strong_ids`).
2. A component can still hold a conflicting pair through a chain (A-B, B-C with A, C twins).
   Such components are re-clustered greedily: their edges in descending match weight (edges
   whose first names differ strongly last), joining two groups only when no conflict arises
   (cannot-link constraints; identity edges may join groups with different NHS/UPN tokens).
   Every guard test is vectorised: edges are resolved to node positions once, attributes
   compared as integer codes, first-name similarity computed on uint64 words of the filters
   (memory-lean and linear at 1M records).
3. Child ids: a cluster keeps the previous id held by most of its records; a previous id goes to
   the cluster holding most of its records; other clusters get a fresh deterministic id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from joinedup.contract import BLOOM_BITS, BLOOM_HEX_LENGTH

#: attributes on which two records of one child must not disagree (when both are present)
GUARD_COLUMNS: tuple[str, ...] = ("nhs_token", "upn_token", "sex")
#: guard attributes an identity edge may override (a typo in a number)
STRONG_ID_COLUMNS: tuple[str, ...] = ("nhs_token", "upn_token")
#: node columns the twin and identity rules need besides the guard columns
NAME_COLUMNS: tuple[str, ...] = (
    "first_name_bf",
    "surname_bf",
    "dob_token",
    "postcode_sector",
)
#: an edge between records with the same dob and surname but first names this dissimilar (the
#: filters' Hamming similarity, `linkage.encoding.hamming_similarity`; unrelated names score
#: ~0.17 on average) and no shared NHS/UPN token is dropped: the typical twin pair
TWIN_DICE_DROP = 0.35
#: inside a component that must be re-clustered, edges whose first names differ this much are
#: considered last (their match weight is lowered by TWIN_WEIGHT_PENALTY)
TWIN_DICE_PENALTY = 0.5
TWIN_WEIGHT_PENALTY = 10.0


class _Edges:
    """Edges resolved once to node positions, with per-node attribute codes, so every guard
    test is a vectorised numpy comparison (no per-column string lookups)."""

    def __init__(self, edges: pd.DataFrame, nodes: pd.DataFrame) -> None:
        index = pd.Index(nodes["unique_id"].to_numpy())
        self.nodes = nodes
        self.left = index.get_indexer(edges["unique_id_l"].to_numpy())
        self.right = index.get_indexer(edges["unique_id_r"].to_numpy())
        self.known = (self.left >= 0) & (self.right >= 0)
        self._codes: dict[str, np.ndarray] = {}

    def codes(self, col: str) -> np.ndarray:
        """Per-node integer code of `col` (-1 where missing)."""
        if col not in self._codes:
            codes, _ = pd.factorize(self.nodes[col], use_na_sentinel=True)
            self._codes[col] = codes
        return self._codes[col]

    def _sides(self, col: str) -> tuple[np.ndarray, np.ndarray]:
        c = self.codes(col)
        a = np.where(self.known, c[np.maximum(self.left, 0)], -1)
        b = np.where(self.known, c[np.maximum(self.right, 0)], -1)
        return a, b

    def compare(self, col: str) -> tuple[np.ndarray, np.ndarray]:
        """(both present and equal, both present and different) per edge."""
        a, b = self._sides(col)
        both = (a >= 0) & (b >= 0)
        return both & (a == b), both & (a != b)

    def identity(self) -> np.ndarray:
        ok = np.ones(len(self.left), dtype=bool)
        for col in ("first_name_bf", "surname_bf", "dob_token"):
            ok &= self.compare(col)[0]
        return ok & ~self.compare("postcode_sector")[1]

    def conflict(self, strong_ids: Sequence[str] = STRONG_ID_COLUMNS) -> np.ndarray:
        strong = np.zeros(len(self.left), dtype=bool)
        for col in strong_ids:
            strong |= self.compare(col)[1]
        if strong.any():
            strong &= ~self.identity()
        return strong | self.compare("sex")[1]

    def first_name_dice(self) -> np.ndarray:
        """Hamming similarity (1 - 2 * differing bits / bits) of the first-name filters per edge,
        floored at 0 (NaN where either is absent).  Named for the v1 Dice it replaces."""
        words = _bloom_words(self.nodes["first_name_bf"])
        out = np.full(len(self.left), np.nan)
        if words is None:  # filters of unexpected length: the slow, exact path
            bf = self.nodes["first_name_bf"]
            ints = [int(h, 16) if isinstance(h, str) and h else None for h in bf]
            for k, (a, b) in enumerate(zip(self.left, self.right, strict=True)):
                if a >= 0 and b >= 0 and ints[a] is not None and ints[b] is not None:
                    differ = (ints[a] ^ ints[b]).bit_count()
                    out[k] = max(0.0, 1.0 - 2.0 * differ / BLOOM_BITS)
            return out
        present = self.codes_present("first_name_bf")
        ok = self.known & present[np.maximum(self.left, 0)] & present[np.maximum(self.right, 0)]
        a, b = self.left[ok], self.right[ok]
        differ = np.bitwise_count(words[a] ^ words[b]).sum(axis=1, dtype=np.int64)
        out[ok] = np.maximum(0.0, 1.0 - 2.0 * differ / BLOOM_BITS)
        return out

    def codes_present(self, col: str) -> np.ndarray:
        s = self.nodes[col]
        return (s.notna() & (s.astype("string") != "")).fillna(False).to_numpy(dtype=bool)

    def twin(self, dice: np.ndarray, max_dice: float) -> np.ndarray:
        same = {c: self.compare(c)[0]
                for c in ("dob_token", "surname_bf", "nhs_token", "upn_token")}  # fmt: skip
        with np.errstate(invalid="ignore"):
            low = np.nan_to_num(dice, nan=np.inf) < max_dice
        return (
            same["dob_token"] & same["surname_bf"] & low & ~same["nhs_token"] & ~same["upn_token"]
        )


def _bloom_words(bf: pd.Series) -> np.ndarray | None:
    """Hex Bloom filters -> uint64 words (n x BLOOM_BITS/64); missing -> zeros; None if any
    filter has another length."""
    s = bf.astype("string").fillna("")
    width = BLOOM_HEX_LENGTH
    lengths = s.str.len()
    if not ((lengths == 0) | (lengths == width)).all():
        return None
    filled = s.where(lengths == width, "0" * width)
    try:
        buf = bytes.fromhex("".join(filled.tolist()))
    except ValueError:
        return None
    return np.frombuffer(buf, dtype=">u8").reshape(len(s), width // 16).astype(np.uint64)


def identity_edges(edges: pd.DataFrame, nodes: pd.DataFrame) -> pd.Series:
    """True where first name, surname and dob tokens all agree and postcode sectors do not
    differ: a strong-id difference on such an edge is taken for a typo."""
    return pd.Series(_Edges(edges, nodes).identity(), index=edges.index)


def conflict_mask(
    edges: pd.DataFrame, nodes: pd.DataFrame, strong_ids: Sequence[str] = STRONG_ID_COLUMNS
) -> pd.Series:
    """True for edges whose two records disagree on a guard attribute (both present): sex, or
    one of the verified `strong_ids` except on identity edges."""
    return pd.Series(_Edges(edges, nodes).conflict(strong_ids), index=edges.index)


def first_name_dice(edges: pd.DataFrame, nodes: pd.DataFrame) -> pd.Series:
    """Hamming similarity of the first-name filters of each edge's records (NaN if absent);
    the name is kept from v1, where it was Dice."""
    return pd.Series(_Edges(edges, nodes).first_name_dice(), index=edges.index, dtype=float)


def twin_signature(edges: pd.DataFrame, nodes: pd.DataFrame, max_dice: float) -> pd.Series:
    """True for edges that look like two children of one family: same dob, first names with
    similarity below `max_dice` (same surname filter), and no shared NHS or UPN token."""
    e = _Edges(edges, nodes)
    return pd.Series(e.twin(e.first_name_dice(), max_dice), index=edges.index)


def _component_labels(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of n nodes: the smallest node position of each node's component."""
    labels = np.arange(n)
    if len(left) == 0:
        return labels
    while True:
        m = np.minimum(labels[left], labels[right])
        before = labels.copy()
        np.minimum.at(labels, left, m)
        np.minimum.at(labels, right, m)
        while True:  # pointer jumping: every node points at its label's label
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(labels, before):
            return labels


def _components(
    nodes: pd.DataFrame, left: np.ndarray, right: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """(unique_id, cluster_id) for every node, cluster_id = the smallest record key of its
    connected component (what Splink's connected components give), computed in numpy; and the
    component label (a node position) of every node."""
    ids = nodes["unique_id"].astype(str).to_numpy()
    labels = _component_labels(len(ids), left, right)
    order = np.argsort(ids.astype("U"), kind="stable")
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    best = rank.copy()
    np.minimum.at(best, labels, rank)  # per label: the rank of its smallest key
    cluster = ids[order[best[labels]]]
    return pd.DataFrame({"unique_id": ids, "cluster_id": cluster}), labels


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


def guarded_clusters(
    nodes: pd.DataFrame,
    edges: pd.DataFrame,
    threshold: float,
    strong_ids: Sequence[str] = STRONG_ID_COLUMNS,
) -> pd.DataFrame:
    """`nodes(unique_id, GUARD_COLUMNS, NAME_COLUMNS)`, `edges(unique_id_l, unique_id_r,
    match_weight, match_probability)` -> `(unique_id, cluster_id, guard_split)`; no cluster
    holds a conflicting pair.

    `strong_ids` are the identifier columns trusted as verified (NHS numbers carry a modulus-11
    check digit, UPNs a check letter): two records with different values are never one child
    (unless an identity edge says the number was mistyped).  An identifier that is known to be
    corrupted in true duplicates (e.g. FEBRL's soc_sec_id) must not be listed: it then counts
    only as evidence in the match weight."""
    strong_ids = tuple(strong_ids)
    guard = (*strong_ids, "sex")
    nodes = nodes.drop_duplicates("unique_id").reset_index(drop=True)
    edges = edges[edges["match_probability"] >= threshold].reset_index(drop=True)
    e = _Edges(edges, nodes)
    dice = e.first_name_dice()
    keep = e.known & ~e.conflict(strong_ids) & ~e.twin(dice, TWIN_DICE_DROP)
    left, right = e.left[keep], e.right[keep]
    clusters, comp = _components(nodes, left, right)
    clusters["guard_split"] = False
    conflicted = np.zeros(len(nodes), dtype=bool)
    for col in guard:
        codes = e.codes(col)
        present = codes >= 0
        distinct = (
            pd.DataFrame({"c": comp[present], "v": codes[present]})
            .drop_duplicates()
            .groupby("c")
            .size()
        )
        bad = np.zeros(len(nodes), dtype=bool)
        bad[distinct.index[distinct > 1].to_numpy()] = True
        conflicted |= bad[comp]
    if not conflicted.any():
        return clusters
    sub = nodes[conflicted]
    attrs = {
        r.unique_id: tuple(None if pd.isna(v) else v for v in (getattr(r, c) for c in guard))
        for r in sub.itertuples(index=False)
    }
    groups = _Groups(attrs)
    kept = np.flatnonzero(keep)
    inside_pos = kept[conflicted[e.left[kept]] & conflicted[e.right[kept]]]
    inside = edges.iloc[inside_pos].copy()
    penalty = e.twin(dice, TWIN_DICE_PENALTY)[inside_pos] * TWIN_WEIGHT_PENALTY
    weight = inside["match_weight"].to_numpy() if "match_weight" in inside else 0.0
    # rounded, then ids: the order must not depend on float noise or on the input row order
    inside["order"] = np.round(weight - penalty, 6)
    inside["identity"] = e.identity()[inside_pos]
    inside = inside.sort_values(
        ["order", "unique_id_l", "unique_id_r"], ascending=[False, True, True], kind="stable"
    )
    lenient = tuple(guard.index(c) for c in strong_ids)
    for r in inside.itertuples():
        groups.join(r.unique_id_l, r.unique_id_r, lenient if r.identity else ())
    new_id = {u: f"{groups.find(u)}" for u in attrs}
    clusters.loc[conflicted, "cluster_id"] = clusters.loc[conflicted, "unique_id"].map(new_id)
    clusters.loc[conflicted, "guard_split"] = True
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
