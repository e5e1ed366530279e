"""Linkage quality against truth: pairwise precision/recall/F1, clusters, twins, and the same
error rates broken down by the true person's sex, ethnicity and deprivation (`by_group`), because
linkage error is known to fall hardest on minority and deprived groups.

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


#: breakdown dimensions: column of the truth attributes -> how to label its values
GROUP_DIMENSIONS: tuple[str, ...] = ("sex", "ethnicity", "deprivation")


def deprivation_band(imd_decile: pd.Series) -> pd.Series:
    """IMD decile (1 = most deprived) -> quintile band label."""
    d = pd.to_numeric(imd_decile, errors="coerce")
    q = ((d - 1) // 2 + 1).astype("Int64")
    labels = {1: "Q1 most deprived", 2: "Q2", 3: "Q3", 4: "Q4", 5: "Q5 least deprived"}
    return q.map(labels).fillna("unknown").astype(str)


def by_group(records: pd.DataFrame, column: str) -> list[dict]:
    """Error rates per value of `column` (a property of the true person) for
    `records(child_id, person_id, column)`:

    - `link_rate`: share of the group's records that sit in a child with another record;
      `true_link_rate`: share whose person really has another record (the rate to expect);
    - `missed_link_rate`: persons with 2+ records whose records were split over 2+ children;
    - `false_merge_rate`: persons whose records share a child with another person's records;
    - pairwise `recall` (the group's true pairs found) and `precision` (of predicted pairs with a
      record of the group, the share that are true), and F1."""
    r = records[["child_id", "person_id", column]].astype(str)
    child_n = r.groupby("child_id").size()
    person_n = r.groupby("person_id").size()
    persons_per_child = r.groupby("child_id")["person_id"].nunique()
    r = r.assign(
        child_n=r["child_id"].map(child_n).to_numpy(),
        person_n=r["person_id"].map(person_n).to_numpy(),
        mixed=r["child_id"].map(persons_per_child).to_numpy() > 1,
    )
    per_person = r.groupby("person_id").agg(
        group=(column, "first"),
        n=("person_id", "size"),
        children=("child_id", "nunique"),
        mixed=("mixed", "any"),
    )
    # predicted pairs with at least one record of the group: pairs(n_c) - pairs(n_c - m_cg)
    m = r.groupby(["child_id", column]).size().rename("m").reset_index()
    m["n"] = m["child_id"].map(child_n).to_numpy()
    m["pairs"] = m["n"] * (m["n"] - 1) // 2 - (m["n"] - m["m"]) * (m["n"] - m["m"] - 1) // 2
    predicted = m.groupby(column)["pairs"].sum()
    cp = r.groupby(["child_id", "person_id", column]).size().rename("k").reset_index()
    cp["tp"] = cp["k"] * (cp["k"] - 1) // 2
    tp = cp.groupby(column)["tp"].sum()
    true = (per_person["n"] * (per_person["n"] - 1) // 2).groupby(per_person["group"]).sum()
    out = []
    for g, grp in r.groupby(column):
        pp = per_person[per_person["group"] == g]
        multi = pp[pp["n"] > 1]
        t_pairs, p_pairs, hits = int(true.get(g, 0)), int(predicted.get(g, 0)), int(tp.get(g, 0))
        precision = hits / p_pairs if p_pairs else 1.0
        recall = hits / t_pairs if t_pairs else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append(
            {
                "group": g,
                "persons": int(len(pp)),
                "records": int(len(grp)),
                "link_rate": round(float((grp["child_n"] > 1).mean()), 5),
                "true_link_rate": round(float((grp["person_n"] > 1).mean()), 5),
                "missed_link_rate": round(float((multi["children"] > 1).mean()), 5)
                if len(multi)
                else 0.0,
                "false_merge_rate": round(float(pp["mixed"].mean()), 5),
                "precision": round(precision, 5),
                "recall": round(recall, 5),
                "f1": round(f1, 5),
            }
        )
    if column == "deprivation":  # bands in order, most deprived first
        return sorted(out, key=lambda d: d["group"])
    return sorted(out, key=lambda d: (-d["persons"], d["group"]))


def breakdown(records: pd.DataFrame) -> dict[str, list[dict]]:
    """`by_group` for each of GROUP_DIMENSIONS present; deprivation from `imd_decile`."""
    r = records
    if "imd_decile" in r.columns and "deprivation" not in r.columns:
        r = r.assign(deprivation=deprivation_band(r["imd_decile"]))
    return {dim: by_group(r, dim) for dim in GROUP_DIMENSIONS if dim in r.columns}


def evaluate(records: pd.DataFrame, twin_pairs: pd.DataFrame) -> dict:
    """All quality figures for `records(child_id, person_id[, sex, ethnicity, imd_decile])`;
    person ids compared as strings.  With the attribute columns, `by_group` breaks the error
    rates down by sex, ethnicity and deprivation quintile."""
    groups = breakdown(records)
    records = records[["child_id", "person_id"]].astype(str)
    out = {
        "records_evaluated": int(len(records)),
        **pairwise(records),
        **clusters(records),
        **twin_false_merges(records, twin_pairs.astype(str)),
    }
    if groups:
        out["by_group"] = groups
    return out
