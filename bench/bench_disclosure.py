"""Time to protect (and audit) a planner table: 40 areas x 4 age bands x 12 months with every
margin (2,665 cells), synthetic counts with a realistic share of small cells.

    .venv/bin/python bench/bench_disclosure.py [--areas 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from disclosure import Output, audit, from_frame, protect_detailed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--areas", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = [
        (f"A{a:02d}", f"b{b}", f"m{m:02d}", int(rng.poisson(rng.choice([3, 15, 40]))))
        for a in range(args.areas)
        for b in range(4)
        for m in range(12)
    ]
    df = pd.DataFrame(rows, columns=["area", "age_band", "month", "n"])
    dims = ["area", "age_band", "month"]
    t0 = time.perf_counter()
    out = from_frame(df, dims, "n", "planner_table")
    frames, sol = protect_detailed([out])
    t1 = time.perf_counter()
    findings = audit([Output(out.name, frames[0], tuple(dims), "n")])
    t2 = time.perf_counter()
    print(f"cells (with margins): {len(out.frame)}")
    print(f"primary suppressed: {int(sol.primary.sum())}, secondary: {int(sol.secondary.sum())}")
    print(f"rounds: {sol.rounds}, cuts: {sol.cuts}, optimal: {sol.optimal}")
    print(f"protect (MILP + LP audit loop): {t1 - t0:.2f} s")
    print(f"independent audit of the result: {t2 - t1:.2f} s, findings: {len(findings)}")


if __name__ == "__main__":
    main()
