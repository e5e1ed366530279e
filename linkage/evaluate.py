"""Linkage quality against synthetic truth: pairwise precision/recall/F1, clusters, twins.

Pairs are counted, never enumerated: within a group of n records there are n(n-1)/2 pairs.
"""

from __future__ import annotations

import pandas as pd


def _pairs(sizes: pd.Series) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def pairwise(records: pd.DataFrame) -> dict:
    """`records(child_id, person_id)` (one row per record) -> precision, recall, F1 over pairs."""
    predicted = _pairs(records.groupby("child_id").size())
    true = _pairs(records.groupby("person_id").size())
    tp = _pairs(records.groupby(["child_id", "person_id"]).size())
    precision = tp / predicted if predicted else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "pairs_predicted": predicted,
        "pairs_true": true,
        "pairs_true_positive": tp,
        "precision": round(precision, 5),
        "recall": round(recall, 5),
        "f1": round(f1, 5),
    }


def clusters(records: pd.DataFrame) -> dict:
    """Cluster counts: children found vs persons, exact clusters, split persons, mixed clusters."""
    per_child = records.groupby("child_id")["person_id"].nunique()
    per_person = records.groupby("person_id")["child_id"].nunique()
    exact = records.groupby("child_id").agg(p=("person_id", "nunique"), n=("person_id", "size"))
    person_n = records.groupby("person_id").size()
    exact = exact[exact["p"] == 1].join(
        records.drop_duplicates("child_id").set_index("child_id")["person_id"]
    )
    n_exact = int((exact["n"].values == person_n.reindex(exact["person_id"]).values).sum())
    return {
        "children": int(per_child.size),
        "persons": int(per_person.size),
        "clusters_exact": n_exact,
        "clusters_mixed": int((per_child > 1).sum()),
        "persons_split": int((per_person > 1).sum()),
    }


def twin_false_merges(records: pd.DataFrame, twin_pairs: pd.DataFrame) -> dict:
    """Twin pairs (both present) with records sharing a child id."""
    present = set(records["person_id"])
    tp = twin_pairs[twin_pairs["person_a"].isin(present) & twin_pairs["person_b"].isin(present)]
    if tp.empty:
        return {"twin_pairs": 0, "twin_false_merges": 0, "twin_false_merge_rate": 0.0}
    child_sets = records.groupby("person_id")["child_id"].apply(set)
    merged = sum(
        1
        for a, b in zip(tp["person_a"], tp["person_b"], strict=True)
        if child_sets[a] & child_sets[b]
    )
    return {
        "twin_pairs": int(len(tp)),
        "twin_false_merges": int(merged),
        "twin_false_merge_rate": round(merged / len(tp), 5),
    }


def evaluate(records: pd.DataFrame, twin_pairs: pd.DataFrame) -> dict:
    """All quality figures for `records(child_id, person_id)`; person ids compared as strings."""
    records = records[["child_id", "person_id"]].astype(str)
    return {
        "records_evaluated": int(len(records)),
        **pairwise(records),
        **clusters(records),
        **twin_false_merges(records, twin_pairs.astype(str)),
    }
