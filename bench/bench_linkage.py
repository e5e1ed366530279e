"""Linkage benchmark: our privacy-preserving Splink path vs plain Splink on the same records.

For each size (source people records; ~2.46 records per synthetic child) the bench makes a
synthetic county with the project's own `synth` stage and pseudonymises its people files with a
throwaway key (`pseudonymiser.pseudonymise.encode_people`), all OUTSIDE the timed region and cached
under `var/bench/enc<version>/<records>/` (git-ignored).  Then each path runs in its own subprocess, so peak
memory (max RSS from os.wait4) is that path's alone:

* ours:  `model.prepare_input` -> `model.build_linker` (incl. blocking analysis) -> `model.train`
  -> predict at `model.REVIEW_BAND` -> `clustering.guarded_clusters` at `model.THRESHOLD`
  (the same calls as `linkage.link.score` + clustering);
* plain: `linkage.plain.link_plain(raw_people, seed, threshold, rules, em_rules)` (Splink on
  the plaintext).  With `--plain-rules same` (the default) ours runs first and plain gets the
  prediction and EM blocking rules ours chose, translated to plaintext columns
  (`plain.translate_rules`), so both paths score exactly the same pairs: like for like.  The
  rules are also cached in `var/bench/enc<version>/<records>/chosen_rules_<seed>.json`, so `--paths plain`
  alone reuses the last choice.  `--plain-rules fixed` keeps plain's fixed loose rules
  (`plain.prediction_rules()`, dob alone among them: ~75M pairs at 1M records).

Printed per size and path: wall seconds per step and total, peak MiB, comparisons (pairs the
prediction blocking rules generate, Splink's exact count, made after the timed steps; and pairs
kept >= review band), records/second, pairwise precision/recall/F1 against the synthetic truth,
twin false-merge rate; and the ratios ours/plain (time, peak memory, F1, comparisons).  Figures
only: no identifier, token or encoding is printed.

    .venv/bin/python bench/bench_linkage.py --sizes 10000,100000 [--json] [--paths ours,plain]
        [--plain-rules same|fixed] [--timeout SECONDS]
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
    """The cache of one size, per encoding version (a cache never mixes versions)."""
    return BENCH_DIR / f"enc{contract.ENCODING_VERSION}" / str(records)


def prepare_data(records: int, seed: int) -> Path:
    """Synthesise + pseudonymise (untimed, cached): `people.parquet` (contract columns, encoded),
    `raw_people.parquet` (plaintext, for the plain path), `truth.parquet` (person per row) and
    `twins.parquet`, all in the same row order."""
    d = data_dir(records)
    done = d / "people.parquet"
    if done.is_file():
        return d
    from linkage.truth import twins
    from pseudonymiser import encoding, keys, pseudonymise
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
    from splink import DuckDBAPI

    from linkage import clustering, link, model, plain

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
    pairs = link.pairs_frame(pred, df)
    steps["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    nodes = df[["unique_id", *clustering.GUARD_COLUMNS, *clustering.NAME_COLUMNS]]
    clusters = clustering.guarded_clusters(nodes, pairs, model.THRESHOLD)
    steps["cluster"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    blocking = figures.get("blocking", {})
    rules = [r["rule"] for r in blocking.get("rules_kept", [])]
    em_rules = [r["rule"] for r in blocking.get("training_rules", [])]
    # untimed: the exact number of pairs the chosen rules generate (the analysis above samples)
    t = time.perf_counter()
    sdf = DuckDBAPI(connection=con).register("people_in", dataset_display_name="count")
    exact = plain.count_comparisons(sdf, rules) if rules else None
    seconds_count = round(time.perf_counter() - t, 2)
    con.close()
    cid = df[["unique_id"]].merge(clusters, on="unique_id", how="left")["cluster_id"]
    return {
        "records": int(len(df)),
        "seconds": {k: round(v, 2) for k, v in steps.items()},
        "seconds_total": round(total, 2),
        "comparisons": exact,
        "comparisons_estimated": blocking.get("comparisons_chosen"),
        "seconds_count": seconds_count,
        "pairs_kept": int(len(pairs)),
        "prediction_rules": rules,
        "training_rules": em_rules,
        "blocking": blocking,
        "training_steps_skipped": figures.get("training_steps_skipped"),
        "quality": _quality(cid, d),
    }


def run_plain(d: Path, seed: int, rules_file: str = "") -> dict:
    """Plain Splink on the plaintext of the same records (`linkage.plain.link_plain`), with
    the rules in `rules_file` (ours' choice, JSON {"prediction": [...], "training": [...]},
    translated here) or, without one, plain's fixed rules."""
    from linkage import model, plain

    rules = em_rules = None
    if rules_file:
        chosen = json.loads(Path(rules_file).read_text())
        rules = plain.translate_rules(chosen["prediction"])
        em_rules = plain.translate_rules(chosen["training"]) or None
    raw = pd.read_parquet(d / "raw_people.parquet")
    clusters = plain.link_plain(
        raw, seed=seed, threshold=model.THRESHOLD, rules=rules, em_rules=em_rules
    )
    info = clusters.attrs.get("figures", {})
    key = pd.DataFrame({"unique_id": plain.unique_ids(raw)})
    cid = key.merge(clusters, on="unique_id", how="left")["cluster_id"]
    return {
        "records": int(len(raw)),
        "seconds": {k: round(float(v), 2) for k, v in (info.get("seconds") or {}).items()},
        "seconds_total": info.get("seconds_total"),
        "comparisons": info.get("comparisons"),
        "seconds_count": info.get("seconds_count"),
        "pairs_kept": info.get("pairs_scored"),
        "rules": "same as ours" if rules_file else "fixed",
        "prediction_rules": rules if rules else [str(r) for r in plain.prediction_rules()],
        "training_rules": em_rules if em_rules else "fixed",
        "training_steps_skipped": info.get("training_steps_skipped"),
        "quality": _quality(cid.fillna(key["unique_id"]), d),
    }


