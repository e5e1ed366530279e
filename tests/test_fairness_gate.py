"""Fairness audit, deployment gate, model card and `joinedup models`: group figures agree with a
direct sklearn computation, small groups are listed (never hidden), a model that fails the gate is
registered but never becomes current, and the registry's figures reach metrics.json, the CLI and
the card."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from joinedup import cli
from joinedup.config import Settings
from models import card, dataset, evaluation, fairness, gate, registry, train
from tests.models_fixture import county_with_features
from warehouse.db import connect

FAST = ({"kind": "logistic", "C": 0.01},)
#: checks nothing: for tests of the registry mechanics, never used by the pipeline
NO_CHECKS = gate.Gate(version="test-no-checks", agreed="n/a")
#: a gate no model on this county can pass
STRICT = gate.Gate(version="test-strict", agreed="n/a", performance={"min_roc_auc": 0.99})


@pytest.fixture(scope="module")
def county(tmp_path_factory) -> Settings:
    return county_with_features(tmp_path_factory.mktemp("fair"), children=2000, seed=5)


@pytest.fixture(scope="module")
def promoted(county: Settings) -> dict:
    return train.run(county, candidates=FAST, n_boot=30, gate=NO_CHECKS)


# ------------------------------------------------------------------ the audit itself
def _toy(n_children: int = 400, months: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    child = np.repeat(np.arange(n_children).astype(str), months)
    month = np.tile(pd.date_range("2025-01-01", periods=months, freq="MS").to_numpy(), n_children)
    p = rng.beta(1, 20, len(child))
    y = (rng.random(len(child)) < p * 2).astype(np.int8)
    grp = np.where(
        np.arange(n_children) < 30, "tiny", np.where(np.arange(n_children) % 2, "a", "b")
    )
    groups = pd.DataFrame({"g": np.repeat(grp, months)})
    return y, p, month, child, groups


def test_group_figures_match_a_direct_sklearn_computation():
    y, p, month, child, groups = _toy()
    W = evaluation.bootstrap_weights(child, 40, seed=1)
    out = fairness.audit(y, p, month, child, groups, capacity=20, weights=W)
    a = next(g for g in out["dimensions"]["g"]["groups"] if g["group"] == "a")
    m = groups["g"].to_numpy() == "a"
    flag = evaluation.top_k_flags(p, month, 20)  # flags over all children, then restricted
    ya, pa, fa = y[m], p[m], flag[m]
    assert a["children"] == len(set(child[m])) and a["rows"] == m.sum()
    assert a["positives"] == ya.sum() and a["prevalence"] == pytest.approx(ya.mean(), abs=1e-5)
    assert a["roc_auc"] == pytest.approx(roc_auc_score(ya, pa), abs=1e-5)
    assert a["average_precision"] == pytest.approx(average_precision_score(ya, pa), abs=1e-5)
    assert a["brier"] == pytest.approx(brier_score_loss(ya, pa), abs=1e-6)
    assert a["flag_rate"] == pytest.approx(fa.mean(), abs=1e-5)
    assert a["tpr"] == pytest.approx(fa[ya == 1].mean(), abs=1e-5)
    assert a["fnr"] == pytest.approx(1 - fa[ya == 1].mean(), abs=1e-5)
    assert a["fpr"] == pytest.approx(fa[ya == 0].mean(), abs=1e-5)
    assert a["precision_flagged"] == pytest.approx(ya[fa].mean(), abs=1e-5)
    assert a["calibration_difference"] == pytest.approx(ya.mean() - pa.mean(), abs=1e-5)
    lo, hi = a["roc_auc_ci"]
    assert lo <= a["roc_auc"] <= hi
    gap = out["dimensions"]["g"]["gaps"]["fnr"]
    b = next(g for g in out["dimensions"]["g"]["groups"] if g["group"] == "b")
    assert gap["gap"] == pytest.approx(abs(a["fnr"] - b["fnr"]), abs=1e-5)
    assert {gap["highest"], gap["lowest"]} == {"a", "b"}


def test_small_groups_are_listed_not_hidden():
    y, p, month, child, groups = _toy()
    W = evaluation.bootstrap_weights(child, 20, seed=1)
    out = fairness.audit(y, p, month, child, groups, capacity=20, weights=W)
    dim = out["dimensions"]["g"]
    assert [g["group"] for g in dim["too_few_to_report"]] == ["tiny"]  # 30 children < 50
    assert dim["too_few_to_report"][0]["reason"] == "too few to report"
    assert "roc_auc" not in dim["too_few_to_report"][0]  # no figures for it, and no count
    assert sorted(g["group"] for g in dim["groups"]) == ["a", "b"]
    assert all(v["groups_compared"] <= 2 for v in dim["gaps"].values())


def test_audit_of_the_trained_model_covers_every_group(county: Settings, promoted: dict):
    metrics = registry.read_metrics(county, promoted["version"])
    fair = metrics["fairness"]
    assert set(fair["dimensions"]) == {"sex", "ethnicity", "deprivation"}
    with connect(county) as con:
        rows = con.execute(
            "SELECT child_id, sex_female, sex_unknown, imd_decile FROM features.child_month "
            "WHERE as_of >= DATE '2025-05-01' AND label IS NOT NULL"
        ).df()
        labels = fairness.group_labels(con, rows)
    for dim, d in fair["dimensions"].items():
        shown = {g["group"] for g in d["groups"]} | {g["group"] for g in d["too_few_to_report"]}
        assert shown == set(labels[dim])  # every group present is reported or listed
        assert all(g["children"] >= 50 for g in d["groups"])
        assert sum(g["rows"] for g in d["groups"]) <= metrics["rows"]
    # the model's own test rows: one group's figures equal sklearn on those rows
    bundle, _ = registry.load_current(county)
    with connect(county) as con:
        df = dataset.load_features(con)
    test = df[df["as_of"] >= pd.Timestamp("2025-05-01")].reset_index(drop=True)
    p = bundle["model"].predict_proba(test[bundle["features"]].to_numpy(np.float64))[:, 1]
    with connect(county) as con:
        g = fairness.group_labels(con, test)
    female = next(x for x in fair["dimensions"]["sex"]["groups"] if x["group"] == "female")
    m = (g["sex"] == "female").to_numpy()
    assert female["rows"] == m.sum()
    assert female["roc_auc"] == pytest.approx(roc_auc_score(test["label"][m], p[m]), abs=1e-4)
    assert female["brier"] == pytest.approx(brier_score_loss(test["label"][m], p[m]), abs=1e-5)


# ------------------------------------------------------------------ the gate
def test_committed_gate_is_pre_registered_and_strict_about_its_keys(tmp_path):
    g = gate.load()
    assert g.version and g.agreed and len(g.sha256) == 64
    assert g.performance["min_roc_auc"] >= 0.7 and "max_fnr_excess_gap" in g.fairness
    assert g.fairness["family_alpha"] == 0.05 and g.fairness["gap_test"] in gate.GAP_TESTS
    bad = tmp_path / "gate.toml"
    bad.write_text('version = 1\nagreed = "x"\n[performance]\nmin_roc_acu = 0.7\n')
    with pytest.raises(ValueError, match="unknown setting"):
        gate.load(bad)


def test_gate_checks_pass_fail_and_not_applicable():
    g = gate.Gate(
        version="t",
        agreed="t",
        performance={"min_roc_auc": 0.7, "max_ece": 0.01, "min_auc_ratio_to_oracle": 0.8},
        fairness={"min_positives": 20, "max_fnr_gap": 0.1, "dimensions": ["sex", "ethnicity"]},
    )
    fair = {
        "dimensions": {
            "sex": {"groups": [{"group": "f", "positives": 30, "fnr": 0.9},
                               {"group": "m", "positives": 25, "fnr": 0.95}]},
            "ethnicity": {"groups": [{"group": "x", "positives": 50, "fnr": 0.9},
                                     {"group": "y", "positives": 5, "fnr": 0.1}]},
        }
    }  # fmt: skip
    out = gate.check({"roc_auc": 0.75, "ece": 0.02}, fair, g)
    by = {c["name"]: c for c in out["checks"]}
    assert by["min_roc_auc"]["passed"] is True
    assert by["max_ece"]["passed"] is False and by["max_ece"]["value"] == 0.02
    assert by["min_auc_ratio_to_oracle"]["passed"] is None  # no oracle: not applicable
    assert by["max_fnr_gap:sex"]["passed"] is True and by["max_fnr_gap:sex"]["value"] == 0.05
    # one ethnicity group has too few positives to judge: the gap cannot be measured -> fails
    assert by["max_fnr_gap:ethnicity"]["passed"] is False
    assert by["max_fnr_gap:ethnicity"]["groups_compared"] == ["x"]
    assert out["promoted"] is False and len(out["reasons"]) == 2
    assert any("expected calibration error" in r for r in out["reasons"])
    assert all("oracle_value" not in c for c in out["checks"])  # no oracle audit given

    # with the oracle's audit of the same rows: its gap over the SAME groups is carried for
    # reading, and never changes a result
    oracle = {
        "dimensions": {
            "sex": {"groups": [{"group": "f", "positives": 31, "fnr": 0.8},
                               {"group": "m", "positives": 24, "fnr": 0.83},
                               {"group": "u", "positives": 40, "fnr": 0.1}]},
            "ethnicity": {"groups": [{"group": "x", "positives": 50, "fnr": 0.9}]},
        }
    }  # fmt: skip
    with_oracle = gate.check({"roc_auc": 0.75, "ece": 0.02, "oracle_fairness": oracle}, fair, g)
    by_o = {c["name"]: c for c in with_oracle["checks"]}
    assert by_o["max_fnr_gap:sex"]["oracle_value"] == pytest.approx(0.03)  # f, m only
    assert "oracle_value" not in by_o["max_fnr_gap:ethnicity"]  # one group: no gap
    assert [c["passed"] for c in with_oracle["checks"]] == [c["passed"] for c in out["checks"]]


def _grp(name: str, value: float, se: float, positives: int = 40) -> dict:
    half = 1.959964 * se
    return {"group": name, "positives": positives, "calibration_difference": value,
            "calibration_difference_ci": [value - half, value + half]}  # fmt: skip


def test_gate_v2_judges_a_gap_against_chance_and_precision():
    from scipy.stats import chi2

    assert gate.heterogeneity_p([0.0, 0.01], [0.0025, 0.0025]) == pytest.approx(chi2.sf(8.0, 1))
    v2 = gate.Gate(
        version="t2",
        agreed="t",
        fairness={"min_positives": 20, "max_calibration_gap": 0.005, "dimensions": ["ethnicity"],
                  "chance_test_alpha": 0.05, "max_standard_error_share": 1.0},
    )  # fmt: skip

    def run(groups: list[dict]) -> dict:
        audit = {"dimensions": {"ethnicity": {"groups": groups}}}
        return gate.check({}, audit, v2)["checks"][0]

    # a 0.007 gap between two groups each measured to +-0.0035 (se): within chance -> passes
    noisy = run([_grp("a", 0.003, 0.0035), _grp("b", -0.004, 0.0035)])
    assert noisy["value"] == pytest.approx(0.007) and noisy["passed"] is True
    assert noisy["within_chance"] is True and noisy["p_value"] > 0.05
    # the same gap measured to +-0.001: beyond chance -> fails, and the reason says so
    precise = run([_grp("a", 0.003, 0.001), _grp("b", -0.004, 0.001)])
    assert precise["passed"] is False and precise["p_value"] < 0.001
    out = gate.check({}, {"dimensions": {"ethnicity": {"groups": [
        _grp("a", 0.003, 0.001), _grp("b", -0.004, 0.001)]}}}, v2)  # fmt: skip
    assert "beyond chance" in out["reasons"][0] and out["promoted"] is False
    # a gap within the maximum passes whatever the test says
    small = run([_grp("a", 0.002, 0.0001), _grp("b", -0.002, 0.0001)])
    assert small["passed"] is True and "within_chance" not in small
    # a group measured more loosely than the maximum is named and left out; one group left
    # means the gap cannot be measured -> fails (fairness that cannot be shown is not assumed)
    loose = run([_grp("a", 0.0, 0.001), _grp("b", 0.03, 0.006)])
    assert loose["groups_too_imprecise"] == ["b"] and loose["groups_compared"] == ["a"]
    assert loose["passed"] is False and "cannot be measured" in loose["note"]
    # version 1 (no chance test): the noisy gap fails on its point estimate
    v1 = gate.Gate(version="t1", agreed="t",
                   fairness={"min_positives": 20, "max_calibration_gap": 0.005})  # fmt: skip
    audit = {"dimensions": {"ethnicity": {"groups": [_grp("a", 0.003, 0.0035),
                                                     _grp("b", -0.004, 0.0035)]}}}  # fmt: skip
    assert gate.check({}, audit, v1)["promoted"] is False


def test_pairwise_tests_and_holm_step_down():
    from scipy.stats import norm

    se = [0.001, 0.001]
    # "exceeds its maximum": one-sided at the boundary, Bonferroni over the pairs
    p, pairs = gate.exceeds_maximum_p([0.0, 0.008], se, 0.005)
    assert pairs == 1 and p == pytest.approx(norm.sf(0.003 / np.sqrt(2e-6)))
    p3, pairs3 = gate.exceeds_maximum_p([0.0, 0.008, 0.001], se + [0.001], 0.005)
    assert pairs3 == 3 and p3 == pytest.approx(3 * p)
    checks = [
        {"name": n, "test": "differs", "p_value": pv, "value": v, "threshold": 0.005}
        for n, pv, v in [("a", 0.001, 0.01), ("b", 0.02, 0.01), ("c", 0.02, 0.003),
                         ("d", 0.5, 0.02)]
    ]  # fmt: skip
    gate.holm(checks, 0.05)
    by = {c["name"]: c for c in checks}
    # a: 0.001 <= 0.05/4 rejected; b: 0.02 <= 0.05/3 no -> b and everything after pass
    assert by["a"]["passed"] is False and by["a"]["holm_level"] == pytest.approx(0.0125)
    assert by["b"]["passed"] is True and by["b"]["within_doubt"] is True
    assert by["c"]["passed"] is True and "within_doubt" not in by["c"]  # gap within the max
    assert by["d"]["passed"] is True
    # step-down: with b's p at 0.016 both a and b are rejected, and c's small gap still passes
    checks[1]["p_value"], checks[2]["p_value"] = 0.016, 0.024
    gate.holm(checks, 0.05)
    assert [c["passed"] for c in checks] == [False, False, True, True]


def test_gate_v3_controls_the_whole_gate_and_reasons_name_the_test():
    v3 = gate.Gate(version="t3", agreed="t", fairness={
        "min_positives": 20, "max_calibration_gap": 0.005, "dimensions": ["sex", "ethnicity"],
        "family_alpha": 0.05, "gap_test": "differs", "max_standard_error_share": 1.0})  # fmt: skip

    def audit(sex: list[dict], eth: list[dict]) -> dict:
        return {"dimensions": {"sex": {"groups": sex}, "ethnicity": {"groups": eth}}}

    fair_sex = [_grp("f", 0.0, 0.001), _grp("m", 0.001, 0.001)]
    # a 0.012 gap measured to +-0.001 per group: beyond doubt after Holm -> fails, said so
    out = gate.check({}, audit(fair_sex, [_grp("a", 0.004, 0.001), _grp("b", -0.008, 0.001)]), v3)
    eth = next(c for c in out["checks"] if c["dimension"] == "ethnicity")
    assert eth["passed"] is False and eth["holm_of"] == 2 and eth["test"] == "differs"
    assert out["promoted"] is False and "Holm over 2 gap tests" in out["reasons"][0]
    # a 0.007 gap from groups measured to +-0.0025: above the maximum but not beyond doubt
    out = gate.check({}, audit(fair_sex, [_grp("a", 0.003, 0.0025), _grp("b", -0.004, 0.0025)]),
                     v3)  # fmt: skip
    eth = next(c for c in out["checks"] if c["dimension"] == "ethnicity")
    assert out["promoted"] is True and eth["within_doubt"] is True
    with pytest.raises(ValueError, match="unknown gap_test"):
        gate.check({}, audit(fair_sex, fair_sex), gate.Gate(version="x", agreed="x", fairness={
            **v3.fairness, "gap_test": "vibes"}))  # fmt: skip


def test_fnr_excess_is_zero_for_calibrated_scores_whatever_the_base_rate():
    """Two groups with base rates 4x apart, scored by their TRUE probabilities: the raw FNR at
    a fixed capacity differs widely (the low-risk group is rarely flagged), but each group's FNR
    matches what the scores imply, so the excess gap -- what gate v3 judges -- is within noise."""
    rng = np.random.default_rng(7)
    n_children, months = 6000, 3
    high = np.arange(n_children) % 2 == 0
    risk = np.where(high, rng.beta(2, 30, n_children), rng.beta(2, 120, n_children))
    child = np.repeat(np.arange(n_children).astype(str), months)
    p = np.repeat(risk, months)
    y = (rng.random(len(p)) < p).astype(np.int8)
    month = np.tile(pd.date_range("2025-01-01", periods=months, freq="MS").to_numpy(), n_children)
    groups = pd.DataFrame({"g": np.where(np.repeat(high, months), "high", "low")})
    W = evaluation.bootstrap_weights(child, 100, seed=3)
    out = fairness.audit(y, p, month, child, groups, capacity=300, weights=W)
    by = {g["group"]: g for g in out["dimensions"]["g"]["groups"]}
    gaps = out["dimensions"]["g"]["gaps"]
    assert gaps["fnr"]["gap"] > 0.15  # raw miss rates differ: base rates, not unfairness
    assert abs(gaps["fnr_excess"]["gap"]) < 0.06
    for g in by.values():
        lo, hi = g["fnr_excess_ci"]
        assert lo <= 0 <= hi  # each group's excess is consistent with zero
        flagged = evaluation.top_k_flags(p, month, 300)[groups["g"].to_numpy() == g["group"]]
        pg = p[groups["g"].to_numpy() == g["group"]]
        assert g["expected_fnr"] == pytest.approx(pg[~flagged].sum() / pg.sum(), abs=1e-5)


def test_failing_model_is_registered_not_promoted_and_previous_stays_current(
    county: Settings, promoted: dict, tmp_path
):
    assert promoted["promoted"] is True
    assert registry.current_version(county) == promoted["version"]
    failed = train.run(county, candidates=FAST, n_boot=31, gate=STRICT)
    assert failed["version"] != promoted["version"] and failed["promoted"] is False
    assert (county.models_dir / failed["version"] / registry.MODEL_FILE).exists()  # registered
    assert registry.current_version(county) == promoted["version"]  # previous one kept
    assert failed["current_version"] == promoted["version"]
    assert any(
        "test ROC AUC" in r and "below the minimum 0.99" in r for r in failed["gate_reasons"]
    )
    with pytest.raises(RuntimeError, match="did not pass the deployment gate"):
        registry.load_current(county, failed["version"])
    assert registry.load_current(county)[1]["version"] == promoted["version"]
    risk = json.loads((county.outputs_dir / "risk_model_metrics.json").read_text())
    assert risk["version"] == failed["version"] and risk["is_current"] is False

    # a home where no model ever passed: no current model at all, and the reason says why
    other = Settings.from_env(tmp_path / "none")
    other.warehouse_path.parent.mkdir(parents=True)
    shutil.copy(county.warehouse_path, other.warehouse_path)
    lone = train.run(other, candidates=FAST, n_boot=30, gate=STRICT)
    assert lone["promoted"] is False and registry.current_version(other) is None
    with pytest.raises(registry.NoPromotedModelError, match="below the minimum 0.99"):
        registry.load_current(other)


def test_metrics_json_has_gate_and_fairness(county: Settings, promoted: dict):
    metrics = registry.read_metrics(county, promoted["version"])
    g = metrics["gate"]
    assert g["promoted"] is True and g["gate"]["version"] == NO_CHECKS.version
    assert {"roc_auc", "roc_auc_ci", "ece", "precision_at_capacity"} <= set(metrics)
    for dim in metrics["fairness"]["dimensions"].values():
        for grp in dim["groups"]:
            assert {"prevalence", "roc_auc", "ece", "flag_rate", "tpr", "fpr", "fnr",
                    "precision_flagged", "flag_to_prevalence", "children"} <= set(grp)  # fmt: skip
        assert {"fnr", "calibration_difference", "flag_to_prevalence"} <= set(dim["gaps"])
    # the synthetic county has an oracle: the same audit of its true probabilities is kept
    orc = metrics["oracle_fairness"]
    assert orc["rows"] <= metrics["rows"] and set(orc["dimensions"]) == set(
        metrics["fairness"]["dimensions"]
    )
    for dim in orc["dimensions"].values():
        assert all("calibration_deciles" not in grp for grp in dim["groups"])
    assert metrics["calibration"]["bins"] == len(metrics["calibration_deciles"])
    # re-gating on retraining with the same data under another gate: new outcome, history kept
    again = train.run(county, candidates=FAST, n_boot=30, gate=STRICT)
    assert again["reused"] is True and again["promoted"] is False
    regated = registry.read_metrics(county, promoted["version"])
    assert regated["gate"]["gate"]["version"] == "test-strict"
    assert regated["gate_history"][-1]["gate"]["version"] == NO_CHECKS.version
    # ... and back: promoted again, current again
    back = train.run(county, candidates=FAST, n_boot=30, gate=NO_CHECKS)
    assert back["promoted"] is True and registry.current_version(county) == promoted["version"]


# ------------------------------------------------------------------ CLI and card
def test_models_show_json_prints_the_current_models_metrics(
    county: Settings, promoted: dict, capsys
):
    train.run(county, candidates=FAST, n_boot=30, gate=NO_CHECKS)  # current = promoted
    capsys.readouterr()
    assert cli.main(["--home", str(county.home), "models", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    metrics = registry.read_metrics(county, promoted["version"])
    assert shown["version"] == promoted["version"] and shown["is_current"] is True
    assert {k: shown[k] for k in metrics} == metrics
    assert cli.main(["--home", str(county.home), "models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    rows = {r["version"]: r for r in listed["models"]}
    assert listed["current"] == promoted["version"] and rows[promoted["version"]]["current"]
    assert any(r["promoted"] is False and r["gate_reasons"] for r in rows.values())


def test_model_card_states_use_non_use_gate_fairness_and_linkage(county: Settings, promoted: dict):
    v = promoted["version"]
    paths = card.write(county, v)
    md = (county.models_dir / v / "model_card.md").read_text()
    assert (county.outputs_dir / "model_card.md").read_text() == md
    for text in ("never an automated decision", "Not for (intended non-use)", "## Fairness",
                 "## Deployment gate", "By ethnicity", "Too few to report",
                 "Linkage errors", "Not measured yet", "## Limitations"):  # fmt: skip
        assert text in md, text
    html = open(paths["html"]).read()
    assert "<table>" in html and "intended non-use" in html
    # once the sensitivity figures exist, the card reads them
    sens = {
        "model_version": v,
        "linkage_at_threshold": {"threshold_0.99": {"threshold": 0.99, "children": 1990}},
        "score_comparisons": {"a_vs_b": {"top_k_overlap_mean_share": 0.876}},
    }
    (county.outputs_dir / card.SENSITIVITY_FILE).write_text(json.dumps(sens))
    try:
        md = card.markdown(county, v)
    finally:
        (county.outputs_dir / card.SENSITIVITY_FILE).unlink()
    assert "Not measured yet" not in md and "0.876" in md and "1,990" in md
