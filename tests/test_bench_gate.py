"""The gate benchmark's truth-level test period (bench/bench_gate.py): the rows are the last six
labelled as-of months, labels agree with the simulated outcomes, and shifting one group's
probabilities by a percentage point moves that group's calibration in the large by it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench_gate  # noqa: E402

from joinedup.config import Settings  # noqa: E402
from models import gate as gates  # noqa: E402
from models.evaluation import bootstrap_weights  # noqa: E402
from synth import process as pr  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    return bench_gate.test_rows(3000, 11, Settings.from_env("/tmp/unused").extract_date)


def test_truth_rows_cover_the_test_months_with_labels_and_groups(rows):
    assert rows["t"].nunique() == bench_gate.TEST_MONTHS
    n = pr.n_months(Settings.from_env("/tmp/unused").extract_date)
    assert rows["t"].max() == n - pr.HORIZON  # the last as-of month with a whole label window
    assert 0 < rows["y"].mean() < 0.1 and rows["y"].isin([0, 1]).all()
    assert set(rows["sex"]) <= {"male", "female"}
    assert not rows[["sex", "ethnicity", "deprivation"]].isna().any().any()
    # the oracle's probabilities are calibrated overall: mean p within noise of the label rate
    assert abs(rows["p_true"].mean() - rows["y"].mean()) < 0.01


def test_a_one_point_shift_moves_the_groups_calibration_by_one_point(rows):
    settings = Settings.from_env("/tmp/unused")
    W = bootstrap_weights(rows["child"].to_numpy(), 20, 1)
    p = rows["p_true"].to_numpy(np.float64)
    g = gates.Gate(version="t", agreed="t")
    _, truth = bench_gate.judge(rows, p, W, settings, [g])
    sel = (rows["sex"] == "female").to_numpy()
    _, shifted = bench_gate.judge(rows, np.where(sel, p + 0.01, p), W, settings, [g])

    def cal(m: dict) -> float:
        groups = m["fairness"]["dimensions"]["sex"]["groups"]
        return next(x for x in groups if x["group"] == "female")["calibration_difference"]

    assert cal(truth) - cal(shifted) == pytest.approx(0.01, abs=1e-4)
