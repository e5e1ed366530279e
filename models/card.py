"""The model card: one Markdown and one HTML page per registered model version, generated from
what the registry and the pipeline measured -- nothing in it is typed by hand.

Owns the card's inputs and their shaping (`context`), its rendering (`markdown`, `to_html`) and
where it is written (`write`): `models_dir/<version>/model_card.md` and `.html` beside
metrics.json, and a copy of the latest trained model's card as `outputs_dir/model_card.md` /
`.html`.  `context(settings, version)` reads metadata.json, metrics.json, the `current` pointer,
the warehouse (read-only, if it can be opened: the link stage's missed-link and false-merge rates
by group, from `audit.stage_runs`) and `outputs_dir/linkage_sensitivity.json` (the score
sensitivity to the linkage threshold, when `models/sensitivity.py` has been run; re-run
`joinedup models card` after it), and returns a plain dict: table rows with every key present,
and derived values (status, calibration verdict, which gate checks have an oracle figure).

The wording, section order and table layouts live in the Jinja2 templates beside this module:
`templates/model_card.md.j2` (status, intended use and non-use, the model, data, test metrics,
calibration, the deployment gate, fairness by group, linkage errors, limitations) and
`templates/model_card.html.j2` (the page around markdown-it-py's rendering; autoescaped).
Undefined names in a template raise (StrictUndefined).  Imports `joinedup`, `warehouse`.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import cache
from pathlib import Path

import duckdb
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt

from joinedup.config import Settings
from models.fairness import ETHNICITY_LABELS
from warehouse.db import connect

CARD_NAME = "model_card"
TEMPLATES_DIR = Path(__file__).with_name("templates")
MARKDOWN_TEMPLATE = "model_card.md.j2"
HTML_TEMPLATE = "model_card.html.j2"
#: the link stage labels groups by their codes; the card uses the fairness audit's words
_LINKAGE_LABELS = {
    "sex": {"F": "female", "M": "male", "U": "not recorded"},
    "ethnicity": ETHNICITY_LABELS,
}
SENSITIVITY_FILE = "linkage_sensitivity.json"

#: the figures of metrics.json the card shows (absent ones are None)
_METRICS = (
    "rows", "children", "positives", "prevalence", "capacity_per_month",
    "roc_auc", "roc_auc_ci", "oracle_roc_auc", "observable_oracle_roc_auc",
    "average_precision", "average_precision_ci", "oracle_average_precision",
    "observable_oracle_average_precision", "brier", "brier_ci", "ece", "ece_ci",
    "precision_at_capacity", "precision_at_capacity_ci", "oracle_precision_at_capacity",
    "recall_at_capacity", "recall_at_capacity_ci", "auc_ratio_to_oracle",
    "auc_ratio_to_oracle_ci", "auc_gap_to_observable_oracle", "auc_gap_to_observable_oracle_ci",
)  # fmt: skip
#: a fairness group's figures in the card's table
_GROUP_FIGURES = (
    "prevalence", "roc_auc", "calibration_difference", "ece", "flag_rate", "tpr", "fpr", "fnr",
    "expected_fnr", "fnr_excess", "precision_flagged", "flag_to_prevalence",
)  # fmt: skip


# ------------------------------------------------------------------ formatting (template filters)
def _f(x, digits: int = 3) -> str:
    """`num`: None -> n/a, bools yes/no, ints with thousands separators, floats to `digits`."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _ci(ci) -> str:
    """`ci`: a 95% interval as "lo-hi" (three decimals), or nothing."""
    if not ci or ci[0] is None:
        return ""
    return f"{ci[0]:.3f}-{ci[1]:.3f}"


def _cell(x) -> str:
    """`cell`: a Markdown table cell (`num`, with "|" escaped and newlines flattened)."""
    return _f(x).replace("|", "\\|").replace("\n", " ")


