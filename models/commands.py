"""`joinedup models list | show | card`: the model registry seen from the command line (the
`models` group itself is built in `joinedup/cli.py`; `register` adds these subcommands to it).

    joinedup models list                         # registered versions: promoted or not, and why
    joinedup models show [--version V] [--json]  # the current (or given) model's metrics.json
    joinedup models card [--version V]           # (re)write its model card (e.g. after the
                                                 # linkage-sensitivity run)

`show --json` prints the model's metrics.json (test metrics, oracle, fairness, gate outcome) with
its version, kind, creation time and whether it is current.  Heavy imports stay inside the
handlers so `joinedup --help` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(models_sub: Any) -> None:
    """Add `list`, `show` and `card` to the `models` group's subparsers (built in
    `joinedup/cli.py`); each sets `handler(args, settings) -> dict`."""
    json_flag = {"action": "store_true", "default": argparse.SUPPRESS, "help": "print JSON"}
    s = models_sub.add_parser("list", help="registered model versions, promoted or not, and why")
    s.add_argument("--json", **json_flag)
    s.set_defaults(handler=list_handler)
    s = models_sub.add_parser("show", help="the current (or given) model's metrics.json")
    s.add_argument("--version", help="a registered version (default: the current model)")
    s.add_argument("--json", **json_flag)
    s.set_defaults(handler=show_handler)
    s = models_sub.add_parser("card", help="write the model card (Markdown and HTML) again")
    s.add_argument("--version", help="a registered version (default: the current model)")
    s.add_argument("--json", **json_flag)
    s.set_defaults(handler=card_handler)


def _version(args: argparse.Namespace, settings: Any) -> str:
    from models import registry

    version = getattr(args, "version", None) or registry.current_version(settings)
    if not version:
        raise registry.NoPromotedModelError(registry.no_promoted_reason(settings))
    if not (settings.models_dir / version / "metadata.json").exists():
        raise FileNotFoundError(f"no registered model version {version} in {settings.models_dir}")
    return version


def show(settings: Any, version: str | None = None) -> dict:
    """metrics.json of the current (or given) version, with version, kind, created_at, current."""
    import json

    from models import registry

    ns = argparse.Namespace(version=version)
    version = _version(ns, settings)
    meta = json.loads((settings.models_dir / version / "metadata.json").read_text())
    return {
        "version": version,
        "is_current": version == registry.current_version(settings),
        "model_kind": meta.get("model_kind"),
        "created_at": meta.get("created_at"),
        **registry.read_metrics(settings, version),
    }


def _human_show(figures: dict) -> dict:
    gate = figures.get("gate") or {}
    keys = (
        "roc_auc",
        "average_precision",
        "brier",
        "ece",
        "precision_at_capacity",
        "recall_at_capacity",
        "oracle_roc_auc",
        "auc_ratio_to_oracle",
        "observable_oracle_roc_auc",
        "auc_gap_to_observable_oracle",
    )
    out = {k: figures.get(k) for k in ("version", "is_current", "model_kind", "created_at")}
    out["promoted"] = gate.get("promoted")
    out["gate_version"] = (gate.get("gate") or {}).get("version")
    for i, reason in enumerate(gate.get("reasons", []), 1):
        out[f"gate_reason_{i}"] = reason
    out.update({f"test_{k}": figures[k] for k in keys if k in figures})
    return out


def list_handler(args: argparse.Namespace, settings: Any) -> dict:
    from models import registry

    rows = registry.registered_versions(settings)
    current = registry.current_version(settings)
    if getattr(args, "json", False):
        return {"current": current, "models": rows}
    out: dict = {"current": current or "none (no promoted model)"}
    for r in rows:
        state = {True: "promoted", False: "NOT promoted", None: "never gated"}[r["promoted"]]
        text = f"{r['created_at']} {r['model_kind']} test AUC {r['test_roc_auc']} {state}"
        if r["current"]:
            text += " (current)"
        if r["gate_reasons"]:
            text += ": " + "; ".join(r["gate_reasons"])
        out[r["version"]] = text
    return out


def show_handler(args: argparse.Namespace, settings: Any) -> dict:
    figures = show(settings, args.version)
    return figures if getattr(args, "json", False) else _human_show(figures)


def card_handler(args: argparse.Namespace, settings: Any) -> dict:
    from models import card, registry

    version = _version(args, settings)
    versions = [r["version"] for r in registry.registered_versions(settings)]
    # outputs/ holds the card of the current model or, failing that, of the latest one trained
    latest = version == registry.current_version(settings) or versions[-1:] == [version]
    return card.write(settings, version, copy_to_outputs=latest)
