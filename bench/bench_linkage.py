"""Linkage benchmark: our privacy-preserving Splink path vs plain Splink on the same records.

For each size (source people records; ~2.46 records per synthetic child) the bench makes a
synthetic county with the project's own `synth` stage and pseudonymises its people files with a
throwaway key (`linkage.pseudonymise.encode_people`), all OUTSIDE the timed region and cached
under `var/bench/<records>/` (git-ignored).  Then each path runs in its own subprocess, so peak
memory (max RSS from os.wait4) is that path's alone:

* ours:  `model.prepare_input` -> `model.build_linker` (incl. blocking analysis) -> `model.train`
  -> predict at `model.REVIEW_BAND` -> `clustering.guarded_clusters` at `model.THRESHOLD`
  (the same calls as `linkage.link.score` + clustering);
* plain: `linkage.plain.link_plain(raw_people, seed, threshold)` (Splink on the plaintext), if
  that module exists.

Printed per size and path: wall seconds per step and total, peak MiB, comparisons (pairs scored by
the prediction blocking rules, and pairs kept >= review band), records/second, pairwise
precision/recall/F1 against the synthetic truth, twin false-merge rate; and the ratios ours/plain.
Figures only: no identifier, token or encoding is printed.

    .venv/bin/python bench/bench_linkage.py --sizes 10000,100000 [--json] [--paths ours,plain]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from joinedup import contract  # noqa: E402
from joinedup.config import Settings  # noqa: E402

#: synthetic source people records per child (synth, seed 42)
RECORDS_PER_CHILD = 2.46
BENCH_DIR = ROOT / "var" / "bench"


def data_dir(records: int) -> Path:
    return BENCH_DIR / str(records)


def prepare_data(records: int, seed: int) -> Path:
    """Synthesise + pseudonymise (untimed, cached): `people.parquet` (contract columns, encoded),
    `raw_people.parquet` (plaintext, for the plain path), `truth.parquet` (person per row) and
    `twins.parquet`, all in the same row order."""
    d = data_dir(records)
    done = d / "people.parquet"
    if done.is_file():
        return d
    from linkage import encoding, keys, pseudonymise
    from linkage.truth import twins
    from synth import generate

    settings = Settings.from_env(d / "home")
    children = round(records / RECORDS_PER_CHILD)
    t = time.perf_counter()
    generate.run(settings, children=children, seed=seed, entry_error_rate=0)
    print(f"bench: synth {children} children {time.perf_counter() - t:.1f} s", file=sys.stderr)
    (d / "throwaway.key").unlink(missing_ok=True)
    key_path = keys.generate_key(d / "throwaway.key")
    encoder = encoding.Encoder(keys.load_key(key_path))
    raw_frames, enc_frames, truth_frames = [], [], []
    for agency in contract.AGENCIES:
        path = settings.agency_dir / contract.file_name(agency, "people")
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
        enc = pseudonymise.encode_people(raw, agency, encoder)
        truth = pd.read_parquet(settings.truth_dir / f"people_{agency}.parquet")
        truth = truth.sort_values("row_number")
        if len(truth) != len(raw) or truth["row_number"].tolist() != list(range(1, len(raw) + 1)):
            raise SystemExit(f"bench: truth rows do not match the {agency} people file")
        raw.insert(0, "agency", agency)
        raw_frames.append(raw)
        enc_frames.append(enc)
        truth_frames.append(truth[["person_id"]].astype(str).assign(agency=agency))
    pd.concat(raw_frames, ignore_index=True).to_parquet(d / "raw_people.parquet")
    pd.concat(truth_frames, ignore_index=True).to_parquet(d / "truth.parquet")
    twins(settings).to_parquet(d / "twins.parquet")
    key_path.unlink()
    pd.concat(enc_frames, ignore_index=True).to_parquet(done)
    print(f"bench: data for {records} records ready in {d}", file=sys.stderr)
    return d


def _quality(child_id: pd.Series, d: Path) -> dict:
    from linkage import evaluate

    truth = pd.read_parquet(d / "truth.parquet")
    rec = pd.DataFrame({"child_id": child_id.astype(str).to_numpy(),
                        "person_id": truth["person_id"].to_numpy()})  # fmt: skip
    out = evaluate.pairwise(rec)
    out.update(evaluate.clusters(rec))
    out.update(evaluate.twin_false_merges(rec, pd.read_parquet(d / "twins.parquet")))
    return out


def run_ours(d: Path, seed: int) -> dict:
    """Our path, timed step by step (in the child process)."""
    from linkage import clustering, model

    people = pd.read_parquet(d / "people.parquet")
    steps: dict[str, float] = {}
    t0 = t = time.perf_counter()
    df = model.prepare_input(people)
    linker, con = model.build_linker(df)
    steps["prepare"] = time.perf_counter() - t
    t = time.perf_counter()
    figures = model.train(linker, seed=seed)
    steps["train"] = time.perf_counter() - t
    t = time.perf_counter()
    pred = linker.inference.predict(threshold_match_probability=model.REVIEW_BAND)
    pairs = pred.as_pandas_dataframe()[
        ["unique_id_l", "unique_id_r", "match_weight", "match_probability"]
    ]
    steps["predict"] = time.perf_counter() - t
    con.close()
    t = time.perf_counter()
    nodes = df[["unique_id", *clustering.GUARD_COLUMNS, *clustering.NAME_COLUMNS]]
    clusters = clustering.guarded_clusters(nodes, pairs, model.THRESHOLD)
    steps["cluster"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    cid = df[["unique_id"]].merge(clusters, on="unique_id", how="left")["cluster_id"]
    blocking = figures.get("blocking", {})
    return {
        "records": int(len(df)),
        "seconds": {k: round(v, 2) for k, v in steps.items()},
        "seconds_total": round(total, 2),
        "comparisons": blocking.get("comparisons_chosen"),
        "pairs_kept": int(len(pairs)),
        "blocking": blocking,
        "training_steps_skipped": figures.get("training_steps_skipped"),
        "quality": _quality(cid, d),
    }


def run_plain(d: Path, seed: int) -> dict:
    """Plain Splink on the plaintext of the same records (`linkage.plain.link_plain`)."""
    from linkage import model, plain

    raw = pd.read_parquet(d / "raw_people.parquet")
    t0 = time.perf_counter()
    clusters = plain.link_plain(raw, seed=seed, threshold=model.THRESHOLD)
    total = time.perf_counter() - t0
    info = clusters.attrs.get("figures", {})
    key = pd.DataFrame({"unique_id": plain.unique_ids(raw)})
    cid = key.merge(clusters, on="unique_id", how="left")["cluster_id"]
    return {
        "records": int(len(raw)),
        "seconds": {k: round(float(v), 2) for k, v in (info.get("seconds") or {}).items()},
        "seconds_total": round(total, 2),
        "comparisons": info.get("comparisons"),
        "pairs_kept": info.get("pairs_scored"),
        "quality": _quality(cid.fillna(key["unique_id"]), d),
    }


_CHILD = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); "
    "from pathlib import Path; import bench.bench_linkage as b; "
    "fn = {'ours': b.run_ours, 'plain': b.run_plain}[sys.argv[2]]; "
    "figs = fn(Path(sys.argv[3]), int(sys.argv[4])); "
    "open(sys.argv[5], 'w').write(json.dumps(figs, default=str))"
)


def run_path(path: str, d: Path, seed: int, timeout: float | None) -> dict:
    out = d / f".bench-{path}.json"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(ROOT), path, str(d), str(seed), str(out)],
        stdout=sys.stderr,  # Splink's chatter must not mix with the JSON
    )
    timer = threading.Timer(timeout, proc.kill) if timeout else None
    if timer:
        timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if timer:
        timer.cancel()
    wall = time.perf_counter() - started
    if code != 0 or not out.is_file():
        return {"error": f"exit {code}", "wall_seconds": round(wall, 1)}
    figures = json.loads(out.read_text())
    out.unlink()
    figures["process_seconds"] = round(wall, 2)
    figures["peak_mib"] = round(usage.ru_maxrss / 1024, 1)
    total = figures["seconds_total"]
    figures["records_per_second"] = round(figures["records"] / total, 1) if total else None
    return figures


def _row(size: int, path: str, r: dict) -> str:
    if "error" in r:
        return f"{size:>9} {path:>5}  FAILED ({r['error']}, {r['wall_seconds']} s)"
    q = r["quality"]
    steps = " ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items())
    return (
        f"{size:>9} {path:>5}  total {r['seconds_total']:7.1f} s ({steps})  "
        f"peak {r['peak_mib']:7.0f} MiB  comparisons {r['comparisons']}  "
        f"kept {r['pairs_kept']}  {r['records_per_second']} rec/s  "
        f"P {q['precision']:.5f} R {q['recall']:.5f} F1 {q['f1']:.5f}  "
        f"twins {q['twin_false_merges']}/{q['twin_pairs']}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--paths", default="ours,plain")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--timeout", type=float, default=None, help="seconds per path run")
    p.add_argument("--prepare-only", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    paths = [s for s in args.paths.split(",") if s]
    results: dict[str, dict] = {}
    for size in sizes:
        d = prepare_data(size, args.seed)
        if args.prepare_only:
            continue
        res: dict[str, dict] = {}
        for path in paths:
            res[path] = run_path(path, d, args.seed, args.timeout)
            print(_row(size, path, res[path]), file=sys.stderr)
        ours, plain = res.get("ours", {}), res.get("plain", {})
        if "quality" in ours and "quality" in plain:
            res["ratio_ours_over_plain"] = {
                "seconds": round(ours["seconds_total"] / plain["seconds_total"], 3),
                "peak_mib": round(ours["peak_mib"] / plain["peak_mib"], 3),
                "f1": round(ours["quality"]["f1"] / plain["quality"]["f1"], 5),
            }
            print(f"{size:>9} ratio ours/plain {res['ratio_ours_over_plain']}", file=sys.stderr)
        results[str(size)] = res
    summary = {"seed": args.seed, "machine_cores": os.cpu_count(), "sizes": results}
    print(json.dumps(summary, default=str) if args.json else json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
