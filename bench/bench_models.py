"""Risk-model benchmark: wall time, peak memory and throughput of features, train and score.

Issue target: training on 100,000 children x 24 monthly as-of dates in under 10 minutes on 2
cores; scoring 100,000 children in under 30 seconds.

A county of N children is built through the real pipeline (synth, keygen, pseudonymise, ingest,
validate, link; untimed preparation, but its seconds are printed) unless `--home` already holds
a linked warehouse.  Then `features`, `train` and `score` run, each in its own process through
`joinedup.stages.run_stage` (as the CLI and DAG call them), so each peak RSS (os.wait4) is that
stage's alone.  Train writes its model registry and metrics to a fresh folder under
`<home>/bench_models/` (the home's own registry is left alone, and a model is never reused from
an earlier run, so the fit is always timed), with a gate that has no checks so that score
always has a promoted model to time; the committed gate's (`models/gate.toml`) verdict on the
same metrics is printed.  Score rewrites `scores.current` in the home's warehouse.

Labelled months: `--labelled-months 41` (default, as the pipeline) = 24 fitting months + 11
embargo months + 6 test months (`models.dataset.split_months`); `--labelled-months 24` = 24
monthly as-of dates in all (7 fitting, 11 embargo, 6 test).  The months and rows actually used
are printed from the model's metadata.

    .venv/bin/python bench/bench_models.py --children 5000
    .venv/bin/python bench/bench_models.py --home /tmp/x/home --labelled-months 24 --json
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

PREP = (
    "synth",
    "keygen",
    "pseudonymise",
    "link_ingest",
    "link_validate",
    "link",
    "ingest",
    "validate",
    "assemble",
)
# the child process: a Settings whose registry and outputs are the bench's own folder
_CHILD = """
import json, sys
from pathlib import Path
from joinedup.config import Settings
from joinedup.stages import run_stage
name, home, opts, out, bench_dir = sys.argv[1:6]
class BenchSettings(Settings):
    @property
    def models_dir(self):
        return Path(bench_dir) / "models"
    @property
    def outputs_dir(self):
        return Path(bench_dir) / "outputs"
s = BenchSettings.from_env(home) if bench_dir else Settings.from_env(home)
figs = run_stage(name, s, **json.loads(opts))
open(out, "w").write(json.dumps(figs, default=str))
"""


def run_one(name: str, home: Path, options: dict, bench_dir: Path | None) -> dict:
    """Run one stage in its own process; wall seconds, peak RSS (MiB) and its figures."""
    out = home / f".bench-models-{name}.json"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD,
            name,
            str(home),
            json.dumps(options),
            str(out),
            str(bench_dir or ""),
        ],  # fmt: skip
        env={**os.environ, "JOINEDUP_HOME": str(home), "GX_ANALYTICS_ENABLED": "false"},
        stdout=sys.stderr,  # stage chatter must not mix with the JSON
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"bench_models: stage {name} failed (exit {code})")
    figures = json.loads(out.read_text())
    out.unlink()
    return {"seconds": round(seconds, 2), "peak_mib": round(usage.ru_maxrss / 1024, 1),
            "figures": figures}  # fmt: skip


def _linked_children(home: Path) -> int:
    """Children in linked.children of the home's warehouse (0 if none)."""
    import duckdb

    path = home / "warehouse" / "joinedup.duckdb"
    if not path.exists():
        return 0
    con = duckdb.connect(str(path), read_only=True)
    try:
        return int(con.execute("SELECT count(*) FROM linked.children").fetchall()[0][0])
    except duckdb.Error:
        return 0
    finally:
        con.close()


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _timing(run: dict) -> dict:
    """Wall seconds of the stage's process, the stage's own seconds, and its peak RSS."""
    return {
        "seconds": run["seconds"],
        "stage_seconds": run["figures"].get("seconds"),
        "peak_mib": run["peak_mib"],
    }