@cache
def environment() -> Environment:
    """The card's Jinja2 environment: templates beside this module, undefined names raise,
    autoescape for the HTML template only."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # "html" alone would not match model_card.html.j2 (select_autoescape tests the suffix)
        autoescape=select_autoescape(["html", "html.j2"]),
    )
    env.filters.update(num=_f, ci=_ci, cell=_cell, fmt=format)
    return env


# ------------------------------------------------------------------ inputs
def linkage_by_group(settings: Settings) -> dict | None:
    """The latest successful link stage's error rates by group (from audit.stage_runs), or None
    when the warehouse cannot be read or holds none (e.g. linked tables built from truth)."""
    if not settings.warehouse_path.exists():
        return None
    try:
        with connect(settings, read_only=True) as con:
            rows = con.execute(
                "SELECT figures FROM audit.stage_runs WHERE stage = 'link' AND status = 'success' "
                "AND figures IS NOT NULL ORDER BY finished_at DESC LIMIT 1"
            ).fetchall()
    except duckdb.Error:  # locked by a writer, or no audit table
        return None
    if not rows:
        return None
    figures = json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]
    truth = (figures or {}).get("truth") or {}
    return {
        "precision": truth.get("precision"),
        "recall": truth.get("recall"),
        "by_group": truth.get("by_group"),
    }


def _sensitivity(settings: Settings) -> dict | None:
    path = settings.outputs_dir / SENSITIVITY_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


# ------------------------------------------------------------------ context
def _model(meta: dict) -> dict:
    hp = {k: v for k, v in (meta.get("hyper_parameters") or {}).items() if k != "kind"}
    return {
        "kind": meta.get("model_kind"),
        "settings": ", ".join(f"{k}={v}" for k, v in hp.items()),
        "calibration": meta.get("calibration"),
        "n_features": len(meta.get("features") or []),
        "reason_method": meta.get("reason_method"),
        "created_at": meta.get("created_at"),
        "sklearn_version": meta.get("sklearn_version"),
        "sha256_prefix": str(meta.get("model_sha256"))[:16],
    }


def _data(meta: dict) -> dict:
    tw = meta.get("training_window") or {}
    rows, pos = tw.get("rows") or {}, tw.get("positives") or {}
    return {
        "parts": [
            {"part": k, "months": tw.get(k) or [], "rows": rows.get(k), "positives": pos.get(k)}
            for k in ("train", "validation", "test")
        ],
        "embargo_months": tw.get("embargo_months"),
        "validation_child_fraction": tw.get("validation_child_fraction"),
    }


def _calibration(summary: dict) -> dict | None:
    """The per-decile calibration target's verdict (every bin within the tolerance), in
    percentage points; None when it was not measured."""
    if summary.get("max_abs_deviation") is None:
        return None
    return {
        "bins": summary["bins"],
        "tolerance_pp": 100 * summary["tolerance"],
        "max_gap_pp": 100 * summary["max_abs_deviation"],
        "max_gap_decile": summary["max_abs_deviation_bin"] + 1,
        "within_tolerance": summary["within_tolerance"],
        "deciles_outside": [b + 1 for b in summary.get("bins_clearly_outside") or []],
    }


def _gate(gate: dict) -> dict | None:
    if not gate:
        return None
    prov = gate.get("gate") or {}
    checks = gate.get("checks", [])
    return {
        "version": prov.get("version"),
        "agreed": prov.get("agreed"),
        "file_name": Path(str(prov.get("file", ""))).name,
        "sha256_prefix": str(prov.get("sha256"))[:12],
        "with_oracle": any("oracle_value" in c for c in checks),
        "checks": [
            {
                "description": c["description"],
                "comparison": c["comparison"],
                "threshold": c["threshold"],
                "value": c.get("value"),
                "highest": c.get("highest"),
                "lowest": c.get("lowest"),
                "passed": c.get("passed"),
                "has_oracle_value": "oracle_value" in c,
                "oracle_value": c.get("oracle_value"),
                "note": c.get("note"),
                "within_chance": c.get("within_chance"),
                "has_p_value": "p_value" in c,
                "p_value": c.get("p_value"),
                "alpha": c.get("alpha"),
                "test": c.get("test"),
                "holm_level": c.get("holm_level"),
                "holm_of": c.get("holm_of"),
                "family_alpha": c.get("family_alpha"),
                "within_doubt": c.get("within_doubt"),
                "groups_too_imprecise": c.get("groups_too_imprecise") or [],
            }
            for c in checks
        ],
    }


def _fairness(fair: dict | None) -> dict | None:
    if not fair:
        return None
    dims = []
    for dim, d in (fair.get("dimensions") or {}).items():
        groups = [
            {"group": g["group"], "children": g["children"], "positives": g["positives"]}
            | {k: g.get(k) for k in _GROUP_FIGURES}
            for g in d.get("groups", [])
        ]
        gaps = [
            {
                "figure": k,
                **{x: v.get(x) for x in ("gap", "gap_ci", "highest", "lowest", "groups_compared")},
            }
            for k, v in (d.get("gaps") or {}).items()
        ]
        few = [g["group"] for g in d.get("too_few_to_report") or []]
        dims.append({"name": dim, "groups": groups, "too_few": few, "gaps": gaps})
    return {
        "flag_rule": fair.get("flag_rule"),
        "min_children": fair.get("min_children"),
        "dimensions": dims,
    }


def _linkage(settings: Settings, version: str) -> dict:
    link = linkage_by_group(settings) or {}
    by_group = [
        {
            "name": dim,
            "groups": [
                {"group": _LINKAGE_LABELS.get(dim, {}).get(r.get("group"), r.get("group"))}
                | {k: r.get(k) for k in ("persons", "missed_link_rate", "false_merge_rate", "f1")}
                for r in rows
            ],
        }
        for dim, rows in (link.get("by_group") or {}).items()
    ]
    sens = _sensitivity(settings)
    if sens:
        sens = {
            "this_version": sens.get("model_version") == version,
            "model_version": sens.get("model_version"),
            "linkages": [
                {
                    "name": name,
                    "threshold": v.get("threshold"),
                    "children": v.get("children"),
                    "precision_vs_truth": v.get("linkage_precision_vs_truth"),
                    "recall_vs_truth": v.get("linkage_recall_vs_truth"),
                    "precision_at_capacity": (v.get("capacity_on_test_months") or {}).get(
                        "precision_at_capacity"
                    ),
                }
                for name, v in (sens.get("linkage_at_threshold") or {}).items()
            ],
            "comparisons": [
                {
                    "name": name,
                    "top_k_overlap_mean_share": c.get("top_k_overlap_mean_share"),
                    "leaving_top_k_total": c.get("leaving_top_k_total"),
                    "spearman_median": c.get("spearman_rank_correlation_median"),
                    "spearman_min": c.get("spearman_rank_correlation_min"),
                }
                for name, c in (sens.get("score_comparisons") or {}).items()
            ],
        }
    return {
        "precision": link.get("precision"),
        "recall": link.get("recall"),
        "by_group": by_group,
        "sensitivity": sens or None,
    }


def context(settings: Settings, version: str) -> dict:
    """Everything the card's template shows for a registered version, as plain data."""
    folder = settings.models_dir / version
    meta = json.loads((folder / "metadata.json").read_text())
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    current_file = settings.models_dir / "current"
    is_current = current_file.exists() and current_file.read_text().strip() == version
    gate = metrics.get("gate") or {}
    return {
        "version": version,
        "status": "promoted" if gate.get("promoted") else "refused" if gate else "not gated",
        "is_current": is_current,
        "reasons": gate.get("reasons", []),
        "model": _model(meta),
        "data": _data(meta),
        "metrics": {k: metrics.get(k) for k in _METRICS},
        "calibration": _calibration(metrics.get("calibration") or {}),
        "calibration_deciles": [
            {
                "decile": c["bin"] + 1,
                "n": c["n"],
                "positives": c.get("positives"),
                "mean_predicted": c["mean_predicted"],
                "observed_rate": c["observed_rate"],
                "deviation": c.get("deviation"),
                "deviation_ci": c.get("deviation_ci"),
            }
            for c in metrics.get("calibration_deciles") or []
        ],
        "warnings": metrics.get("warnings") or [],
        "gate": _gate(gate),
        "fairness": _fairness(metrics.get("fairness")),
        "linkage": _linkage(settings, version),
    }


