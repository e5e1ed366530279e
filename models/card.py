"""The model card: one Markdown and one HTML page per registered model version, generated from
what the registry and the pipeline measured -- nothing in it is typed by hand.

Owns the card's sections and wording (`markdown`) and where it is written (`write`):
`models_dir/<version>/model_card.md` and `.html` beside metrics.json, and a copy of the latest
trained model's card as `outputs_dir/model_card.md` / `.html`.  Sections: status (the gate
outcome), intended use and non-use, the model, data, test metrics, calibration, the deployment
gate, fairness by sex / ethnicity / deprivation, linkage errors (the link stage's missed-link and
false-merge rates by group, from `audit.stage_runs`, and the score sensitivity to the linkage
threshold, from `outputs_dir/linkage_sensitivity.json` when `models/sensitivity.py` has been
run), and limitations.  Re-run `joinedup models card` after the sensitivity run to include it.

Reads metadata.json, metrics.json, the warehouse (read-only, if it can be opened) and outputs.
Imports `joinedup`, `warehouse`; Markdown is rendered with markdown-it-py.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from pathlib import Path

import duckdb
from markdown_it import MarkdownIt

from joinedup.config import Settings
from models.fairness import ETHNICITY_LABELS
from warehouse.db import connect

CARD_NAME = "model_card"
#: the link stage labels groups by their codes; the card uses the fairness audit's words
_LINKAGE_LABELS = {
    "sex": {"F": "female", "M": "male", "U": "not recorded"},
    "ethnicity": ETHNICITY_LABELS,
}
SENSITIVITY_FILE = "linkage_sensitivity.json"

INTENDED_USE = """\
**Intended use.** To help council analysts and practitioners in children's services decide which
children's records to *look at* first: each month the children with the highest calibrated
probability of entering a child protection plan or care in the next 12 months are listed, with
the factors that raised and lowered their score. A score is **a prompt for professional
judgement, never an automated decision**. The model's probabilities are also summed (by area
and age) for the care-demand forecast, which is why calibration is checked.

**Not for (intended non-use).**
- Not an automated decision: no referral, contact, assessment, intervention, or closure of a
  case may be made or refused because of a score alone; a practitioner who knows the family
  decides, and may disagree with the score.
- Not a statement about a child or family's circumstances: the reasons explain the *model*, from
  recorded service contact, not need or risk itself.
- Not for children it was not evaluated on (other councils, other recording practices), for
  eligibility or rationing decisions, for sanctions, for immigration or policing purposes, or
  for sharing with anyone outside the children's services team.
- Not to be used from a model that failed the deployment gate (no scores are published from
  one) or on real data without a data-protection impact assessment, an equality impact
  assessment, co-design with practitioners and families, and monitoring.
"""

LIMITATIONS = """\
- **Synthetic data only.** The figures show that the pipeline works on a simulated county with
  known truth; they say nothing about how such a model would perform on real records.
- **It learns recorded service contact, not need.** Children from families who are more visible
  to agencies (and areas with different recording practice) are more likely to be flagged; the
  flag-rate-to-prevalence ratios above show where that happens.
- **Small groups.** Groups with fewer than 50 children in the test period are listed as too few
  to report; their figures would be noise. Gaps are the largest minus the smallest estimate, so
  they are biased upwards in small groups: read them with their CIs. The gate lets a gap above
  its maximum through only when chance explains it; on a county of 20,000 children that test
  caught one group miscalibrated by 1 percentage point in 138 of 144 trials, but a half-point
  miscalibration in only 85 of 144.
- **Equal error rates are not possible with equal calibration.** Groups have different outcome
  rates, so even the true probabilities miss different shares of each group's children at a
  fixed capacity (the oracle's FNR gap in the gate table, on synthetic data).
- **Linkage errors carry into the scores.** A missed link hides a child's events from the
  model (lower scores); a false merge adds someone else's events (higher scores, wrong
  reasons). Both fall unevenly by group (see the linkage section).
- **Six test months of one county.** Confidence intervals are wide and positives few;
  performance drifts as practice changes, so retrain and re-check the gate regularly.
