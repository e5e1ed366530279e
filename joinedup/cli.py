"""`joinedup`: one subcommand per stage, plus `run` (the hub DAG, in-process) and `demo`.

Every command prints its figures (one JSON object with `--json`), and exits non-zero with a
one-line reason on bad input or failure (`--debug` shows the traceback).  Heavy libraries are
imported only by the stage that needs them, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
from pathlib import Path

from joinedup.config import Settings
from joinedup.stages import PIPELINE_STAGES, STAGES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="joinedup",
        description="Joined-Up: linked-records early-intervention analytics on pseudonymised "
        "extracts (synthetic data only). Everything is written under --home "
        "(default: $JOINEDUP_HOME or var/ in the project).",
    )
    p.add_argument("--home", type=Path, help="data home (warehouse, landing, quarantine, outputs)")
    p.add_argument("--json", action="store_true", help="print figures as one JSON object")
    p.add_argument("--debug", action="store_true", help="show the traceback on error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help=STAGES["synth"].summary)
    s.add_argument("--children", type=int, default=20000)
    s.add_argument("--seed", type=int, default=42)
    s = sub.add_parser("keygen", help=STAGES["keygen"].summary)
    s.add_argument(
        "--synthetic-seed",
        type=int,
        help="synthetic demo county only: derive the key from this seed (public, so runs "
        "repeat exactly); never for real data",
    )
    s = sub.add_parser("pseudonymise", help=STAGES["pseudonymise"].summary)
    s.add_argument("--key-file", type=Path, help="secret key file (default: the demo key)")
    s.add_argument("--source", type=Path, help="folder of raw extracts (default: agency folder)")
    s.add_argument(
        "--dest", type=Path, help="folder for the hub's files (default: the hub's landing folder)"
    )
    s.add_argument(
        "--dest-linkage",
        type=Path,
        help="folder for the linkage unit's files (default: the linkage unit's landing folder)",
    )
    s.add_argument("--areas", type=Path, help="public postcode-sector -> ward lookup CSV")
    for name in PIPELINE_STAGES:
        sub.add_parser(name, help=STAGES[name].summary)
    s = sub.add_parser(
        "run", help="run the linkage unit and the hub pipeline (the Airflow DAG, in-process)"
    )
    s.add_argument(
        "--no-airflow",
        action="store_true",
        help="call the stages directly in order instead of through the DAG",
    )
    s = sub.add_parser("demo", help="synthetic county -> pseudonymise -> the whole pipeline")
    s.add_argument("--children", type=int, default=20000)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--no-airflow", action="store_true", help="skip Airflow, call stages directly")
    s.add_argument(
        "--no-serve",
        action="store_true",
        help="do not serve the dashboard at the end (scripts, CI)",
    )
    s.add_argument("--port", type=int, default=8000, help="the dashboard's port (default 8000)")
    sub.add_parser("status", help="latest run of each stage and row counts per warehouse layer")
    from linkage import commands as linkage_commands

    linkage_commands.register(sub)
    _models_parser(sub)
    _quarantine_parser(sub)
    _rights_parser(sub)
    from joinedup import dashboard_cmd

    dashboard_cmd.register(sub)
    return p


def _thresholds(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected two numbers a,b (got {text!r})") from exc
    return a, b


def _models_sensitivity(args: argparse.Namespace, settings: Settings) -> dict:
    from models import sensitivity

    thresholds = args.thresholds or sensitivity.DEFAULT_THRESHOLDS
    return sensitivity.run(
        settings, thresholds=thresholds, months=args.months, version=args.version
    )


def _models_parser(sub) -> None:
    """`joinedup models ...`: each subcommand sets `handler(args, settings) -> dict`; add more
    subcommands to `models_sub` (heavy imports inside the handlers)."""
    m = sub.add_parser("models", help="risk model tools (registry, sensitivity to linkage)")
    models_sub = m.add_subparsers(dest="models_command", required=True, metavar="MODELS_COMMAND")
    s = models_sub.add_parser(
        "sensitivity",
        help="re-link a copy of the warehouse at two thresholds, score with the current model, "
        "compare the top k (writes outputs/linkage_sensitivity.json)",
    )
    s.add_argument(
        "--thresholds", type=_thresholds, help="two linkage thresholds a,b (default 0.8,0.99)"
    )
    s.add_argument(
        "--months",
        choices=("test", "scoring"),
        default="test",
        help="as-of months to score: the model's test months and the scoring date (default), "
        "or the scoring date only",
    )
    s.add_argument(
        "--version", help="a registered model version, even unpromoted (default: the current)"
    )
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    s.set_defaults(handler=_models_sensitivity)
    from models import commands as models_commands

    models_commands.register(models_sub)  # list, show, card


def _quarantine_list(args: argparse.Namespace, settings: Settings) -> dict:
    from warehouse import release

    return release.list_quarantine(settings, load_id=args.load, rule=args.rule)


def _quarantine_release(args: argparse.Namespace, settings: Settings) -> dict:
    from warehouse import release

    rows = release.parse_rows(args.rows) if args.rows else None
    return release.release(
        settings, args.load, rule=args.rule, rows=rows, force=args.force, reason=args.reason,
        released_by=args.by,
    )  # fmt: skip


def _quarantine_parser(sub) -> None:
    """`joinedup quarantine list | release` (logic in `warehouse.release`, docs/validation.md)."""
    q = sub.add_parser("quarantine", help="quarantined rows and batches: list, re-release")
    qsub = q.add_subparsers(dest="quarantine_command", required=True, metavar="QUARANTINE_COMMAND")
    s = qsub.add_parser("list", help="quarantined rows by load and rule (counts, never values)")
    s.add_argument("--load", help="one load id")
    s.add_argument("--rule", help="rule tags containing TEXT, e.g. record_token_in_people")
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    s.set_defaults(handler=_quarantine_list)
    s = qsub.add_parser(
        "release",
        help="after a fix: re-validate a load's quarantined rows with the current suite and "
        "stage those that pass (or --force with --reason)",
    )
    s.add_argument("--load", required=True, help="load id (from `quarantine list`)")
    s.add_argument("--rule", help="only rows quarantined for a rule tag containing TEXT")
    s.add_argument("--rows", help="only these row numbers of the file, e.g. 3,4,10-12")
    s.add_argument(
        "--force", action="store_true", help="release without re-validation (needs --reason)"
    )
    s.add_argument("--reason", help="why (mandatory with --force; never a child's data)")
    s.add_argument("--by", help="who releases (default: $USER)")
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    s.set_defaults(handler=_quarantine_release)


def _rights_optout(args: argparse.Namespace, settings: Settings) -> dict:
    from warehouse import rights

    return rights.apply_optouts(settings, args.file, requested_by=args.by)


def _rights_access(args: argparse.Namespace, settings: Settings) -> dict:
    from warehouse import rights

    result = rights.subject_access(settings, args.agency, args.record_token, args.by)
    files = rights.write_access_reports(settings, result)
    # the answers are in the files (mode 0600); the figures name no token and no value
    return {"request_id": result["request_id"], "files": files}


def _rights_parser(sub) -> None:
    """`joinedup rights optout | access` (logic in `warehouse.rights`, docs/privacy.md): act on
    both units here (embedded default); in a deployment each unit runs them itself."""
    r = sub.add_parser("rights", help="data-subject rights: opt-out lists, subject access")
    rsub = r.add_subparsers(dest="rights_command", required=True, metavar="RIGHTS_COMMAND")
    s = rsub.add_parser(
        "optout",
        help="apply an agency's opt-out list (agency,record_token CSV): register the records "
        "and remove every row of them from both units' stores",
    )
    s.add_argument("--file", required=True, type=Path, help="the opt-out list CSV")
    s.add_argument("--by", required=True, help="who applies the list")
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    s.set_defaults(handler=_rights_optout)
    s = rsub.add_parser(
        "access",
        help="subject access: what each unit holds about one record, written as JSON (0600) "
        "to <outputs>/rights/<request id>.json",
    )
    s.add_argument("--agency", required=True, help="the record's agency")
    s.add_argument("--record-token", required=True, help="the record's token (never printed)")
    s.add_argument("--by", required=True, help="who makes the request")
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    s.set_defaults(handler=_rights_access)


def _stage(name: str, settings: Settings, **options) -> dict:
    from joinedup.stages import run_stage

    return run_stage(name, settings, **options)


def _run_pipeline(settings: Settings, no_airflow: bool) -> dict:
    started = time.perf_counter()
    if no_airflow:
        import uuid

        run_id = "direct-" + uuid.uuid4().hex[:8]
        stages = {}
        for name in PIPELINE_STAGES:
            t = time.perf_counter()
            stages[name] = {
                "figures": _stage(name, settings, run_id=run_id),
                "seconds": round(time.perf_counter() - t, 2),
            }
        result = {"run_id": run_id, "state": "success", "stages": stages}
    else:
        from joinedup.airflow_runner import run_dag

        with contextlib.redirect_stdout(sys.stderr):
            result = run_dag(settings)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["outputs"] = outputs(settings)
    return result


def outputs(settings: Settings) -> dict:
    """Where a run's results are, for the README and the end of `demo`."""
    o = settings.outputs_dir
    lu = settings.for_unit("linkage")
    return {
        "warehouse": str(settings.warehouse_path),
        "linkage_unit_store": str(lu.warehouse_path),
        "published_snapshot": str(settings.published_path),
        "linkage_report": str(lu.outputs_dir / "linkage" / "report.html"),
        "privacy_uniqueness": str(o / "privacy" / "uniqueness.json"),
        "data_docs": str(o / "validation" / "data_docs" / "index.html"),
        "model_metrics": str(o / "risk_model_metrics.json"),
        "model_card": str(o / "model_card.html"),
        "forecast": str(o / "forecast.json"),
        "quarantine": str(settings.quarantine_dir),
    }