def _rate(n: float | None, seconds: float) -> float | None:
    return round(n / seconds, 1) if n and seconds else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--children", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--home", type=Path, help="data home to build in or reuse (default: temporary)")
    p.add_argument(
        "--labelled-months",
        type=int,
        default=41,
        help="labelled as-of months built by features (41: 24 fitting months, as the pipeline; "
        "24: 24 as-of dates in all)",
    )
    p.add_argument(
        "--prepare-only", action="store_true", help="build the linked county and stop (untimed)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    home = (args.home or Path(tempfile.mkdtemp(prefix="joinedup-bench-models-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)

    prep: dict[str, dict] = {}
    children = _linked_children(home)
    if children == 0:
        _log(f"preparing a county of {args.children} children in {home} (untimed)")
        for name in PREP:
            opts = {"children": args.children, "seed": args.seed} if name == "synth" else {}
            prep[name] = run_one(name, home, opts, None)
            _log(f"  {name:>13}: {prep[name]['seconds']:8.2f} s   peak "
                 f"{prep[name]['peak_mib']:8.1f} MiB")  # fmt: skip
        children = _linked_children(home)
    else:
        _log(f"reusing the linked warehouse in {home} ({children} linked children)")

    if args.prepare_only:
        print(json.dumps({"home": str(home), "children_linked": children,
                          "prep_seconds": {k: v["seconds"] for k, v in prep.items()},
                          "prep_peak_mib": {k: v["peak_mib"] for k, v in prep.items()}}))  # fmt: skip
        return
    load_before = [round(x, 2) for x in os.getloadavg()]
    bench_dir = home / "bench_models" / time.strftime("%Y%m%d-%H%M%S")
    timed: dict[str, dict] = {}
    # a gate with no checks, so that score always has a model to time; the committed gate's
    # verdict on the same metrics is reported below
    bench_dir.mkdir(parents=True, exist_ok=True)
    no_checks = bench_dir / "gate-no-checks.toml"
    no_checks.write_text('version = "bench-no-checks"\nagreed = "-"\n')
    for name, opts in (
        ("features", {"n_train_months": args.labelled_months}),
        ("train", {"gate": str(no_checks)}),
        ("score", {}),
    ):
        timed[name] = run_one(name, home, opts, bench_dir)
        r = timed[name]
        _log(f"  {name:>13}: {r['seconds']:8.2f} s   peak {r['peak_mib']:8.1f} MiB")

    feats, train, score = (timed[n]["figures"] for n in ("features", "train", "score"))
    meta = json.loads((bench_dir / "models" / train["version"] / "metadata.json").read_text())
    metrics = json.loads((bench_dir / "models" / train["version"] / "metrics.json").read_text())
    fits = [
        {**{k: v for k, v in c.items() if not k.startswith("validation_")}}
        for c in metrics.get("candidates", [])
    ]
    from models import gate as gates

    verdict = gates.check(metrics, metrics.get("fairness"), gates.load())
    window = meta.get("training_window", {})
    months = {k: {"first": v[0], "last": v[1]} for k, v in window.items() if k in ("train", "test")}
    fit_rows = int(window.get("rows", {}).get("train", 0)) + int(
        window.get("rows", {}).get("validation", 0)
    )
    summary = {
        "children_in_county": args.children if prep else None,
        "children_linked": children,
        "labelled_months_built": args.labelled_months,
        "months_used": months,
        "fitting_months": len(
            _month_range(window["train"][0], window["train"][1]) if "train" in window else []
        ),
        "test_months": len(
            _month_range(window["test"][0], window["test"][1]) if "test" in window else []
        ),
        "embargo_months": window.get("embargo_months"),
        "rows_by_split": window.get("rows"),
        "positives_by_split": window.get("positives"),
        "features": {
            **_timing(timed["features"]),
            "rows": feats.get("rows"),
            "rows_per_second": _rate(feats.get("rows"), timed["features"]["seconds"]),
        },
        "train": {
            **_timing(timed["train"]),
            "reused": train.get("reused"),
            "fitting_rows_train_plus_validation": fit_rows,
            "fitting_rows_per_second": _rate(fit_rows, timed["train"]["seconds"]),
            "model_kind": train.get("model_kind"),
            "calibration": train.get("calibration"),
            "test_roc_auc": train.get("test_roc_auc"),
            "test_oracle_roc_auc": train.get("test_oracle_roc_auc"),
            "test_average_precision": train.get("test_average_precision"),
            "test_precision_at_capacity": train.get("test_precision_at_capacity"),
            "candidate_fits": fits,
            "committed_gate_would_promote": verdict["promoted"],
            "committed_gate_failed_checks": verdict["reasons"],
        },
        "score": {
            **_timing(timed["score"]),
            "children_scored": score.get("children_scored"),
            "children_per_second": _rate(score.get("children_scored"), timed["score"]["seconds"]),
        },
        "targets": {
            "train_under_600_s": timed["train"]["seconds"] < 600,
            "score_under_30_s": timed["score"]["seconds"] < 30,
            "note": "targets are for 100,000 children; seconds include process start and imports",
        },
        "prep_seconds": {k: v["seconds"] for k, v in prep.items()} or None,
        "cpus": os.cpu_count(),
        "load_average_1_5_15_min": {
            "before": load_before,
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "home": str(home),
        "bench_registry": str(bench_dir),
    }
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(json.dumps(summary, indent=2, default=str))


def _month_range(first: str, last: str) -> list[str]:
    import pandas as pd

    return [str(d.date()) for d in pd.date_range(first, last, freq="MS")]


if __name__ == "__main__":
    main()
