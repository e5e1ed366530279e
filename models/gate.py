"""The deployment gate: pre-registered minimum performance and maximum fairness gaps that a
trained risk model must meet on the held-out test period before it becomes `current`.

Owns reading the committed gate file (`models/gate.toml`: version, the date it was agreed,
thresholds) into a `Gate`, and `check(metrics, fairness, gate)`, which returns the outcome
`{promoted, reasons, checks: [{name, value, threshold, passed, ...}], gate: {version, agreed,
file, sha256}}`.  A check passes, fails, or (only the oracle check, on real data where there is
no oracle) is not applicable (`passed: None`); the model is promoted only if no check failed.  A
figure the gate needs that could not be measured fails its check.  Fairness gaps
(`gap_checks`) can be judged against chance (`heterogeneity_p`, Cochran's Q on the groups'
child-bootstrap standard errors) and with a precision floor per group, when the gate file says so.

`models.train.run` registers every model and moves `current` only when the gate passes.  Imports
nothing from the project (scipy for the chi-squared tail).
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

#: the committed, pre-registered gate
GATE_FILE = Path(__file__).with_name("gate.toml")

#: performance checks: config key -> (figure in metrics.json, comparison, what it is)
PERFORMANCE_CHECKS: dict[str, tuple[str, str, str]] = {
    "min_roc_auc": ("roc_auc", ">=", "test ROC AUC"),
    "min_roc_auc_ci_lower": ("roc_auc_ci_lower", ">=", "lower 95% bound of the test ROC AUC"),
    "min_precision_at_capacity": (
        "precision_at_capacity",
        ">=",
        "precision among the children flagged at capacity",
    ),
    "max_ece": ("ece", "<=", "expected calibration error"),
    "min_auc_ratio_to_oracle": (
        "auc_ratio_to_oracle",
        ">=",
        "test ROC AUC as a share of the oracle's (synthetic data only)",
    ),
}
#: checks that do not apply when their figure is absent (no oracle on real data)
OPTIONAL = frozenset({"min_auc_ratio_to_oracle"})
#: fairness gap checks: config key -> (per-group figure in the fairness audit, what it is)
GAP_CHECKS: dict[str, tuple[str, str]] = {
    "max_fnr_gap": ("fnr", "gap in false negative rate at capacity"),
    "max_calibration_gap": (
        "calibration_difference",
        "gap in calibration in the large (observed - predicted)",
    ),
}
FAIRNESS_SETTINGS = frozenset(
    {"min_positives", "dimensions", "chance_test_alpha", "max_standard_error_share"}
)
#: z for a two-sided 95% interval: a group's standard error is read off its bootstrap CI
_Z95 = 1.959964


@dataclass(frozen=True)
class Gate:
    """Thresholds and their provenance.  An empty `performance` and `fairness` checks nothing
    (tests of other stages use such a gate; the pipeline always reads the committed file)."""

    version: str
    agreed: str
    performance: dict = field(default_factory=dict)
    fairness: dict = field(default_factory=dict)
    file: str = ""
    sha256: str = ""

    def provenance(self) -> dict:
        return {
            "version": self.version,
            "agreed": self.agreed,
            "file": self.file,
            "sha256": self.sha256,
        }


def load(path: Path | str | None = None) -> Gate:
    """The gate in `path` (default: the committed `models/gate.toml`).  Unknown keys are refused,
    so a misspelt threshold cannot silently switch a check off."""
    path = Path(path) if path else GATE_FILE
    raw = path.read_bytes()
    cfg = tomllib.loads(raw.decode())
    for key in ("version", "agreed"):
        if key not in cfg:
            raise ValueError(f"gate file {path}: missing `{key}`")
    performance = dict(cfg.get("performance", {}))
    fairness = dict(cfg.get("fairness", {}))
    unknown = (set(performance) - set(PERFORMANCE_CHECKS)) | (
        set(fairness) - set(GAP_CHECKS) - FAIRNESS_SETTINGS
    )
    if unknown:
        raise ValueError(f"gate file {path}: unknown setting(s) {sorted(unknown)}")
    return Gate(
        version=str(cfg["version"]),
        agreed=str(cfg["agreed"]),
        performance=performance,
        fairness=fairness,
        file=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _passes(value: float, op: str, threshold: float) -> bool:
    return value >= threshold if op == ">=" else value <= threshold


def _performance(metrics: dict, performance: dict) -> list[dict]:
    figures = dict(metrics)
    ci = metrics.get("roc_auc_ci") or [None, None]
    figures["roc_auc_ci_lower"] = ci[0]
    out = []
    for key, threshold in performance.items():
        figure, op, what = PERFORMANCE_CHECKS[key]
        value = figures.get(figure)
        check = {
            "name": key,
            "figure": figure,
            "description": what,
            "comparison": op,
            "threshold": threshold,
            "value": value,
        }
        if _finite(value):
            check["passed"] = _passes(value, op, threshold)
        elif key in OPTIONAL and value is None:
            check["passed"] = None
            check["note"] = "not applicable: no oracle (real data)"
        else:
            check["passed"] = False
            check["note"] = "could not be measured on the test period"
        out.append(check)
    return out


def _eligible(audit: dict | None, dim: str, figure: str, min_pos: int) -> list[dict]:
    groups = (((audit or {}).get("dimensions") or {}).get(dim) or {}).get("groups", [])
    return [g for g in groups if g.get("positives", 0) >= min_pos and _finite(g.get(figure))]


def standard_error(group: dict, figure: str) -> float | None:
    """A group's standard error of `figure`, from its 95% child-bootstrap CI (width / 3.92)."""
    ci = group.get(f"{figure}_ci") or [None, None]
    if not (_finite(ci[0]) and _finite(ci[1])):
        return None
    return (ci[1] - ci[0]) / (2 * _Z95)


