"""`joinedup linkage review ...`, `joinedup linkage incremental` and `joinedup linkage relink`:
the clerical review queue and the link stage in a chosen mode.

* `review list [--limit N] [--all]`: the queue (pair id, probability, agencies, child ids,
  evidence labels; never a record token);
* `review decide --pair ID (--accept | --reject) --reviewer NAME [--reason TEXT]`: append a
  decision (applied on the next link run);
* `review import [--file F | --inbox DIR]`: import decisions files written by the dashboard
  (`linkage.review_import`; default: `settings.review_decisions_inbox`), each moved to
  `processed/` or `rejected/` beside it; a rejected file makes the command fail (exit 2) with
  file, row and rule, after the good ones are imported;
* `incremental`: the link stage in mode incremental (falls back to full, and says so, when
  there is no saved model or previous link);
* `relink`: the link stage in mode full (re-trains and saves the model).

Handlers return a dict of figures; bad input raises ValueError with a one-line reason. Heavy
imports stay inside the handlers.
"""

from __future__ import annotations

import argparse
from typing import Any


def _list(args: argparse.Namespace, settings: Any) -> dict:
    from linkage import review
    from warehouse.db import connect

    if not settings.warehouse_path.exists():
        raise ValueError("no warehouse yet: run the pipeline (joinedup run) first")
    with connect(settings) as con:
        return review.list_queue(con, limit=args.limit, include_decided=args.all)


def _decide(args: argparse.Namespace, settings: Any) -> dict:
    from linkage import review
    from warehouse.db import connect

    if not settings.warehouse_path.exists():
        raise ValueError("no warehouse yet: run the pipeline (joinedup run) first")
    decision = "accept" if args.accept else "reject"
    with connect(settings) as con:
        return review.decide(con, args.pair, decision, args.reviewer, args.reason)


def _import(args: argparse.Namespace, settings: Any) -> dict:
    from pathlib import Path

    from linkage import review_import
    from warehouse.db import connect

    if not settings.warehouse_path.exists():
        raise ValueError("no warehouse yet: run the pipeline (joinedup run) first")
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            raise ValueError(f"--file {path.name}: no such file")
        with connect(settings) as con:
            one = review_import.import_file(con, path)
        out = {
            "imported_files": int(one["status"] == "processed"),
            "imported_decisions": one["applied"],
            "skipped_decisions": one["skipped"],
            "rejected_files": int(one["status"] == "rejected"),
            "files": [{k: one[k] for k in ("file", "status", "applied", "skipped", "error")}],
        }
    else:
        inbox = Path(args.inbox) if args.inbox is not None else settings.review_decisions_inbox
        if not inbox.is_dir():
            raise ValueError(f"--inbox {inbox}: no such folder")
        with connect(settings) as con:
            out = review_import.import_inbox(con, inbox)
    if out["rejected_files"]:
        errors = "; ".join(f["error"] for f in out["files"] if f["error"])
        raise ValueError(
            f"{out['rejected_files']} file(s) rejected and moved to rejected/ ({errors}); "
            f"{out['imported_files']} file(s) imported ({out['imported_decisions']} decisions)"
        )
    return out


def _link(mode: str):
    def handler(args: argparse.Namespace, settings: Any) -> dict:
        from joinedup.stages import run_stage

        options: dict[str, Any] = {"mode": mode}
        if getattr(args, "no_report", False):
            options["report"] = False
        return run_stage("link", settings, **options)

    return handler


def register(sub: Any) -> None:
    """Add `review` (list, decide, import), `incremental` and `relink` to the `linkage` group."""
    p = sub.add_parser("review", help="clerical review queue of uncertain pairs")
    rsub = p.add_subparsers(dest="review_command", required=True, metavar="REVIEW_COMMAND")
    s = rsub.add_parser("list", help="pairs waiting for review, closest to the threshold first")
    s.add_argument("--limit", type=int, default=20, help="show at most N pairs (default 20)")
    s.add_argument("--all", action="store_true", help="include pairs already decided")
    s.set_defaults(handler=_list)
    s = rsub.add_parser("decide", help="accept or reject a queued pair (applied on the next link)")
    s.add_argument("--pair", required=True, help="pair id from `review list` (R + 12 hex)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--accept", action="store_true", help="the two records are the same child")
    g.add_argument("--reject", action="store_true", help="the two records are different children")
    s.add_argument("--reviewer", required=True, help="who decided (a name or staff id)")
    s.add_argument("--reason", help="why (free text; never a name, date or number of a child)")
    s.set_defaults(handler=_decide)
    s = rsub.add_parser(
        "import", help="import the dashboard's decisions files (applied on the next link)"
    )
    g = s.add_mutually_exclusive_group()
    g.add_argument("--file", help="one link_decisions_<anything>.csv file")
    g.add_argument(
        "--inbox", help="a folder of such files (default: the linkage unit's decisions inbox)"
    )
    s.set_defaults(handler=_import)
    s = sub.add_parser(
        "incremental", help="link new and changed records against the existing children"
    )
    s.add_argument("--no-report", action="store_true", help="skip metrics.json and report.html")
    s.set_defaults(handler=_link("incremental"))
    s = sub.add_parser("relink", help="full re-link: re-train the model and link every record")
    s.add_argument("--no-report", action="store_true", help="skip metrics.json and report.html")
    s.set_defaults(handler=_link("full"))
