"""The deployment gate: pre-registered minimum performance and maximum fairness gaps that a
trained risk model must meet on the held-out test period before it becomes `current`.

Owns reading the committed gate file (`models/gate.toml`: version, the date it was agreed,
thresholds) into a `Gate`, and `check(metrics, fairness, gate)`, which returns the outcome
`{promoted, reasons, checks: [{name, value, threshold, passed, ...}], gate: {version, agreed,
file, sha256}}`.  A check passes, fails, or (only the oracle check, on real data where there is
no oracle) is not applicable (`passed: None`); the model is promoted only if no check failed.  A
figure the gate needs that could not be measured fails its check.  Fairness gaps
(`gap_checks`) are judged, as the gate file says: by the point gap (version 1); against chance
(version 2: `heterogeneity_p`, Cochran's Q on the groups' child-bootstrap standard errors); or
(version 3, `family_alpha`) by a test per check (`gap_test`: pairwise "differs", the committed
choice, or "exceeds_maximum", both Bonferroni over pairs, or "heterogeneity") with Holm's
step-down over all gap checks (`holm`), so that a model whose groups do not differ (for
"exceeds_maximum": whose true gaps are all within their maxima) is refused by them with
probability at most `family_alpha`.  A precision floor per group applies when the gate file sets one.

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
        "test ROC AUC as a share of the latent oracle's (synthetic data only)",
    ),
    "max_auc_gap_to_observable_oracle": (
        "auc_gap_to_observable_oracle",
        "<=",
        "test ROC AUC below the observable oracle's on the same rows (synthetic data only)",
    ),
}
#: checks that do not apply when their figure is absent (no oracle on real data)
OPTIONAL = frozenset({"min_auc_ratio_to_oracle", "max_auc_gap_to_observable_oracle"})
#: fairness gap checks: config key -> (per-group figure in the fairness audit, what it is)
GAP_CHECKS: dict[str, tuple[str, str]] = {
    "max_fnr_gap": ("fnr", "gap in false negative rate at capacity"),
    "max_calibration_gap": (
        "calibration_difference",
        "gap in calibration in the large (observed - predicted)",
    ),
    "max_fnr_excess_gap": (
        "fnr_excess",
        "gap in missed positives beyond what the scores imply (FNR - expected FNR at capacity)",
    ),
}
FAIRNESS_SETTINGS = frozenset(
    {
        "min_positives",
        "dimensions",
        "chance_test_alpha",
        "max_standard_error_share",
        "family_alpha",
        "gap_test",
    }
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


def exceeds_maximum_p(values: list[float], ses: list[float], maximum: float) -> tuple[float, int]:
    """p-value of "some two groups differ by more than `maximum`" against the null that every
    pair differs by at most it: for each pair, the one-sided z test of x_i - x_j <= maximum on
    independent estimates (disjoint groups of children), the smallest p times the number of pairs
    (Bonferroni; the null is the intersection of the pairs' nulls).  At the null's boundary (a
    pair exactly `maximum` apart) it rejects with probability at most its level; a truly fair
    model (gap 0) far less often.  Returns (p, number of pairs)."""
    from scipy.stats import norm

    best, pairs = 1.0, 0
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            pairs += 1
            diff = abs(float(values[i]) - float(values[j]))
            se = math.sqrt(float(ses[i]) ** 2 + float(ses[j]) ** 2)
            z = (diff - maximum) / max(se, 1e-12)
            best = min(best, float(norm.sf(z)))
    return min(1.0, best * max(pairs, 1)), pairs


#: how a version-3 gap check's p-value is found (`gap_test` in the gate file)
GAP_TESTS = ("exceeds_maximum", "differs", "heterogeneity")


def _family_test(eligible: list[dict], figure: str, ses: list, threshold: float, how: str) -> dict:
    """One gap check's p-value for `holm`: "exceeds_maximum" tests |x_i - x_j| <= threshold for
    every pair (one-sided at the boundary); "differs" tests x_i = x_j for every pair (two-sided;
    both Bonferroni over pairs);
    "heterogeneity" is Cochran's Q of one common value.  With the last two a rejected check also
    needs its point gap above the threshold to fail."""
    values = [g[figure] for g in eligible]
    if how == "exceeds_maximum":
        p, pairs = exceeds_maximum_p(values, ses, threshold)
    elif how == "differs":  # two-sided: |x_i - x_j| beyond chance in either direction
        p, pairs = exceeds_maximum_p(values, ses, 0.0)
        p = min(1.0, 2.0 * p)
    elif how == "heterogeneity":
        p, pairs = heterogeneity_p(values, ses), len(values) * (len(values) - 1) // 2
    else:
        raise ValueError(f"gate: unknown gap_test {how!r} (one of {GAP_TESTS})")
    return {"test": how, "p_value": round(p, 6), "pairs": pairs}


def holm(checks: list[dict], family_alpha: float) -> None:
    """Holm's step-down over the gap checks carrying a `_family_test` p-value (in place): sorted
    by p, the i-th smallest (0-based) of K is rejected when p <= family_alpha / (K - i) and every
    smaller one was; a rejected "exceeds_maximum" check fails, a rejected "differs" or
    "heterogeneity" check fails only if its point gap is above its maximum; the rest pass.  The
    chance that any check fails is at most `family_alpha` when no check's null holds false (the
    groups do not differ; for "exceeds_maximum", every true gap is within its maximum): the
    gate's family-wise false-refusal rate for these checks."""
    tested = sorted(
        (c for c in checks if c.get("test") in GAP_TESTS and "p_value" in c),
        key=lambda c: (c["p_value"], c["name"]),
    )
    k = len(tested)
    rejecting = True
    for i, c in enumerate(tested):
        level = family_alpha / (k - i)
        rejecting = rejecting and c["p_value"] <= level
        c.update(holm_level=round(level, 6), holm_of=k, family_alpha=family_alpha)
        above = c["value"] is not None and c["value"] > c["threshold"]
        # "differs"/"heterogeneity" reject "no gap at all": failing also needs the point gap
        # above its maximum (a real but small gap passes)
        c["passed"] = not (rejecting and (c["test"] == "exceeds_maximum" or above))
        if above and c["passed"]:
            c["within_doubt"] = True


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
    family_alpha = fairness.get("family_alpha")
    gap_test = str(fairness.get("gap_test", "exceeds_maximum"))
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
                compared = [ses[g["group"]] for g in eligible]
                if (family_alpha is not None or alpha is not None) and None in compared:
                    check.update(passed=False, note="no standard error for the chance test")
                elif family_alpha is not None:
                    check.update(_family_test(eligible, figure, compared, float(threshold),
                                              gap_test))  # fmt: skip
                elif alpha is not None:
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
    if check.get("test") in GAP_TESTS:
        claim = (
            "beyond doubt"
            if check["test"] == "exceeds_maximum"
            else "and the groups differ beyond chance"
        )
        text += (
            f" {claim} (p = {check['p_value']:.3g} <= {check['holm_level']:.3g}, Holm over "
            f"{check['holm_of']} gap tests at {check['family_alpha']:g})"
        )
    elif "p_value" in check:
        text += f", and the groups differ beyond chance (p = {check['p_value']:.3g})"
    return text


def check(metrics: dict, fairness_audit: dict | None, gate: Gate) -> dict:
    """The gate outcome for a model's test `metrics` and fairness audit (gap checks also carry
    the oracle's gap when `metrics` holds an `oracle_fairness` audit)."""
    checks = _performance(metrics, gate.performance)
    if any(k in GAP_CHECKS for k in gate.fairness):
        gaps = gap_checks(fairness_audit or {}, gate.fairness, metrics.get("oracle_fairness"))
        if gate.fairness.get("family_alpha") is not None:
            holm(gaps, float(gate.fairness["family_alpha"]))
        checks += gaps
    failed = [c for c in checks if c["passed"] is False]
    return {
        "promoted": not failed,
        "reasons": [_reason(c) for c in failed],
        "checks": checks,
        "gate": gate.provenance(),
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