def status(settings: Settings) -> dict:
    """Row counts per layer and the latest run of each stage, for the hub and the linkage unit."""
    out = {"hub": _unit_status(settings)}
    out["linkage_unit"] = _unit_status(settings.for_unit("linkage"))
    return out


def _unit_status(settings: Settings) -> dict:
    from warehouse.db import connect

    if not settings.warehouse_path.exists():
        return {"store": "not created yet: run `joinedup demo` or `joinedup run`"}
    with connect(settings, read_only=True) as con:
        tables = con.execute(
            "SELECT schema_name || '.' || table_name, estimated_size FROM duckdb_tables() "
            "WHERE schema_name <> 'main' ORDER BY 1"
        ).fetchall()
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t, _ in tables}
        last = con.execute(
            "SELECT stage, status, finished_at, error FROM (SELECT *, row_number() OVER "
            "(PARTITION BY stage ORDER BY started_at DESC) rn FROM audit.stage_runs) WHERE rn = 1"
        ).fetchall()
    return {
        "row_counts": counts,
        "last_runs": {s: {"status": st, "finished_at": str(f), "error": e} for s, st, f, e in last},
    }


def _dispatch(args: argparse.Namespace, settings: Settings) -> dict:
    cmd = args.command
    if cmd == "synth":
        return _stage("synth", settings, children=args.children, seed=args.seed)
    if cmd == "pseudonymise":
        return _stage(
            "pseudonymise",
            settings,
            key_file=args.key_file,
            source=args.source,
            dest=args.dest,
            dest_linkage=args.dest_linkage,
            areas=args.areas,
        )
    if cmd == "keygen":
        return _stage("keygen", settings, synthetic_seed=args.synthetic_seed)
    if cmd in STAGES:
        return _stage(cmd, settings)
    if cmd == "run":
        return _run_pipeline(settings, args.no_airflow)
    if cmd == "demo":
        if args.children < 100:
            raise ValueError(f"--children must be at least 100 (got {args.children})")
        figures = {
            "synth": _stage("synth", settings, children=args.children, seed=args.seed),
            # the synthetic agencies' key comes from the seed: the same seed, the same run
            "keygen": _stage("keygen", settings, synthetic_seed=args.seed),
            "pseudonymise": _stage("pseudonymise", settings),
        }
        figures["pipeline"] = _run_pipeline(settings, args.no_airflow)
        return figures
    if cmd == "status":
        return status(settings)
    if cmd in ("models", "quarantine", "rights", "dashboard"):
        return args.handler(args, settings)
    if cmd == "linkage":
        from linkage import commands as linkage_commands

        return linkage_commands.dispatch(args, settings)
    raise ValueError(f"unknown command {cmd!r}")


