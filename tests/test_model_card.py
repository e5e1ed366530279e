"""The model card renders from its Jinja2 templates: fast tests on a hand-written registry folder
(no pipeline run) for a promoted and a refused model, HTML escaping, the number formatting and
StrictUndefined."""

from __future__ import annotations

import json

import jinja2
import pytest

from joinedup.config import Settings
from models import card

SCRIPT = "<script>alert(1)</script>"
REASONS = ["test ROC AUC 0.61 is below the minimum 0.7", f"group {SCRIPT} | had a gap"]


def _register(settings: Settings, version: str, gate: dict | None, current: bool) -> None:
    """A registry folder as `models.registry` writes it, cut down to what the card reads."""
    folder = settings.models_dir / version
    folder.mkdir(parents=True)
    meta = {
        "version": version,
        "created_at": "2026-01-01T00:00:00+00:00",
        "model_kind": "logistic",
        "hyper_parameters": {"kind": "logistic", "C": 0.01},
        "calibration": "sigmoid",
        "features": ["a", "b", "c"],
        "reason_method": "coefficients",
        "sklearn_version": "1.9.1",
        "model_sha256": "0123456789abcdef" * 4,
        "training_window": {
            "train": ["2022-06-01", "2024-05-01"],
            "validation": ["2022-06-01", "2024-05-01"],
            "test": ["2025-05-01", "2025-10-01"],
            "embargo_months": 12,
            "validation_child_fraction": 0.3,
            "rows": {"train": 27085, "validation": 13180, "test": 11434},
            "positives": {"train": 322, "validation": 152, "test": 90},
        },
    }
    group = {"children": 900, "positives": 40, "prevalence": 0.0081, "roc_auc": 0.71}
    metrics = {
        "rows": 11434, "children": 1990, "positives": 90, "prevalence": 0.00787,
        "roc_auc": 0.7312, "roc_auc_ci": [0.69, 0.77], "capacity_per_month": 50,
        "calibration": {"tolerance": 0.02, "bins": 10, "max_abs_deviation": 0.0103,
                        "max_abs_deviation_bin": 2, "within_tolerance": True,
                        "bins_clearly_outside": []},
        "calibration_deciles": [{"bin": 0, "n": 1143, "positives": 3, "mean_predicted": 0.002,
                                 "observed_rate": 0.0026, "deviation": 0.0006,
                                 "deviation_ci": [-0.001, 0.003]}],
        "fairness": {
            "flag_rule": "top 50 scores per as-of month",
            "min_children": 50,
            "dimensions": {"ethnicity": {
                "groups": [{"group": "White", **group}, {"group": f"Other {SCRIPT}", **group}],
                "too_few_to_report": [{"group": "Mixed", "reason": "too few to report"}],
                "gaps": {"fnr": {"gap": 0.05, "gap_ci": [0.01, 0.12], "highest": "White",
                                 "lowest": f"Other {SCRIPT}"}},
            }},
        },
    }  # fmt: skip
    if gate is not None:
        metrics["gate"] = gate
    (folder / "metadata.json").write_text(json.dumps(meta))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if current:
        (settings.models_dir / "current").write_text(version + "\n")


def _gate(promoted: bool, checks: list[dict] | None = None) -> dict:
    return {
        "promoted": promoted,
        "reasons": [] if promoted else REASONS,
        "checks": checks or [],
        "gate": {
            "version": "3",
            "agreed": "2026-01-01",
            "file": "/x/gate.toml",
            "sha256": "ab" * 32,
        },
    }


@pytest.fixture
def promoted(settings: Settings) -> str:
    _register(settings, "aaaa000000000001", _gate(True), current=True)
    return "aaaa000000000001"


@pytest.fixture
def refused(settings: Settings) -> str:
    _register(settings, "bbbb000000000002", _gate(False), current=False)
    return "bbbb000000000002"


def test_promoted_card_renders_every_section(settings: Settings, promoted: str):
    md = card.markdown(settings, promoted)
    assert md.startswith(f"# Model card: children's services risk model `{promoted}`\n")
    assert f"`{promoted}`: **PROMOTED**: passed the deployment gate and is the current model" in md
    for text in ("never an automated decision", "Not for (intended non-use)", "## Model",
                 "| features | 3 |", "| train | 2022-06-01 to 2024-05-01 | 27,085 | 322 |",
                 "| ROC AUC | 0.731 | 0.690-0.770 | n/a | n/a |", "every bin is within 2 percentage",
                 "## Deployment gate", "### By ethnicity", "Too few to report (fewer than 50 "
                 "children): Mixed.", "Not measured yet", "## Limitations"):  # fmt: skip
        assert text in md, text
    assert md.endswith("retrain and re-check the gate regularly.\n")
    paths = card.write(settings, promoted)
    assert (settings.outputs_dir / "model_card.md").read_text() == md
    page = open(paths["html"]).read()
    assert "<table>" in page and f"<title>Model card {promoted}</title>" in page


