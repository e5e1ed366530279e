"""`joinedup linkage evaluate`: our privacy-preserving path vs plain Splink on labelled data.

Owns the subcommand's arguments only; the work is `linkage.labelled`.  Usage:

    joinedup --json linkage evaluate --truth-column person_id health_people.csv police_people.csv
    joinedup --json linkage evaluate --dataset febrl4

Each FILE is a raw people CSV in the data contract's raw format plus the truth column; files
become agencies (by their contract name, else in order).  Prints one JSON object (with
`--json`): pairwise precision, recall, F1, cluster figures, wall time and peak memory for both
paths side by side.  Bad input (unreadable file, no truth column, a missing raw column) is a
ValueError naming the file and column: one line, exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: mirrors linkage.model.THRESHOLD / REVIEW_BAND (not imported: keeps `--help` fast)
DEFAULT_THRESHOLD = 0.95
DATASETS = ("febrl3", "febrl4")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {text})")
    return value


def register(sub: Any) -> None:
    """Add `evaluate` to the `linkage` subparsers."""
    p = sub.add_parser(
        "evaluate",
        help="evaluate our pseudonymised linkage vs plain Splink on labelled people files",
        description="Pseudonymise labelled raw people files with a throwaway key, link them "
        "with the link stage's own code and with plain Splink on the plaintext, and report "
        "precision, recall, F1, cluster figures, time and peak memory for both.",
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE",
                   help="raw people CSV (contract raw format + the truth column)")  # fmt: skip
    p.add_argument("--truth-column", help="column holding the true person id (with FILEs)")
    p.add_argument("--dataset", choices=DATASETS, help="a FEBRL data set instead of FILEs")
    p.add_argument("--febrl-id", choices=("nhs_number", "none"), default="nhs_number",
                   help="where FEBRL's soc_sec_id goes (default: nhs_number)")  # fmt: skip
    p.add_argument("--seed", type=int, help="seed for u sampling (default: settings seed)")
    p.add_argument("--threshold", type=_probability, default=DEFAULT_THRESHOLD,
                   help=f"match probability to join records (default {DEFAULT_THRESHOLD})")  # fmt: skip
    ids = p.add_mutually_exclusive_group()
    ids.add_argument("--verified-ids", dest="verified_ids", action="store_true", default=None,
                     help="NHS/UPN values are verified ids: never join two different ones "
                     "(default for FILEs)")  # fmt: skip
    ids.add_argument("--unverified-ids", dest="verified_ids", action="store_false",
                     help="NHS/UPN values may be corrupted in true duplicates: evidence only "
                     "(default for --dataset: FEBRL's soc_sec_id)")  # fmt: skip
    p.add_argument("--in-process", action="store_true",
                   help="run both paths in this process (faster; no per-path peak memory)")  # fmt: skip
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Any) -> dict:
    """Run the evaluation the arguments ask for; returns the figures."""
    from linkage import labelled

    seed = settings.seed if args.seed is None else args.seed
    options = {"seed": seed, "threshold": args.threshold, "isolate": not args.in_process}
    if args.verified_ids is not None:
        options["verified_ids"] = args.verified_ids
    if args.dataset:
        if args.files or args.truth_column:
            raise ValueError("--dataset takes no FILEs or --truth-column")
        return labelled.evaluate_dataset(args.dataset, soc_sec_id_as=args.febrl_id, **options)
    if not args.files:
        raise ValueError("give people FILEs with --truth-column, or --dataset febrl3|febrl4")
    if not args.truth_column:
        raise ValueError("--truth-column is required with FILEs")
    return labelled.evaluate_files(args.files, args.truth_column, **options)