"""


# ------------------------------------------------------------------ formatting
def _f(x, digits: int = 3) -> str:
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
    if not ci or ci[0] is None:
        return ""
    return f"{ci[0]:.3f}-{ci[1]:.3f}"


def _cell(x) -> str:
    return _f(x).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


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


# ------------------------------------------------------------------ sections
def _status(version: str, gate: dict, is_current: bool) -> str:
    if gate.get("promoted"):
        state = "**PROMOTED**: passed the deployment gate" + (
            " and is the current model (its scores are published)."
            if is_current
            else "; a later promoted model is current now."
        )
    elif gate:
        state = (
            "**NOT PROMOTED**: failed the deployment gate. It is registered for the record, "
            "**no scores are published from it**, and the previous promoted model (if any) "
            "stays current. Reasons:\n\n" + "".join(f"- {r}\n" for r in gate.get("reasons", []))
        )
    else:
        state = "**NOT GATED**: this model has no deployment gate outcome; it cannot be used."
    return f"## Status\n\nModel version `{version}`: {state}\n"


def _details(meta: dict) -> str:
    hp = {k: v for k, v in (meta.get("hyper_parameters") or {}).items() if k != "kind"}
    kind = {
        "logistic": "L2-regularised logistic regression",
        "hgb": "gradient boosting",
        "blend": "mean log-odds of a logistic regression and a gradient boosting model",
    }.get(meta.get("model_kind"), meta.get("model_kind"))
    return "## Model\n\n" + _table(
        ["", ""],
        [
            ["kind", kind],
            ["settings", ", ".join(f"{k}={v}" for k, v in hp.items())],
            ["calibration", f"{meta.get('calibration')} (fitted on held-out children)"],
            ["features", len(meta.get("features") or [])],
            ["reasons", meta.get("reason_method")],
            ["trained", meta.get("created_at")],
            ["scikit-learn", meta.get("sklearn_version")],
            ["model file sha256", str(meta.get("model_sha256"))[:16] + "..."],
        ],
    )


def _data(meta: dict) -> str:
    tw = meta.get("training_window") or {}
    rows, pos = tw.get("rows") or {}, tw.get("positives") or {}
    return (
        "## Data\n\n"
        "One row per child per month (`features.child_month`), built only from events strictly "
        "before that month from the linked records of health, police, education and children's "
        "social care (pseudonymised at each agency). Label: a child protection plan or care "
        "starting in the following 12 months. Children already in care are not scored. "
        "The data are **synthetic**.\n\n"
        + _table(
            ["part", "as-of months", "child-months", "positives"],
            [
                [k, " to ".join(tw.get(k) or []), rows.get(k), pos.get(k)]
                for k in ("train", "validation", "test")
            ],
        )
        + f"\nTraining and validation months end {tw.get('embargo_months')} months before the "
        "first test month, so no training label window reaches into the test period; "
        f"validation is a held-out {_f(tw.get('validation_child_fraction'), 2)} of children. "
        "The test period is never used for any choice.\n"
    )


def _metrics(m: dict) -> str:
    rows = [
        [
            "ROC AUC",
            m.get("roc_auc"),
            _ci(m.get("roc_auc_ci")),
            m.get("oracle_roc_auc"),
            m.get("observable_oracle_roc_auc"),
        ],
        [
            "average precision",
            m.get("average_precision"),
            _ci(m.get("average_precision_ci")),
            m.get("oracle_average_precision"),
            m.get("observable_oracle_average_precision"),
        ],
        ["Brier score", m.get("brier"), _ci(m.get("brier_ci")), None, None],
        ["expected calibration error", m.get("ece"), _ci(m.get("ece_ci")), None, None],
        [
            f"precision at capacity ({m.get('capacity_per_month')}/month)",
            m.get("precision_at_capacity"),
            _ci(m.get("precision_at_capacity_ci")),
            m.get("oracle_precision_at_capacity"),
            None,
        ],
        [
            "recall at capacity",
            m.get("recall_at_capacity"),
            _ci(m.get("recall_at_capacity_ci")),
            None,
            None,
        ],
        [
            "ours / latent oracle ROC AUC",
            m.get("auc_ratio_to_oracle"),
            _ci(m.get("auc_ratio_to_oracle_ci")),
            None,
            None,
        ],
        [
            "observable oracle - ours, ROC AUC",
            m.get("auc_gap_to_observable_oracle"),
            _ci(m.get("auc_gap_to_observable_oracle_ci")),
            None,
            None,
        ],
    ]
    cal = m.get("calibration_deciles") or []
    return (
        "## Test metrics\n\n"
        f"Held-out test period: {_f(m.get('rows'))} child-months of {_f(m.get('children'))} "
        f"children, {_f(m.get('positives'))} with the outcome (prevalence "
        f"{_f(m.get('prevalence'), 4)}). 95% CIs resample children. Synthetic data only: the "
        "latent oracle is the true probability in the simulation, given the household's hidden "
        "state and the child's trait, which no model can see; the observable oracle is the exact "
        "Bayes posterior given the child's own recorded history, the best a model built on the "
        "hub's timeline could do.\n\n"
        + _table(["figure", "model", "95% CI", "latent oracle", "observable oracle"], rows)
        + "\n### Calibration by predicted decile\n\n"
        + _calibration_note(m.get("calibration") or {})
        + _table(
            [
                "decile",
                "child-months",
                "with outcome",
                "mean predicted",
                "observed rate",
                "observed - predicted",
                "95% CI",
            ],
            [
                [
                    c["bin"] + 1,
                    c["n"],
                    c.get("positives"),
                    c["mean_predicted"],
                    c["observed_rate"],
                    c.get("deviation"),
                    _ci(c.get("deviation_ci")),
                ]
                for c in cal
            ],
        )  # fmt: skip
        + "".join(f"\nWarning: {w}\n" for w in m.get("warnings") or [])
    )


def _calibration_note(summary: dict) -> str:
    """One sentence on the per-decile calibration target (within 2 percentage points)."""
    if summary.get("max_abs_deviation") is None:
        return ""
    tol = 100 * summary["tolerance"]
    verdict = (
        f"every bin is within {tol:.0f} percentage points"
        if summary["within_tolerance"]
        else f"**not every bin is within {tol:.0f} percentage points**"
    )
    out = (
        f"Deciles of the predicted probability (tied scores stay in one bin, so there can be "
        f"fewer than 10 bins: {summary['bins']} here). The largest gap between observed and "
        f"predicted is {100 * summary['max_abs_deviation']:.2f} percentage points (decile "
        f"{summary['max_abs_deviation_bin'] + 1}): {verdict}."
    )
    if summary.get("bins_clearly_outside"):
        bins = ", ".join(str(b + 1) for b in summary["bins_clearly_outside"])
        out += f" In decile(s) {bins} the 95% CI of the gap lies wholly outside the tolerance."
    return out + "\n\n"


def _gate_note(check: dict) -> str:
    """The note column of a gate check: why it could not be measured, or its chance test."""
    parts = [check["note"]] if check.get("note") else []
    if check.get("within_chance"):
        parts.append(
            f"above the maximum, but no more than chance produces (p = {check['p_value']:.3g} "
            f">= {check['alpha']:g}): not evidence that the groups differ"
        )
    elif "p_value" in check:
        parts.append(f"chance test p = {check['p_value']:.3g}")
    if check.get("groups_too_imprecise"):
        parts.append("too imprecise to compare: " + ", ".join(check["groups_too_imprecise"]))
    return "; ".join(parts)


def _gate(gate: dict) -> str:
    if not gate:
        return "## Deployment gate\n\nNot evaluated.\n"
    prov = gate.get("gate") or {}
    rows = []
    checks = gate.get("checks", [])
    with_oracle = any("oracle_value" in c for c in checks)
    for c in checks:
        passed = {True: "pass", False: "**FAIL**", None: "not applicable"}[c.get("passed")]
        value = c.get("value")
        if c.get("highest"):
            value = f"{_f(value, 4)} ({c['highest']} vs {c['lowest']})"
        row = [c["description"], f"{c['comparison']} {c['threshold']}", _f(value, 4)]
        if with_oracle:
            row.append(_f(c.get("oracle_value"), 4) if "oracle_value" in c else "")
        rows.append(row + [passed, _gate_note(c)])
    header = ["check", "threshold", "value"]
    header += ["oracle's gap"] if with_oracle else []
    oracle_note = (
        "The oracle's gap is the same check on the simulation's true probabilities for the same "
        "children (synthetic data only). The truth is calibrated in every group, so its "
        "calibration gap is sampling noise alone: the size of gap chance produces here. It is "
        "shown for reading, and does not change a result.\n\n"
        if with_oracle
        else ""
    )
    return (
        "## Deployment gate\n\n"
        f"Pre-registered gate version {prov.get('version')}, agreed {prov.get('agreed')} "
        f"(`{Path(str(prov.get('file', ''))).name}`, sha256 {str(prov.get('sha256'))[:12]}...). "
        "A model is promoted to current only if no check fails.\n\n"
        + oracle_note
        + (_table([*header, "result", "note"], rows) if rows else "")
    )


def _fairness(fair: dict | None) -> str:
    if not fair:
        return "## Fairness\n\nNot measured for this model.\n"
    out = [
        "## Fairness\n\n"
        f"Test period, by group; flags are the {fair.get('flag_rule')}. "
        f"Every group with at least {fair.get('min_children')} children is shown; smaller "
        "groups are listed as too few to report. FNR = children with the outcome who were not "
        "flagged; observed - predicted = calibration in the large; flag / prevalence: compare "
        "it between groups -- a group with a higher ratio is flagged more often relative to its "
        "own outcome rate than the others (capacity is below the outcome rate, so every ratio "
        "can be below 1).\n"
    ]
    for dim, d in (fair.get("dimensions") or {}).items():
        rows = [
            [
                g["group"],
                g["children"],
                g["positives"],
                _f(g.get("prevalence"), 4),
                _f(g.get("roc_auc")),
                _f(g.get("calibration_difference"), 4),
                _f(g.get("ece"), 4),
                _f(g.get("flag_rate"), 4),
                _f(g.get("tpr")),
                _f(g.get("fpr"), 4),
                _f(g.get("fnr")),
                _f(g.get("precision_flagged")),
                _f(g.get("flag_to_prevalence"), 2),
            ]
            for g in d.get("groups", [])
        ]
        out.append(f"\n### By {dim}\n\n")
        out.append(
            _table(
                [
                    "group",
                    "children",
                    "positives",
                    "prevalence",
                    "AUC",
                    "observed - predicted",
                    "ECE",
                    "flag rate",
                    "TPR",
                    "FPR",
                    "FNR",
                    "precision flagged",
                    "flag / prevalence",
                ],
                rows,
            )
        )
        few = d.get("too_few_to_report") or []
        if few:
            out.append(
                "\nToo few to report (fewer than "
                f"{fair.get('min_children')} children): "
                + ", ".join(g["group"] for g in few)
                + ".\n"
            )
        gaps = [
            [
                k,
                _f(v.get("gap"), 4),
                _ci(v.get("gap_ci")),
                f"{v.get('highest')} vs {v.get('lowest')}"
                if v.get("gap") is not None
                else f"{v.get('groups_compared')} group(s) with a value",
            ]
            for k, v in (d.get("gaps") or {}).items()
        ]
        out.append("\nGaps (largest - smallest across the groups shown):\n\n")
        out.append(_table(["figure", "gap", "95% CI", "groups"], gaps))
    return "".join(out)


def _linkage(settings: Settings, version: str) -> str:
    out = [
        "## Linkage errors and their effect on the scores\n\n"
        "Scores are computed on linked records. A missed link splits a child into two, each "
        "with part of the history (scores too low); a false merge joins two children (scores "
        "too high, with someone else's reasons).\n"
    ]
    link = linkage_by_group(settings)
    by_group = (link or {}).get("by_group")
    if by_group:
        out.append(
            f"\n### Linkage quality by group (latest link run; overall pairwise precision "
            f"{_f(link.get('precision'), 4)}, recall {_f(link.get('recall'), 4)})\n\n"
        )
        for dim, rows in by_group.items():
            names = _LINKAGE_LABELS.get(dim, {})
            out.append(f"\nBy {dim}:\n\n")
            out.append(
                _table(
                    ["group", "persons", "missed-link rate", "false-merge rate", "F1"],
                    [
                        [
                            names.get(r.get("group"), r.get("group")),
                            r.get("persons"),
                            _f(r.get("missed_link_rate"), 4),
                            _f(r.get("false_merge_rate"), 4),
                            _f(r.get("f1"), 4),
                        ]
                        for r in rows
                    ],
                )
            )
    else:
        out.append(
            "\nLinkage quality by group: not available (no link run against synthetic truth is "
            "recorded in this warehouse).\n"
        )
    sens = _sensitivity(settings)
    out.append("\n### Sensitivity of the scores to the linkage threshold\n\n")
    if not sens:
        out.append(
            "**Not measured yet.** Run the linkage-sensitivity analysis "
            "(`models/sensitivity.py`, which writes `outputs/linkage_sensitivity.json`), then "
            "`joinedup models card` to include it here.\n"
        )
        return "".join(out)
    if sens.get("model_version") != version:
        out.append(
            f"Measured with model version `{sens.get('model_version')}`, not this one; the "
            "figures show how sensitive scores of this kind are to linkage, not this model's.\n\n"
        )
    links = sens.get("linkage_at_threshold") or {}
    out.append(
        _table(
            [
                "linkage",
                "threshold",
                "children",
                "precision vs truth",
                "recall vs truth",
                "precision at capacity (test)",
            ],
            [
                [
                    name,
                    v.get("threshold"),
                    v.get("children"),
                    _f(v.get("linkage_precision_vs_truth"), 4),
                    _f(v.get("linkage_recall_vs_truth"), 4),
                    _f((v.get("capacity_on_test_months") or {}).get("precision_at_capacity"), 4),
                ]
                for name, v in links.items()
            ],
        )
    )
    comps = sens.get("score_comparisons") or {}
    if comps:
        out.append("\n")
        out.append(
            _table(
                [
                    "comparison",
                    "mean top-k overlap",
                    "children leaving the top k (all months)",
                    "median Spearman rho",
                    "min Spearman rho",
                ],
                [
                    [
                        name.replace("_", " "),
                        _f(c.get("top_k_overlap_mean_share"), 3),
                        c.get("leaving_top_k_total"),
                        _f(c.get("spearman_rank_correlation_median"), 4),
                        _f(c.get("spearman_rank_correlation_min"), 4),
                    ]
                    for name, c in comps.items()
                ],
            )
        )
    return "".join(out)


def markdown(settings: Settings, version: str) -> str:
    """The model card of a registered version, as Markdown."""
    folder = settings.models_dir / version
    meta = json.loads((folder / "metadata.json").read_text())
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    current_file = settings.models_dir / "current"
    is_current = current_file.exists() and current_file.read_text().strip() == version
    gate = metrics.get("gate") or {}
    return "\n".join(
        [
            f"# Model card: children's services risk model `{version}`\n",
            "Generated from the model registry (`metadata.json`, `metrics.json`) and the "
            "pipeline's own measurements. Synthetic data only.\n",
            _status(version, gate, is_current),
            "## Intended use and non-use\n\n" + INTENDED_USE,
            _details(meta),
            _data(meta),
            _metrics(metrics),
            _gate(gate),
            _fairness(metrics.get("fairness")),
            _linkage(settings, version),
            "## Limitations\n\n" + LIMITATIONS,
        ]
    )


def to_html(md: str, title: str) -> str:
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md)
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;"
        "padding:0 1em;line-height:1.45}table{border-collapse:collapse;margin:.5em 0;"
        "font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left}"
        "th{background:#f3f3f3}code{background:#f6f6f6}</style></head><body>\n"
        f"{body}</body></html>\n"
    )


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