def test_refused_card_says_not_promoted_and_lists_each_reason(settings: Settings, refused: str):
    md = card.markdown(settings, refused)
    assert "**NOT PROMOTED**" in md and "**no scores are published from it**" in md
    for reason in REASONS:
        assert f"\n- {reason}\n" in md  # Markdown is not escaped; the HTML is
    assert "**PROMOTED**" not in md


def test_a_model_without_a_gate_outcome_is_not_gated(settings: Settings):
    _register(settings, "cccc000000000003", gate=None, current=False)
    md = card.markdown(settings, "cccc000000000003")
    assert "**NOT GATED**" in md and "## Deployment gate\n\nNot evaluated.\n" in md


def test_gate_checks_with_chance_tests_keep_their_notes(settings: Settings):
    base = {"description": "gap in FNR", "comparison": "<=", "threshold": 0.1}
    checks = [
        {**base, "value": 0.12, "passed": True, "within_chance": True, "p_value": 0.2345,
         "alpha": 0.05, "highest": "a", "lowest": "b", "oracle_value": 0.03},
        {**base, "value": 0.04, "passed": True, "test": "differs", "p_value": 0.71,
         "holm_level": 0.0125, "holm_of": 4, "family_alpha": 0.05, "within_doubt": False},
        {**base, "value": None, "passed": False, "note": "cannot be measured",
         "groups_too_imprecise": ["x", "y"]},
        {**base, "value": 0.15, "passed": True, "test": "differs", "p_value": 0.03,
         "holm_level": 0.0167, "holm_of": 4, "family_alpha": 0.05, "within_doubt": True},
        {**base, "value": 0.25, "passed": False, "test": "differs", "p_value": 0.0001,
         "holm_level": 0.0125, "holm_of": 4, "family_alpha": 0.05},
    ]  # fmt: skip
    _register(settings, "dddd000000000004", _gate(False, checks), current=False)
    md = card.markdown(settings, "dddd000000000004")
    assert "| check | threshold | value | oracle's gap | result | note |" in md
    assert (
        "| gap in FNR | <= 0.1 | 0.1200 (a vs b) | 0.0300 | pass | above the maximum, but no more "
        "than chance produces (p = 0.234 >= 0.05): not evidence that the groups differ |"
    ) in md
    assert "| gap in FNR | <= 0.1 | 0.0400 |  | pass | test p = 0.71 (Holm level 0.0125) |" in md
    assert (
        "| gap in FNR | <= 0.1 | 0.1500 |  | pass | above the maximum, but not beyond doubt: "
        "p = 0.03 > 0.0167 (Holm over 4 gap tests at 0.05) |"
    ) in md
    assert (
        "| gap in FNR | <= 0.1 | 0.2500 |  | **FAIL** | the groups differ beyond doubt: "
        "p = 0.0001 <= 0.0125 (Holm over 4 gap tests at 0.05) |"
    ) in md
    assert "| n/a |  | **FAIL** | cannot be measured; too imprecise to compare: x, y |" in md


def test_html_escapes_markup_in_group_names_reasons_and_title(settings: Settings, refused: str):
    md = card.markdown(settings, refused)
    assert SCRIPT in md  # the Markdown template is not autoescaped
    page = card.to_html(md, f"Model card {SCRIPT}")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"<title>Model card {SCRIPT}</title>" not in page
    assert "<title>Model card &lt;script&gt;alert(1)&lt;/script&gt;</title>" in page


def test_number_formatting_filters():
    f = card.environment().filters
    assert [f["num"](x) for x in (None, True, False, 1234567, 0.12345, "x")] == [
        "n/a", "yes", "no", "1,234,567", "0.123", "x"
    ]  # fmt: skip
    assert f["num"](0.12345, 4) == "0.1235" and f["num"](2, 4) == "2"
    assert f["ci"]([0.1, 0.25]) == "0.100-0.250" and f["ci"](None) == f["ci"]([None, None]) == ""
    assert f["cell"]("a|b\nc") == "a\\|b c" and f["cell"](None) == "n/a"


def test_templates_refuse_undefined_names(settings: Settings, promoted: str):
    template = card.environment().get_template(card.MARKDOWN_TEMPLATE)
    ctx = card.context(settings, promoted)
    assert template.render(ctx) == card.markdown(settings, promoted)
    for drop in (lambda c: c.pop("linkage"), lambda c: c["metrics"].pop("roc_auc")):
        broken = card.context(settings, promoted)
        drop(broken)
        with pytest.raises(jinja2.UndefinedError):
            template.render(broken)
    with pytest.raises(jinja2.UndefinedError):
        card.environment().get_template(card.HTML_TEMPLATE).render(title="t")  # no body
