"""Privacy attack benchmark: how many people records' first name or surname an attacker holding
only an encoded people file and the public name list recovers, per attack and encoding version.

Makes a synthetic county (`synth`, `--children`, `--seed`), encodes its people records with
contract v1 (retired) and v2 under a throwaway key derived from the seed (never printed), and
runs every attack of `privacy_eval.attacks` on each.  Printed per attack and version: recovered
share, chance share (the frequency-only guess made without looking at the encodings: the most
common public surname, and the most common public first name for the record's clear sex),
beyond chance (recovered - chance; the target for v2 is < 1 percentage point for every attack)
and seconds.  Also, for the other deterministic columns, why a frequency attack has nothing to
align.  Figures only: no name, encoding or key is printed.  Same seed -> same figures.

    PYTHONPATH=. .venv/bin/python bench/bench_privacy_attack.py [--children 20000] [--seed 42]
        [--versions v1,v2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from privacy_eval import attacks, county  # noqa: E402

#: the most an attack may recover beyond chance on v2 (share of records)
V2_TARGET = 0.01


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--children", type=int, default=20000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--versions", default="v1,v2")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    t = time.perf_counter()
    c = county.make_county(args.children, args.seed)
    key = county.attack_key(args.seed)
    public = attacks.PublicNames.load()
    setup = time.perf_counter() - t
    encoders = {"v1": county.encode_v1, "v2": county.encode_v2}
    rows = []
    others = {}
    for version in args.versions.split(","):
        file = encoders[version](c, key)
        rows += attacks.run_attacks(file, version, c.first, c.surname, public)
        others[version] = attacks.other_token_counts(file)
    out = {
        "children": args.children,
        "seed": args.seed,
        "records": len(c.raw),
        "setup_seconds": round(setup, 1),
        "v2_target_beyond_chance": V2_TARGET,
        "results": [
            {
                "attack": r.attack,
                "version": r.version,
                "recovered": round(r.recovered, 5),
                "chance": round(r.chance, 5),
                "beyond_chance": round(r.beyond, 5),
                "seconds": round(r.seconds, 2),
            }
            for r in rows
        ],  # fmt: skip
        "other_deterministic_columns": {
            v: {
                col: {**figs, "why_no_attack": attacks.OTHER_TOKENS[col]}
                for col, figs in cols.items()
            }
            for v, cols in others.items()
        },  # fmt: skip
        "v2_meets_target": all(r.beyond < V2_TARGET for r in rows if r.version == "v2"),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"county: {args.children} children, {len(c.raw)} people records, seed {args.seed} "
          f"(setup {setup:.1f} s)")  # fmt: skip
    print(f"{'attack':44s} {'ver':3s} {'recovered':>9s} {'chance':>8s} {'beyond':>8s} {'sec':>7s}")
    for r in rows:
        print(f"{r.attack:44s} {r.version:3s} {100 * r.recovered:8.2f}% {100 * r.chance:7.2f}% "
              f"{100 * r.beyond:7.2f}% {r.seconds:7.1f}")  # fmt: skip
    for v, cols in others.items():
        for col, figs in cols.items():
            print(
                f"{v} {col}: {figs['distinct']} distinct values, largest "
                f"{100 * figs['max_share']:.3f}% of records -- {attacks.OTHER_TOKENS[col]}"
            )
    print(
        f"v2 below {100 * V2_TARGET:.0f}% beyond chance on every attack: {out['v2_meets_target']}"
    )


if __name__ == "__main__":
    main()