def heterogeneity_p(values: list[float], ses: list[float]) -> float:
    """p-value of Cochran's Q test that independent estimates (disjoint groups of children) with
    these standard errors share one true value: Q = sum w (x - weighted mean)^2, w = 1 / se^2,
    chi-squared with k - 1 degrees of freedom under that hypothesis."""
    from scipy.stats import chi2

    x = [float(v) for v in values]
    w = [1.0 / max(float(se), 1e-9) ** 2 for se in ses]
    mean = sum(wi * xi for wi, xi in zip(w, x, strict=True)) / sum(w)
    q = sum(wi * (xi - mean) ** 2 for wi, xi in zip(w, x, strict=True))
    return float(chi2.sf(q, len(x) - 1))


def gap_checks(
    fairness_audit: dict, fairness: dict, oracle_audit: dict | None = None
) -> list[dict]:
    """The fairness gap checks of `fairness` (the gate's [fairness] table) on an audit.

    A gap is max - min of a figure over the groups of a dimension that have at least
    `min_positives` positive child-months.  Version 1 of the gate passes a gap when it is at most
    the check's maximum.  With `chance_test_alpha` (version 2) a gap above the maximum fails only
    if the groups also differ beyond chance (`heterogeneity_p` < alpha on their child-bootstrap
    standard errors), and with `max_standard_error_share` a group is compared only if its
    standard error is at most that share of the maximum (a group measured more loosely than the
    gap being judged cannot show anything; it is named in `groups_too_imprecise`).  Fewer than
    two comparable groups: the gap cannot be measured and the check fails.

    With `oracle_audit` (the same audit of the oracle's true probabilities on the same rows,
    synthetic data only) each check also carries `oracle_value`: the gap a model that knows the
    true risk shows on these rows.  For calibration that is pure sampling noise (the truth is
    calibrated in every group), so it is the chance level the model's gap should be read
    against; the oracle value never changes whether a check passes."""
    min_pos = int(fairness.get("min_positives", 0))
    alpha = fairness.get("chance_test_alpha")
    se_share = fairness.get("max_standard_error_share")
    dims = fairness.get("dimensions") or list((fairness_audit.get("dimensions") or {}).keys())
    out = []
    for key, threshold in fairness.items():
        if key not in GAP_CHECKS:
            continue
        figure, what = GAP_CHECKS[key]
        for dim in dims:
            eligible = _eligible(fairness_audit, dim, figure, min_pos)
            ses = {g["group"]: standard_error(g, figure) for g in eligible}
            imprecise: list[str] = []
            if se_share is not None:
                limit = float(se_share) * float(threshold)
                imprecise = [n for n, se in ses.items() if se is None or se > limit]
                eligible = [g for g in eligible if g["group"] not in imprecise]
            check = {
                "name": f"{key}:{dim}",
                "figure": figure,
                "dimension": dim,
                "description": f"{what} between {dim} groups",
                "comparison": "<=",
                "threshold": threshold,
                "groups_compared": [g["group"] for g in eligible],
                "min_positives": min_pos,
            }
            if se_share is not None:
                check["groups_too_imprecise"] = imprecise
            if len(eligible) < 2:
                why = f"{min_pos} positive child-months (and 50 children)"
                if se_share is not None:
                    why += f" and a standard error at most {float(se_share) * threshold:g}"
                check.update(
                    value=None,
                    passed=False,
                    note=f"cannot be measured: {len(eligible)} {dim} group(s) with at least "
                    f"{why} in the test period",
                )
            else:
                hi = max(eligible, key=lambda g: g[figure])
                lo = min(eligible, key=lambda g: g[figure])
                gap = round(float(hi[figure] - lo[figure]), 5)
                check.update(value=gap, passed=gap <= threshold, highest=hi["group"],
                             lowest=lo["group"])  # fmt: skip
                if alpha is not None:
                    compared = [ses[g["group"]] for g in eligible]
                    if None in compared:
                        check.update(passed=False, note="no standard error for the chance test")
                    else:
                        p = heterogeneity_p([g[figure] for g in eligible], compared)
                        check.update(p_value=round(p, 4), alpha=alpha)
                        if gap > threshold and p >= alpha:
                            check["passed"] = True
                            check["within_chance"] = True
            if oracle_audit is not None:
                names = {g["group"] for g in eligible}
                orc = [
                    g for g in _eligible(oracle_audit, dim, figure, min_pos) if g["group"] in names
                ]
                if len(orc) >= 2:
                    vals = [g[figure] for g in orc]
                    check["oracle_value"] = round(float(max(vals) - min(vals)), 5)
            out.append(check)
    return out


def _reason(check: dict) -> str:
    if check.get("note"):
        return f"{check['description']}: {check['note']}"
    op = "below the minimum" if check["comparison"] == ">=" else "above the maximum"
    text = f"{check['description']} {check['value']:.4g} is {op} {check['threshold']:g}"
    if "highest" in check:
        text += f" ({check['highest']} vs {check['lowest']})"
    if "p_value" in check:
        text += f", and the groups differ beyond chance (p = {check['p_value']:.3g})"
    return text


def check(metrics: dict, fairness_audit: dict | None, gate: Gate) -> dict:
    """The gate outcome for a model's test `metrics` and fairness audit (gap checks also carry
    the oracle's gap when `metrics` holds an `oracle_fairness` audit)."""
    checks = _performance(metrics, gate.performance)
    if any(k in GAP_CHECKS for k in gate.fairness):
        checks += gap_checks(fairness_audit or {}, gate.fairness, metrics.get("oracle_fairness"))
    failed = [c for c in checks if c["passed"] is False]
    return {
        "promoted": not failed,
        "reasons": [_reason(c) for c in failed],
        "checks": checks,
        "gate": gate.provenance(),
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
