"""End-to-end benchmark: wall time and peak memory of every stage for N synthetic children.

Each stage runs in its own process (the same `joinedup.stages.run_stage` the CLI and DAG call),
so peak memory is that stage's alone (max RSS from os.wait4).  Prints a table and, with --json,
one JSON object.  Uses a throwaway data home unless --home is given.

    .venv/bin/python bench/bench_pipeline.py --children 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from joinedup.stages import PIPELINE_STAGES  # noqa: E402

STAGES = ("synth", "keygen", "pseudonymise", *PIPELINE_STAGES)
_CHILD = (
    "import json, sys; from joinedup.config import Settings; from joinedup.stages import run_stage; "
    "name, home, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]); "
    "figs = run_stage(name, Settings.from_env(home), **opts); "
    "open(sys.argv[4], 'w').write(json.dumps(figs, default=str))"
)


def run_one(name: str, home: Path, options: dict) -> dict:
    out = home / f".bench-{name}.json"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, name, str(home), json.dumps(options), str(out)],
        env={**os.environ, "JOINEDUP_HOME": str(home), "GX_ANALYTICS_ENABLED": "false"},
        stdout=sys.stderr,  # stage chatter (e.g. Splink's progress bar) must not mix with the JSON
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: stage {name} failed (exit {os.waitstatus_to_exitcode(status)})")
    figures = json.loads(out.read_text())
    out.unlink()
    return {
        "seconds": round(seconds, 2),
        "peak_mib": round(usage.ru_maxrss / 1024, 1),
        "figures": figures,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--children", type=int, default=20000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--home", type=Path, help="data home (default: a temporary folder)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="joinedup-bench-"))
    results: dict[str, dict] = {}
    for name in STAGES:
        opts = {"children": args.children, "seed": args.seed} if name == "synth" else {}
        results[name] = run_one(name, home, opts)
        r = results[name]
        print(f"{name:>13}: {r['seconds']:8.2f} s   peak {r['peak_mib']:8.1f} MiB", file=sys.stderr)
    total = sum(r["seconds"] for r in results.values())
    peak = max(r["peak_mib"] for r in results.values())
    link = results["link"]["figures"]
    summary = {
        "children": args.children,
        "total_seconds": round(total, 1),
        "max_peak_mib": peak,
        "stages": {
            k: {"seconds": v["seconds"], "peak_mib": v["peak_mib"]} for k, v in results.items()
        },
        "records_linked": link.get("records"),
        "link_records_per_second": round(link["records"] / results["link"]["seconds"], 1)
        if link.get("records")
        else None,
        "linkage_quality": {
            k: (link.get("truth") or {}).get(k)
            for k in ("precision", "recall", "f1", "twin_false_merge_rate")
        },
        "model": {
            k: results["train"]["figures"].get(k)
            for k in ("test_roc_auc", "test_oracle_roc_auc", "test_brier", "test_ece")
        },
        "home": str(home),
    }
    print(f"{'total':>13}: {total:8.2f} s   max peak {peak:.1f} MiB", file=sys.stderr)
    print(
        json.dumps(summary, default=str)
        if args.json
        else json.dumps(summary, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
