"""Tests for synth/observable_oracle.py on a small synthetic county: probabilities in [0, 1], the
same rows as the latent oracle, unbiased on average, and an AUC between a no-history baseline's
and the latent oracle's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from synth import events as ev_mod
from synth import names as nm
from synth import process as pr
from synth.county import make_county
from synth.observable_oracle import observable_probability

EXTRACT = "2026-10-01"


@pytest.fixture(scope="module")
def small():
    """A 1,000-child county, the latent oracle, the observable oracle (household filter) and a
    baseline (the same filter given no events: only deprivation, age and sex), with labels."""
    rng = np.random.default_rng(3)
    county = make_county(rng, 1000, EXTRACT, nm.load_names())
    cm = ev_mod.child_months(county)
    last = np.datetime64(EXTRACT) - np.timedelta64(1, "D")
    outcomes = ev_mod.make_outcomes(rng, county, cm, last)
    events = ev_mod.make_events(rng, county, cm, outcomes, EXTRACT)
    orc = ev_mod.make_oracle(county)
    obs = observable_probability(county, events, household=True)
    base = observable_probability(county, events.iloc[:0], household=False)
    df = orc.merge(obs, on=["child", "t"]).merge(
        base.rename(columns={"p_obs": "p_base"}), on=["child", "t"]
    )
    T = county.months
    t_out = (outcomes.date.to_numpy().astype("datetime64[M]") - pr.HISTORY_START).astype(int)
    hit = np.zeros((T + 12, len(county.children)), dtype=np.int64)
    np.add.at(hit, (t_out, outcomes.child.to_numpy()), 1)
    cum = np.vstack([np.zeros((1, hit.shape[1]), dtype=np.int64), np.cumsum(hit, axis=0)])
    df["y"] = cum[df.t + 12, df.child] - cum[df.t, df.child] > 0
    labelled = df[df.t <= T - 12]
    return orc, obs, labelled


def test_rows_and_range(small):
    orc, obs, _ = small
    assert len(obs) == len(orc)
    key = ["child", "t"]
    assert obs[key].sort_values(key).to_numpy().tolist() == (
        orc[key].sort_values(key).to_numpy().tolist()
    )
    p = obs.p_obs.to_numpy()
    assert np.isfinite(p).all()
    assert ((p >= 0) & (p <= 1)).all()


def test_unbiased_on_average(small):
    """E[p_true | observations] = p_obs, so both average to the same rate; a coarse grid or a
    wrong emission would shift it."""
    _, _, df = small
    assert df.p_obs.mean() == pytest.approx(df.p_true.mean(), rel=0.05)


def test_auc_between_baseline_and_latent_oracle(small):
    _, _, df = small
    y = df.y.to_numpy()
    auc = {c: roc_auc_score(y, df[c]) for c in ("p_base", "p_obs", "p_true")}
    assert auc["p_base"] + 0.02 < auc["p_obs"] < auc["p_true"], auc


def test_more_history_sharpens_the_posterior(small):
    """Later months carry more history: the spread of p_obs / p_true grows toward p_true's."""
    _, _, df = small
    early = df[df.t < 6]
    late = df[(df.t > 60) & (df.t <= 66)]

    def corr(d: pd.DataFrame) -> float:
        return float(np.corrcoef(d.p_obs, d.p_true)[0, 1])

    assert corr(late) > corr(early)
