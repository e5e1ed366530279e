"""How often the deployment gate refuses a model it should promote, and promotes one it should
refuse: the gate's error rates over many synthetic counties.

For each county (`--children`, seeds `--seed` .. `--seed + --counties - 1`) the synthetic truth
gives every child-month of the test period (the last six as-of months with a whole 12-month
label window, as `models.dataset.split_months`): the latent oracle's probability, the label (an
outcome in the 12 months from the as-of month), and the child's sex, ethnicity and deprivation
band; children looked after in the 12 months before are left out, as `models.features` does
(children born in the as-of month itself stay in, where the features leave them out; every
child is counted, where the pipeline sees only those the agencies recorded).
Then, with the same metrics, fairness audit and gate code the pipeline uses:

- **truth**: the oracle's probabilities scored as a model.  Calibrated in every group by
  construction, so every refusal of a calibration gap is a false refusal;
- **miscalibrated**: the truth with one group's probabilities raised by `--shift` (1 percentage
  point), once for every group of every dimension the audit reports: a refusal is a correct one.

Each model is judged by every gate given (default: version 2 as agreed on 2026-11-23 and the
committed `models/gate.toml`).  The trained model's refusal rate needs the whole pipeline per
county: `--ours HOME [HOME ...]` re-judges the metrics.json of demo homes already run.

    .venv/bin/python bench/bench_gate.py --children 20000 --counties 20
    .venv/bin/python bench/bench_gate.py --ours /tmp/county43 /tmp/county44

This is evaluation code: it reads synthetic truth and never runs in the pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from joinedup.config import Settings  # noqa: E402
from linkage.evaluate import deprivation_band  # noqa: E402
from models import fairness  # noqa: E402
from models import gate as gates  # noqa: E402
from models.evaluation import bootstrap_weights, evaluate  # noqa: E402
from synth import events as ev_mod  # noqa: E402
from synth import names as nm  # noqa: E402
from synth import process as pr  # noqa: E402
from synth.county import make_county  # noqa: E402

#: gate version 2 as pre-registered on 2026-11-23 (git history of models/gate.toml)
GATE_V2 = gates.Gate(
    version="2",
    agreed="2026-11-23",
    performance={
        "min_roc_auc": 0.70,
        "min_roc_auc_ci_lower": 0.65,
        "min_precision_at_capacity": 0.05,
        "max_ece": 0.005,
        "min_auc_ratio_to_oracle": 0.80,
    },
    fairness={
        "min_positives": 20,
        "max_fnr_gap": 0.10,
        "max_calibration_gap": 0.005,
        "dimensions": ["sex", "ethnicity", "deprivation"],
        "chance_test_alpha": 0.05,
        "max_standard_error_share": 1.0,
    },
)
SEX = {"M": "male", "F": "female"}
TEST_MONTHS = 6


def test_rows(children: int, seed: int, extract: str) -> pd.DataFrame:
    """The truth-level test period of one county: child, month, p, y and the three groups."""
    rng = np.random.default_rng(seed)
    county = make_county(rng, children, extract, nm.load_names())
    months = ev_mod.child_months(county)
    last = np.datetime64(extract) - np.timedelta64(1, "D")
    outcomes = ev_mod.make_outcomes(rng, county, months, last)
    oracle = ev_mod.make_oracle(county)
    n = county.months
    first_test = n - pr.HORIZON - TEST_MONTHS + 1
    test_t = np.arange(first_test, first_test + TEST_MONTHS)
    rows = oracle[oracle["t"].isin(test_t)][["child", "t", "p_true"]].reset_index(drop=True)
    o_t = (outcomes["date"].to_numpy().astype("datetime64[M]") - pr.HISTORY_START).astype(np.int64)
    out = pd.DataFrame({"child": outcomes["child"].to_numpy(), "ot": o_t,
                        "la": (outcomes["type"] == "looked_after_start").to_numpy()})  # fmt: skip
    y = np.zeros(len(rows), dtype=np.int8)
    keep = np.ones(len(rows), dtype=bool)
    for t in test_t:
        at = rows["t"].to_numpy() == t
        ids = rows["child"].to_numpy()
        hit = out[(out["ot"] >= t) & (out["ot"] < t + pr.HORIZON)]["child"].unique()
        looked_after = out[out["la"] & (out["ot"] >= t - 12) & (out["ot"] < t)]["child"].unique()
        y[at & np.isin(ids, hit)] = 1
        keep[at & np.isin(ids, looked_after)] = False
    rows["y"] = y
    rows = rows[keep].reset_index(drop=True)
    kids = county.children
    c = rows["child"].to_numpy()
    rows["sex"] = pd.Series(kids["sex"].to_numpy()[c]).map(SEX).to_numpy()
    rows["ethnicity"] = (
        pd.Series(kids["ethnicity"].to_numpy()[c]).map(fairness.ETHNICITY_LABELS).to_numpy()
    )
    rows["deprivation"] = deprivation_band(pd.Series(kids["imd_decile"].to_numpy()[c])).to_numpy()
    return rows


def judge(rows: pd.DataFrame, p: np.ndarray, W: np.ndarray, settings: Settings, gate_list):
    """Metrics, fairness audit and each gate's outcome for probabilities `p` on `rows`."""
    y = rows["y"].to_numpy()
    months = rows["t"].to_numpy()
    child = rows["child"].to_numpy()
    cap = settings.capacity_per_month
    m = evaluate(y, p, months, child, cap, n_boot=W.shape[1], seed=settings.seed,
                 oracle=rows["p_true"].to_numpy(np.float64), weights=W)  # fmt: skip
    groups = rows[list(fairness.DIMENSIONS)]
    m["fairness"] = fairness.audit(y, p, months, child, groups, cap, W, summary_only=True)
    return {g.version: gates.check(m, m["fairness"], g) for g in gate_list}, m