def headline(figures: dict) -> dict:
    """The figures a user looks for first after a run: linkage quality, quarantine, model, forecast."""
    stages = figures.get("stages") or figures.get("pipeline", {}).get("stages") or {}

    def fig(stage: str) -> dict:
        return (stages.get(stage) or {}).get("figures") or {}

    link, train = fig("link"), fig("train")
    truth = link.get("truth") or {}
    out = {
        "rows_received": fig("ingest").get("rows_loaded"),
        "rows_staged": fig("validate").get("rows_staged"),
        "rows_quarantined": fig("validate").get("rows_quarantined"),
        "files_quarantined": fig("ingest").get("files_quarantined"),
        "linkage_unit_rows_quarantined": fig("link_validate").get("rows_quarantined"),
        "children_unique_on_demographics": (fig("assemble").get("privacy_risk") or {}).get(
            "unique_k1"
        ),
        "records_linked": link.get("records"),
        "children": link.get("children"),
        "linkage_precision": truth.get("precision"),
        "linkage_recall": truth.get("recall"),
        "linkage_f1": truth.get("f1"),
        "twin_false_merges": truth.get("twin_false_merges"),
        "model_version": train.get("version"),
        "model_promoted": train.get("promoted"),
        "model_gate_reasons": "; ".join(train.get("gate_reasons") or []) or None,
        "model_test_auc": train.get("test_roc_auc"),
        "oracle_test_auc": train.get("test_oracle_roc_auc"),
        "observable_oracle_test_auc": train.get("test_observable_oracle_roc_auc"),
        "model_gap_to_observable_oracle": train.get("test_auc_gap_to_observable_oracle"),
        "model_brier": train.get("test_brier"),
        "model_calibration_error": train.get("test_ece"),
        "children_scored": fig("score").get("children_scored"),
        "forecast_12m_expected": fig("forecast").get("expected_total"),
        "forecast_observed_last_12m": fig("forecast").get("observed_last_12m"),
        "forecast_expected_withheld": fig("forecast").get("expected_withheld_reason"),
    }
    return {k: v for k, v in out.items() if v is not None}


