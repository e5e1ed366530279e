"""The reachable ceiling of the risk model on a synthetic county: latent vs observable oracle.

The latent oracle (`truth/oracle.parquet`, `synth.events.make_oracle`) knows each household's
hidden state and each child's trait; no model can.  The observable oracle
(`synth.observable_oracle.observable_probability`) is the exact Bayes posterior given only what
the hub could observe before each as-of month (the child's own record, and with `household` the
siblings' too).  This script regenerates the county's frames exactly as `synth.generate.run` did
(same children and seed), computes both observable oracles, and reports AUC / AP of the latent and
observable oracles and of the registered model on the model's test (and validation) rows.

    .venv/bin/python bench/bench_oracle_ceiling.py --home /tmp/demo20k --children 20000 --seed 42
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402

from joinedup.config import Settings  # noqa: E402
from models.dataset import split_months  # noqa: E402
from models.oracle import _child_truth  # noqa: E402
from synth import events as ev_mod  # noqa: E402
from synth import names as nm  # noqa: E402
from synth import process as pr  # noqa: E402
from synth.county import make_county  # noqa: E402
from synth.observable_oracle import observable_probability  # noqa: E402
from warehouse.db import connect  # noqa: E402


def frames(children: int, seed: int, extract: str):
    """The county and its events, regenerated in `synth.generate.run`'s random-number order."""
    rng = np.random.default_rng(seed)
    county = make_county(rng, children, extract, nm.load_names())
    months = ev_mod.child_months(county)
    last = np.datetime64(extract) - np.timedelta64(1, "D")
    outcomes = ev_mod.make_outcomes(rng, county, months, last)
    return county, ev_mod.make_events(rng, county, months, outcomes, extract)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", required=True, help="a demo home with features built")
    p.add_argument("--children", type=int, required=True, help="as given to synth")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
    settings = Settings.from_env(args.home)
    t0 = time.perf_counter()
    county, events = frames(args.children, args.seed, settings.extract_date)
    probs = ev_mod.make_oracle(county)
    seconds = {}
    for household, name in ((False, "observable_own_record"), (True, "observable_household")):
        t = time.perf_counter()
        po = observable_probability(county, events, household=household)
        seconds[name] = round(time.perf_counter() - t, 1)
        probs = probs.merge(po.rename(columns={"p_obs": name}), on=["child", "t"])
    probs["person_id"] = county.children.person_id.to_numpy()[probs["child"]].astype(str)
    probs["as_of"] = pd.to_datetime(pr.month_start(probs["t"].to_numpy()))
    with connect(settings, read_only=True) as con:
        rows = con.execute(
            "SELECT child_id, as_of, label FROM features.child_month WHERE label IS NOT NULL"
        ).df()
        truth, how = _child_truth(settings, con, rows["child_id"].unique())
    rows["as_of"] = pd.to_datetime(rows["as_of"])
    split = split_months(sorted(rows["as_of"].unique()))
    truth["person_id"] = truth["person_id"].astype(str)
    out: dict = {"children": args.children, "seed": args.seed, "child_mapping": how}
    for part in ("test", "validation"):
        d = rows[rows["as_of"].isin(split[part])].merge(truth, on="child_id", how="left")
        d = d.merge(probs, on=["person_id", "as_of"], how="inner")
        figures = {"rows": int(len(d)), "positives": int(d["label"].sum())}
        for col in ("p_true", "observable_own_record", "observable_household"):
            figures[col] = {
                "roc_auc": round(float(roc_auc_score(d["label"], d[col])), 4),
                "average_precision": round(float(average_precision_score(d["label"], d[col])), 4),
                "mean_predicted": round(float(d[col].mean()), 5),
            }
        figures["observed_rate"] = round(float(d["label"].mean()), 5)
        out[part] = figures
    metrics = settings.outputs_dir / "risk_model_metrics.json"
    if metrics.exists():
        m = json.loads(metrics.read_text())
        out["model_test_roc_auc"] = m.get("test", m).get("roc_auc")
    out["seconds"] = {**seconds, "total": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
