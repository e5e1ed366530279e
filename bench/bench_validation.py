"""Validation benchmark: what ingest and Great Expectations validation cost per 100,000 records.

Makes a synthetic county of N children and pseudonymises it (untimed), then runs `ingest` and
`validate` each in its own process (`bench_pipeline.run_one`: wall time and peak RSS), and reads
the per-batch split that `audit.validations` records (reading and deriving check columns vs the
GX run itself).  Prints a table and, with --json, one JSON object.

    .venv/bin/python bench/bench_validation.py --children 20000 [--downstream]

With --downstream it also runs `link` and `features` and reports what the derived-table suites
(expectations/downstream.py, run inside those stages before COMMIT) cost per 100,000 rows of
each table (seconds as recorded in audit.validations: reading the table with the derived check
columns and the GX run; GX's import and context start-up, paid once per stage process, is shown
apart).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import run_one  # noqa: E402

from joinedup.config import Settings  # noqa: E402
from warehouse.db import connect  # noqa: E402


def _per_100k(seconds: float, rows: int) -> float | None:
    return round(seconds / rows * 100_000, 2) if rows else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--children", type=int, default=20000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--downstream", action="store_true", help="also link + features and their checks"
    )
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="joinedup-bench-validation-"))
    for name, opts in (("synth", {"children": args.children, "seed": args.seed}),
                       ("keygen", {}), ("pseudonymise", {})):  # fmt: skip
        run_one(name, home, opts)
    ingest = run_one("ingest", home, {})
    validate = run_one("validate", home, {})
    stages = {}
    if args.downstream:
        for name in ("link", "features"):
            stages[name] = run_one(name, home, {})
    with connect(Settings.from_env(home), read_only=True) as con:
        derived = con.execute(
            "SELECT target, n_rows, CAST(statistics->>'seconds' AS DOUBLE), outcome, "
            "CAST(statistics->>'seconds_gx_startup' AS DOUBLE) "
            "FROM audit.validations WHERE load_id IS NULL ORDER BY validated_at"
        ).fetchall()
        rows = con.execute(
            "SELECT l.kind, sum(v.n_rows), sum(CAST(v.statistics->>'seconds_gx' AS DOUBLE)), "
            "sum(CAST(v.statistics->>'seconds_read_and_derive' AS DOUBLE)), "
            "sum(CAST(v.statistics->>'seconds_total' AS DOUBLE)) "
            "FROM audit.validations v JOIN raw.loads l USING (load_id) "
            "GROUP BY l.kind ORDER BY l.kind"
        ).fetchall()
    by_kind = {
        kind: {
            "rows": int(n),
            "seconds_gx": round(gx, 2),
            "seconds_read_and_derive": round(rd, 2),
            "seconds_batches": round(tot, 2),
            "gx_seconds_per_100k": _per_100k(gx, int(n)),
            "seconds_per_100k": _per_100k(tot, int(n)),
        }
        for kind, n, gx, rd, tot in rows
    }
    total_rows = sum(k["rows"] for k in by_kind.values())
    summary = {
        "children": args.children,
        "rows": total_rows,
        "ingest": {
            "seconds": ingest["seconds"],
            "peak_mib": ingest["peak_mib"],
            "seconds_per_100k": _per_100k(ingest["seconds"], total_rows),
        },  # fmt: skip
        "validate": {
            "seconds": validate["seconds"],
            "peak_mib": validate["peak_mib"],
            "seconds_per_100k": _per_100k(validate["seconds"], total_rows),
            "rows_staged": validate["figures"]["rows_staged"],
            "rows_quarantined": validate["figures"]["rows_quarantined"],
        },
        "by_kind": by_kind,
        "derived_tables": {
            t: {
                "rows": int(n),
                "seconds": sec,
                "seconds_per_100k": _per_100k(sec, int(n)),
                "outcome": o,
                "seconds_gx_startup": st,
            }
            for t, n, sec, o, st in derived
        },  # fmt: skip
        "stages": {
            k: {"seconds": v["seconds"], "peak_mib": v["peak_mib"]} for k, v in stages.items()
        },
        "home": str(home),
    }
    for kind, k in by_kind.items():
        print(f"{kind:>7}: {k['rows']:>9,} rows  GX {k['seconds_gx']:6.2f} s  "
              f"batches {k['seconds_batches']:6.2f} s  ({k['seconds_per_100k']} s/100k)",
              file=sys.stderr)  # fmt: skip
    print(f"ingest {ingest['seconds']} s, validate {validate['seconds']} s (process, incl. "
          f"start-up and Data Docs) for {total_rows:,} rows", file=sys.stderr)  # fmt: skip
    for t, n, sec, o, st in derived:
        print(f"{t:>22}: {n:>9,} rows  check {sec:6.2f} s ({_per_100k(sec, int(n))} s/100k) {o}"
              f"  (+{st:.1f} s GX start-up)", file=sys.stderr)  # fmt: skip
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