def _print_human(command: str, figures: dict) -> None:
    def scalar(v) -> bool:
        return isinstance(v, str | int | float | bool) or v is None

    def show(d: dict, indent: str) -> None:
        for k, v in d.items():
            if scalar(v):
                print(f"{indent}{k}: {v}")
            elif isinstance(v, dict) and v and all(scalar(x) for x in v.values()):
                if len(v) <= 6:
                    print(f"{indent}{k}: " + ", ".join(f"{a}={b}" for a, b in v.items()))
                else:
                    print(f"{indent}{k}:")
                    show(v, indent + "  ")

    print(f"joinedup {command}: done")
    show({k: v for k, v in figures.items() if k not in ("stages", "outputs", "pipeline")}, "  ")
    stages = figures.get("stages") or figures.get("pipeline", {}).get("stages")
    if stages:
        print(
            "  stages (seconds): " + ", ".join(f"{n} {s.get('seconds')}" for n, s in stages.items())
        )
        print("  headline:")
        show(headline(figures), "    ")
    outs = figures.get("outputs") or figures.get("pipeline", {}).get("outputs")
    if outs:
        print("  outputs:")
        show(outs, "    ")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(args.home)
        figures = _dispatch(args, settings)
    except KeyboardInterrupt:
        print(f"joinedup {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; the traceback with --debug
        if args.debug:
            traceback.print_exc()
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"joinedup {args.command}: error: {reason}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError | FileNotFoundError | PermissionError) else 1
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        _print_human(args.command, figures)
    if args.command == "demo" and not args.no_serve:
        from joinedup import dashboard_cmd

        try:
            dashboard_cmd.serve_demo(settings, args.port)
        except KeyboardInterrupt:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
