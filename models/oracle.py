"""The synthetic oracle's probabilities for the test rows (evaluation only).

Reads `truth_dir/oracle.parquet`, written by the synthetic generator, and maps children to
synthetic persons through `linkage.truth` (imported lazily; absent outside a synthetic run).
Production figures never depend on it: without truth every function here returns None and the
oracle figures are simply left out of metrics.json.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from joinedup.config import Settings


def _child_truth(settings: Settings, con, child_ids: np.ndarray) -> tuple[pd.DataFrame, str]:
    """child_id -> person_id: linkage's truth map when it can be built, else identity (the
    fixture's linked tables use person_id as child_id; elsewhere identity simply matches nothing
    and the oracle figures are left out)."""
    identity = pd.DataFrame({"child_id": child_ids, "person_id": child_ids})
    try:
        from linkage.truth import child_truth
    except ImportError:
        return identity, "identity"
    try:
        m = child_truth(settings, con)
    except duckdb.Error:  # no raw/linked.records layer (fixture warehouse)
        return identity, "identity"
    if m.empty:
        return identity, "identity"
    return m[["child_id", "person_id"]].drop_duplicates("child_id"), "linkage.truth"


#: oracle.parquet's columns: the latent oracle (true risk given the hidden household state and
#: the child's trait) and the observable oracle (the Bayes posterior given the child's own
#: observable history, `synth.observable_oracle`)
LATENT, OBSERVABLE = "p_true", "p_observable"


def oracle_for_rows(
    settings: Settings, con, rows: pd.DataFrame, column: str = LATENT
) -> np.ndarray | None:
    """An oracle's probability for each (child_id, as_of) row, NaN where unknown; None without
    truth (or a truth folder from before that column existed)."""
    path = settings.truth_dir / "oracle.parquet"
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    if column not in pq.read_schema(path).names:
        return None
    orc = pd.read_parquet(path, columns=["person_id", "month", column])
    orc["month"] = pd.to_datetime(orc["month"].astype(str).str[:7] + "-01")
    m, _how = _child_truth(settings, con, rows["child_id"].unique())
    keyed = rows[["child_id", "as_of"]].merge(m, on="child_id", how="left")
    keyed["month"] = keyed["as_of"].dt.to_period("M").dt.to_timestamp()
    keyed = keyed.merge(
        orc.drop_duplicates(["person_id", "month"]), on=["person_id", "month"], how="left"
    )
    return keyed[column].to_numpy(dtype=np.float64)
