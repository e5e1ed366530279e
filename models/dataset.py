"""The risk model's data: labelled or unlabelled rows of `features.child_month`, the hash that
names a model version, the temporal split (`split_months`) and the held-out validation children
(`child_holdout`).

Reproducibility whatever key the agencies use: a child id is a pseudonym derived from record
tokens, so it changes with the key even when every link and event is the same.  Nothing here
may depend on it.  Each child gets a content key instead (`content_keys`: a hash of its rows'
as-of months, features and label, and its ethnicity, the one fairness group that is not a
feature); rows are put in a canonical order by as-of month and content key (`canonical_order`),
the validation children are chosen by content key and seed, the bootstrap draws children in
that order, and the version hash reads content, not ids.  Children with the same content key
are indistinguishable to every figure, so their relative order cannot change one.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from models.features import feature_columns


def load_features(con, labelled: bool = True) -> pd.DataFrame:
    """Rows of features.child_month: the labelled ones (training) or the unlabelled (scoring)."""
    cols = ", ".join(["child_id", "as_of", *feature_columns(), "label"])
    where = "label IS NOT NULL" if labelled else "label IS NULL"
    df = con.execute(
        f"SELECT {cols} FROM features.child_month WHERE {where} ORDER BY as_of, child_id"
    ).df()
    df["as_of"] = pd.to_datetime(df["as_of"])
    return df


#: column `canonical_order` adds: the child's content key
CONTENT_KEY = "content_key"


def _per_child(child_id: pd.Series, row_hashes: np.ndarray) -> pd.Series:
    """child_id -> the wrapping uint64 sum of its rows' hashes (order-free)."""
    codes, children = pd.factorize(child_id)
    acc = np.zeros(len(children), dtype=np.uint64)
    np.add.at(acc, codes, row_hashes.astype(np.uint64))
    return pd.Series(acc, index=children, name=CONTENT_KEY)


def content_keys(df: pd.DataFrame, ethnicity: pd.Series | None = None) -> pd.Series:
    """child_id -> a uint64 key from the child's content only: the (wrapping) sum over its rows
    of a hash of (as_of, features, label), plus a hash of its ethnicity (`ethnicity`, indexed by
    child_id, optional).  pandas' row hash has a fixed key, so the keys repeat across runs."""
    cols = ["as_of", *feature_columns(), "label"]
    keys = _per_child(df["child_id"], pd.util.hash_pandas_object(df[cols], index=False).to_numpy())
    if ethnicity is not None:
        eth = ethnicity.reindex(keys.index).fillna("").astype(str)
        keys += pd.util.hash_pandas_object(eth, index=False).to_numpy(dtype=np.uint64)
    return keys


def tie_break_keys(df: pd.DataFrame, values: np.ndarray) -> pd.Series:
    """child_id -> a uint64 key from per-row `values` (the same rows as `df`): used only to order
    children whose content keys are equal, e.g. by the synthetic oracle's probabilities, which
    the evaluation bootstrap reads but the model never sees."""
    h = pd.util.hash_pandas_object(pd.Series(values), index=False).to_numpy()
    return _per_child(df["child_id"], h)


def canonical_order(
    df: pd.DataFrame, keys: pd.Series, tie_break: pd.Series | None = None
) -> pd.DataFrame:
    """`df` with a CONTENT_KEY column, in (as_of, content key, tie break) order, index reset.
    Children with equal content keys are interchangeable to the model and every production
    figure; `tie_break` (evaluation only) orders them for the figures that are not."""
    out = df.assign(**{CONTENT_KEY: df["child_id"].map(keys).to_numpy(dtype=np.uint64)})
    by = ["as_of", CONTENT_KEY]
    if tie_break is not None:
        out["_tie"] = out["child_id"].map(tie_break).to_numpy(dtype=np.uint64)
        by.append("_tie")
    out = out.sort_values(by, kind="stable").reset_index(drop=True)
    return out.drop(columns=["_tie"], errors="ignore")


def feature_data_hash(df: pd.DataFrame) -> str:
    """sha256 of the labelled feature rows (as_of, features, label, content key; not the child
    ids, which change with the key) in canonical order."""
    cols = ["as_of", *feature_columns(), "label", CONTENT_KEY]
    h = pd.util.hash_pandas_object(df[cols], index=False).to_numpy()
    return hashlib.sha256(h.tobytes()).hexdigest()


def split_months(
    months: list, n_test: int = 6, n_val: int = 0, embargo_months: int = 12
) -> dict[str, list]:
    """Temporal split of the labelled as-of months: test = the last `n_test`; the embargo drops
    the `embargo_months - 1` months before the test so that no training or validation label window
    (12 months) reaches past the first test as-of.  With `n_val` = 0 (the default) training and
    validation share all the months left and `run` separates them by child; with `n_val` > 0 the
    last `n_val` of those months are validation only (and still held-out children)."""
    months = sorted(months)
    test = months[-n_test:]
    rest = months[:-n_test]
    if embargo_months > 0:
        first_test = pd.Timestamp(test[0])
        cut = first_test - pd.DateOffset(months=embargo_months)
        rest = [m for m in rest if pd.Timestamp(m) <= cut]
    val = rest[-n_val:] if n_val > 0 else list(rest)
    train = rest[:-n_val] if n_val > 0 else list(rest)
    if not train or not val or not test:
        raise ValueError(
            f"not enough labelled months ({len(months)}) for a split with {n_test} test, "
            f"{n_val} validation and a {embargo_months}-month embargo"
        )
    return {"train": train, "validation": val, "test": test}


def child_holdout(content_key: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """A stable pseudo-random `fraction` of children, by hash of their content key (never the
    child id: it moves with the agencies' key) and the seed: True = held out."""
    text = content_key.astype("uint64").astype(str) + f"|{seed}"
    h = pd.util.hash_pandas_object(text, index=False).to_numpy()
    return (h % 10_000) < int(round(fraction * 10_000))


def split_rows(
    df: pd.DataFrame,
    n_test: int,
    n_val: int,
    embargo_months: int,
    val_child_fraction: float,
    seed: int,
) -> tuple[dict[str, list], dict[str, np.ndarray]]:
    """The training split of canonically ordered rows (`canonical_order`): the months of each
    part (`split_months`) and a boolean row mask per part.  Validation children are disjoint
    from training children (`child_holdout`): the same child's overlapping label windows would
    otherwise let a flexible model memorise them and flatter validation."""
    split = split_months(sorted(df["as_of"].unique()), n_test, n_val, embargo_months)
    part = {k: df["as_of"].isin(v).to_numpy() for k, v in split.items()}
    val_child = child_holdout(df[CONTENT_KEY], val_child_fraction, seed)
    part["train"] &= ~val_child
    part["validation"] &= val_child
    return split, part