def _failed(outcome: dict) -> list[str]:
    return [c["name"] for c in outcome["checks"] if c["passed"] is False]


def run_counties(args, gate_list) -> dict:
    settings = Settings.from_env("/tmp/bench_gate_unused")
    results = {"truth": [], "miscalibrated": []}
    for i in range(args.counties):
        seed = args.seed + i
        t0 = time.perf_counter()
        rows = test_rows(args.children, seed, settings.extract_date)
        W = bootstrap_weights(rows["child"].to_numpy(), args.n_boot, seed)
        p = rows["p_true"].to_numpy(np.float64)
        outcome, m = judge(rows, p, W, settings, gate_list)
        results["truth"].append({"seed": seed, "rows": len(rows), "positives": int(rows["y"].sum()),
                                 "roc_auc": m["roc_auc"], "ece": m["ece"],
                                 **{v: _failed(o) for v, o in outcome.items()}})  # fmt: skip
        for dim in fairness.DIMENSIONS:
            for g in m["fairness"]["dimensions"][dim]["groups"]:
                sel = (rows[dim] == g["group"]).to_numpy()
                q = np.where(sel, np.minimum(p + args.shift, 1.0), p)
                out, _ = judge(rows, q, W, settings, gate_list)
                results["miscalibrated"].append(
                    {
                        "seed": seed,
                        "dimension": dim,
                        "group": g["group"],
                        "positives": g["positives"],
                        **{v: _failed(o) for v, o in out.items()},
                    }  # fmt: skip
                )
        print(
            f"county seed {seed}: {len(rows)} rows, {int(rows['y'].sum())} positives, truth "
            + ", ".join(
                f"v{v} {'refused' if f else 'promoted'}"
                for v, f in ((v, results["truth"][-1][v]) for v in outcome)
            )  # fmt: skip
            + f" ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return results


def summarise(results: dict, versions: list[str]) -> dict:
    out = {}
    for kind, trials in results.items():
        if not trials:
            continue
        for v in versions:
            refused = [t for t in trials if t[v]]
            reasons = Counter(name for t in refused for name in t[v])
            entry = {"trials": len(trials), "refused": len(refused),
                     "refusal_rate": round(len(refused) / len(trials), 4),
                     "reasons": dict(reasons.most_common())}  # fmt: skip
            if kind == "miscalibrated":
                entry["by_dimension"] = {
                    d: f"{sum(1 for t in trials if t['dimension'] == d and t[v])}"
                    f"/{sum(1 for t in trials if t['dimension'] == d)}"
                    for d in fairness.DIMENSIONS
                }
                missed = [f"{t['dimension']}:{t['group']} ({t['positives']} positives)"
                          for t in trials if not t[v]]  # fmt: skip
                entry["not_refused"] = dict(Counter(missed).most_common())
            out[f"{kind} v{v}"] = entry
    return out


def ours(homes: list[str], gate_list) -> list[dict]:
    """Re-judge the registered model of each demo home under every gate."""
    rows = []
    for home in homes:
        current = sorted(Path(home).glob("models/*/metrics.json"))
        for path in current:
            m = json.loads(path.read_text())
            entry = {"home": home, "model": path.parent.name, "roc_auc": m.get("roc_auc"),
                     "observable_oracle_roc_auc": m.get("observable_oracle_roc_auc"),
                     "auc_gap_to_observable_oracle": m.get("auc_gap_to_observable_oracle")}  # fmt: skip
            for g in gate_list:
                o = gates.check(m, m.get("fairness"), g)
                entry[f"v{g.version}"] = _failed(o)
                entry[f"v{g.version} reasons"] = o["reasons"]
            rows.append(entry)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--children", type=int, default=20000)
    ap.add_argument("--counties", type=int, default=20)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--shift", type=float, default=0.01)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--ours", nargs="*", help="demo homes whose models to re-judge")
    ap.add_argument(
        "--also",
        nargs="*",
        choices=gates.GAP_TESTS,
        help="also judge by the committed gate with these gap tests",
    )
    ap.add_argument("--json", help="write the per-trial results here")
    args = ap.parse_args()
    gate_list = [GATE_V2, gates.load()]
    for how in args.also or []:  # the committed gate with another gap test, for comparison
        g = gate_list[1]
        gate_list.append(gates.Gate(version=f"{g.version}-{how}", agreed=g.agreed,
                                    performance=g.performance,
                                    fairness={**g.fairness, "gap_test": how}))  # fmt: skip
    versions = [g.version for g in gate_list]
    if args.ours:
        res = ours(args.ours, gate_list)
        for r in res:
            print(json.dumps(r))
        for v in versions:
            refused = [r for r in res if r[f"v{v}"]]
            reasons = Counter(n for r in refused for n in r[f"v{v}"])
            print(f"ours under v{v}: refused {len(refused)}/{len(res)}; reasons {dict(reasons)}")
        gaps = [r["auc_gap_to_observable_oracle"] for r in res]
        ok = [g for g in gaps if g is not None]
        print(f"gap to the observable oracle <= 0.03 in {sum(g <= 0.03 for g in ok)}/{len(ok)}")
        return
    t0 = time.perf_counter()
    results = run_counties(args, gate_list)
    summary = summarise(results, versions)
    print(json.dumps({"children": args.children, "counties": args.counties,
                      "shift": args.shift, "seconds": round(time.perf_counter() - t0),
                      "summary": summary}, indent=1))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
