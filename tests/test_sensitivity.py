"""Sensitivity of scores to linkage (`models.sensitivity`): the real stores (the hub's warehouse
and the linkage unit's store) are never touched, the figures are consistent, and two re-links at
the same threshold agree exactly."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from joinedup.config import Settings
from linkage import link
from models import features, score, sensitivity, train
from models.gate import Gate
from tests.test_linkage import build
from warehouse import assemble
from warehouse.db import connect
from warehouse.ingest import load_reference

FAST_CANDIDATES = ({"kind": "logistic", "C": 0.01},)
K = 20


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def county(tmp_path_factory) -> Settings:
    """An 800-child synthetic county, staged, linked, featured, trained and scored."""
    s = Settings.from_env(tmp_path_factory.mktemp("sens") / "home")
    s = Settings(home=s.home, capacity_per_month=K)
    s.ensure_dirs()
    build(s, "synth")  # staged without the ingest stage: load the reference wards here
    with connect(s) as con:
        load_reference(con, s)
    link.run(s.for_unit("linkage"), run_id="first", report=False)  # hands off to the hub
    assemble.run(s)
    features.run(s)
    # a gate with no checks: this small county's model is for the plumbing, not for use
    train.run(s, candidates=FAST_CANDIDATES, n_boot=20, gate=Gate(version="test", agreed="-"))
    score.run(s)
    return s


def _check(fig: dict) -> None:
    for cmp in fig["score_comparisons"].values():
        assert cmp["per_as_of"], cmp
        for m in cmp["per_as_of"]:
            assert m["top_k_overlap"] <= min(m["top_k_a"], m["top_k_b"]) <= K
            assert m["top_k_overlap"] + m["leaving_top_k"] == m["top_k_a"]
            assert m["top_k_overlap"] + m["entering_top_k"] == m["top_k_b"]
            assert (
                m["leaving_with_records_changed"] + m["leaving_displaced_with_records_unchanged"]
                == m["leaving_top_k"]
            )
            assert m["children_matched"] <= min(m["children_scored_a"], m["children_scored_b"])
            rho = m["spearman_rank_correlation_matched"]
            assert rho is None or -1 <= rho <= 1
    for rc in fig["record_changes_between_linkages"].values():
        assert rc["records_only_in_one_linkage"] == 0  # the same staged records, relinked
        assert rc["children_with_identical_records"] <= min(rc["children_a"], rc["children_b"])


def test_two_thresholds_leave_the_real_warehouse_untouched(county: Settings):
    linkage_store = county.for_unit("linkage").warehouse_path
    before = _sha(county.warehouse_path)
    linkage_before = _sha(linkage_store)
    handoff_before = {p.name: _sha(p) for p in county.handoff_inbox.iterdir()}
    models_before = sorted(p.name for p in county.models_dir.iterdir())
    fig = sensitivity.run(county, thresholds=(0.8, 0.99))
    assert _sha(county.warehouse_path) == before
    assert _sha(linkage_store) == linkage_before  # nor the linkage unit's store
    assert {p.name: _sha(p) for p in county.handoff_inbox.iterdir()} == handoff_before
    assert sorted(p.name for p in county.models_dir.iterdir()) == models_before
    _check(fig)
    assert set(fig["score_comparisons"]) == {
        "threshold_0.99_vs_threshold_0.8",
        "published_vs_threshold_0.99",
        "published_vs_threshold_0.8",
    }
    # the looser threshold merges at least as much: never more children than the stricter one
    lk = fig["linkage_at_threshold"]
    assert lk["threshold_0.8"]["children"] <= lk["threshold_0.99"]["children"]
    # test months (labelled) + the scoring as-of; published scores only at the scoring as-of
    assert len(fig["score_comparisons"]["threshold_0.99_vs_threshold_0.8"]["per_as_of"]) == 7
    assert len(fig["score_comparisons"]["published_vs_threshold_0.8"]["per_as_of"]) == 1
    # written for the model card; figures only, no child id or token
    text = (county.outputs_dir / sensitivity.OUTPUT_FILE).read_text()
    assert json.loads(text)["k_capacity_per_month"] == K
    with connect(county, read_only=True) as con:
        rec = con.execute("SELECT child_id, record_token FROM linked.records").df()
    assert not any(v in text for v in set(rec["child_id"]) | set(rec["record_token"]))


def test_the_same_threshold_twice_gives_identical_rankings(county: Settings):
    fig = sensitivity.run(county, thresholds=(0.95, 0.95), months="scoring", write=False)
    _check(fig)
    (cmp,) = [v for k, v in fig["score_comparisons"].items() if not k.startswith("published")]
    (m,) = cmp["per_as_of"]
    assert m["top_k_overlap"] == m["top_k_a"] == K and m["top_k_overlap_share"] == 1.0
    assert m["spearman_rank_correlation_matched"] == pytest.approx(1.0)
    (rc,) = [
        v
        for k, v in fig["record_changes_between_linkages"].items()
        if not k.startswith("published")
    ]
    assert rc["children_with_identical_records"] == rc["children_a"] == rc["children_b"]


def test_compare_scores_matches_children_by_primary_record():
    # linkage a: children A (r1, r2), B (r3); linkage b merges them into X (r1, r2, r3) and
    # adds a child Y (r4) that was C (r4) in a
    rec_a = pd.DataFrame({"child_id": ["A", "A", "B", "C"], "key": ["r1", "r2", "r3", "r4"]})
    rec_b = pd.DataFrame({"child_id": ["X", "X", "X", "Y"], "key": ["r1", "r2", "r3", "r4"]})
    day = pd.Timestamp("2026-10-01")
    # D was scored but has no linked record (re-linked since): never matched, counted apart
    a = pd.DataFrame(
        {"child_id": ["A", "B", "C", "D"], "as_of": day, "score": [0.9, 0.8, 0.1, 0.99]}
    )
    b = pd.DataFrame({"child_id": ["X", "Y"], "as_of": day, "score": [0.95, 0.2]})
    out = sensitivity.compare_scores(a, b, rec_a, rec_b, k=2)
    (m,) = out["per_as_of"]
    # X is A (same primary record r1); B has no counterpart and leaves; Y enters
    assert m["children_scored_without_linked_records"] == 1 and m["children_scored_a"] == 3
    assert m["children_matched"] == 2 and m["top_k_overlap"] == 1
    assert m["leaving_top_k"] == 1 and m["leaving_with_records_changed"] == 1
    assert m["entering_top_k"] == 1 and m["entering_with_records_changed"] == 0
    rc = sensitivity.compare_records(rec_a, rec_b)
    assert rc["children_b_merging_several_children_a"] == 1
    assert rc["children_with_identical_records"] == 1  # C = Y
    assert rc["records_in_children_that_changed"] == 3