# ------------------------------------------------------------------ rendering and writing
def markdown(settings: Settings, version: str) -> str:
    """The model card of a registered version, as Markdown."""
    return environment().get_template(MARKDOWN_TEMPLATE).render(context(settings, version))


def to_html(md: str, title: str) -> str:
    """The card's Markdown as an HTML page (raw HTML in the Markdown is escaped, not passed)."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md)
    return environment().get_template(HTML_TEMPLATE).render(title=title, body=body)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write(settings: Settings, version: str, copy_to_outputs: bool = True) -> dict:
    """Write the card beside the version's metrics.json and (by default) copy it to outputs."""
    md = markdown(settings, version)
    folder = settings.models_dir / version
    paths = {"markdown": folder / f"{CARD_NAME}.md", "html": folder / f"{CARD_NAME}.html"}
    _atomic_write(paths["markdown"], md)
    _atomic_write(paths["html"], to_html(md, f"Model card {version}"))
    out = {k: str(v) for k, v in paths.items()}
    if copy_to_outputs:
        settings.outputs_dir.mkdir(parents=True, exist_ok=True)
        for kind, src in paths.items():
            dest = settings.outputs_dir / src.name
            shutil.copyfile(src, dest)
            out[f"outputs_{kind}"] = str(dest)
    return out