_CHILD = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); "
    "from pathlib import Path; import bench.bench_linkage as b; "
    "figs = (b.run_ours(Path(sys.argv[3]), int(sys.argv[4])) if sys.argv[2] == 'ours' else "
    "b.run_plain(Path(sys.argv[3]), int(sys.argv[4]), sys.argv[6])); "
    "open(sys.argv[5], 'w').write(json.dumps(figs, default=str))"
)


def rules_path(d: Path, seed: int) -> Path:
    """Where the blocking rules ours chose for this size and seed are cached."""
    return d / f"chosen_rules_{seed}.json"


def run_path(
    path: str, d: Path, seed: int, timeout: float | None, rules_file: Path | None = None
) -> dict:
    """One path in its own child process: its figures plus wall seconds and peak RSS."""
    out = d / f".bench-{path}.json"
    started = time.perf_counter()
    argv = [sys.executable, "-c", _CHILD, str(ROOT), path, str(d), str(seed), str(out)]
    proc = subprocess.Popen(
        [*argv, str(rules_file or "")],
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


def ratios(ours: dict, plain: dict) -> dict:
    """Ours over plain: time (sum of timed steps), peak memory, F1 and comparisons."""
    cmp_o, cmp_p = ours.get("comparisons"), plain.get("comparisons")
    return {
        "seconds": round(ours["seconds_total"] / plain["seconds_total"], 3),
        "peak_mib": round(ours["peak_mib"] / plain["peak_mib"], 3),
        "f1": round(ours["quality"]["f1"] / plain["quality"]["f1"], 5),
        "comparisons": round(cmp_o / cmp_p, 4) if cmp_o and cmp_p else None,
    }


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
    p.add_argument(
        "--plain-rules",
        choices=("same", "fixed"),
        default="same",
        help="plain's blocking rules: ours' choice translated (same) or plain's fixed ones",
    )
    p.add_argument("--prepare-only", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    # ours first: with --plain-rules same, plain takes the rules ours chose
    paths = sorted({s for s in args.paths.split(",") if s}, key=["ours", "plain"].index)
    results: dict[str, dict] = {}
    for size in sizes:
        d = prepare_data(size, args.seed)
        if args.prepare_only:
            continue
        res: dict[str, dict] = {}
        for path in paths:
            rules_file = None
            if path == "plain" and args.plain_rules == "same":
                rules_file = rules_path(d, args.seed)
                if not rules_file.is_file():
                    res[path] = {"error": "no rules chosen by ours (run ours first)",
                                 "wall_seconds": 0.0}  # fmt: skip
                    print(_row(size, path, res[path]), file=sys.stderr)
                    continue
            if path == "ours":  # a failed run must not leave an older choice for plain
                rules_path(d, args.seed).unlink(missing_ok=True)
            res[path] = run_path(path, d, args.seed, args.timeout, rules_file)
            if path == "ours" and "prediction_rules" in res[path]:
                chosen = {"prediction": res[path]["prediction_rules"],
                          "training": res[path]["training_rules"]}  # fmt: skip
                rules_path(d, args.seed).write_text(json.dumps(chosen, indent=1))
            print(_row(size, path, res[path]), file=sys.stderr)
        ours, plain = res.get("ours", {}), res.get("plain", {})
        if "quality" in ours and "quality" in plain:
            res["ratio_ours_over_plain"] = ratios(ours, plain)
            print(f"{size:>9} ratio ours/plain {res['ratio_ours_over_plain']}", file=sys.stderr)
        results[str(size)] = res
    summary = {
        "seed": args.seed,
        "machine_cores": os.cpu_count(),
        "plain_rules": args.plain_rules,
        "sizes": results,
    }
    print(json.dumps(summary, default=str) if args.json else json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
