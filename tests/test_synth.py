"""Tests of the synthetic county (synth/): file contract, truth, twins, messy identifiers, entry
errors, determinism, and the oracle against a Monte-Carlo simulation of the same process."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pytest

from joinedup import contract
from joinedup.config import Settings
from synth import generate
from synth import names as nm
from synth import placements as pl
from synth import process as pr
from synth.county import nhs_valid

N = 2000


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    settings = Settings.from_env(tmp_path_factory.mktemp("synth"))
    figures = generate.run(settings, children=N, seed=7)
    return settings, figures


def _raw(settings: Settings, agency: str, kind: str) -> pd.DataFrame:
    path = settings.agency_dir / contract.file_name(agency, kind)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _truth(settings: Settings, name: str) -> pd.DataFrame:
    return pd.read_parquet(settings.truth_dir / f"{name}.parquet")


def _digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_figures(county):
    _, fig = county
    assert fig["children"] == N
    assert set(fig["records"]) == set(contract.AGENCIES) == set(fig["events"])
    assert fig["records"]["health"] >= N
    assert fig["twin_pairs"] > 0
    assert 0.004 < fig["mean_oracle_p"] < 0.03


def test_headers_and_extract_date(county):
    settings, _ = county
    for agency in contract.AGENCIES:
        for kind in contract.RAW_KINDS:  # the agency-side (raw) extracts
            path = settings.agency_dir / contract.file_name(agency, kind)
            header = path.read_text(encoding="utf-8").split("\n", 1)[0]
            assert tuple(header.split(",")) == contract.columns_for(kind, raw=True)
            df = _raw(settings, agency, kind)
            assert (df.extract_date == settings.extract_date).all()
        people = _raw(settings, agency, "people")
        assert people.source_id.is_unique
        assert people.source_id.str.fullmatch(agency[0].upper() + r"\d{7}").all()
        assert set(people.sex) <= set(contract.SEXES)
        assert set(people.ethnicity) <= set(contract.ETHNICITIES)
        dob = pd.to_datetime(people.dob[people.dob != ""], format="%Y-%m-%d", errors="coerce")
        assert dob.notna().all() and (dob < pd.Timestamp(settings.extract_date)).all()
        assert _raw(settings, agency, "events").event_id.is_unique


def test_every_person_row_in_truth(county):
    settings, _ = county
    children = _truth(settings, "children")
    assert len(children) == N and children.person_id.is_unique
    for agency in contract.AGENCIES:
        people = _raw(settings, agency, "people")
        truth = _truth(settings, f"people_{agency}")
        assert truth.row_number.dtype == np.int64
        assert list(truth.row_number) == list(range(1, len(people) + 1))
        assert truth.person_id.isin(children.person_id).all()
        assert (truth.source_id.to_numpy() == people.source_id.to_numpy()).all()
    health = _truth(settings, "people_health")
    assert set(health.person_id) == set(children.person_id)  # health has every child


def test_duplicates_exist(county):
    settings, _ = county
    for agency in contract.AGENCIES:
        truth = _truth(settings, f"people_{agency}")
        dups = truth.person_id.duplicated().sum()
        assert dups == truth.is_duplicate.sum()
        if agency in ("health", "education"):
            assert dups > 0


def test_twins(county):
    settings, fig = county
    c = _truth(settings, "children")
    twins = c[c.twin_of.notna()].merge(c, left_on="twin_of", right_on="person_id")
    assert len(twins) == 2 * fig["twin_pairs"] > 0
    assert (twins.dob_x == twins.dob_y).all()
    assert (twins.surname_x == twins.surname_y).all()
    assert (twins.household_id_x == twins.household_id_y).all()
    assert (twins.first_name_x != twins.first_name_y).all()
    assert (twins.twin_of_y == twins.person_id_x).all()


def test_children_ages_and_areas(county):
    settings, _ = county
    c = _truth(settings, "children")
    dob = pd.to_datetime(c.dob)
    assert dob.min() >= pd.Timestamp("2008-10-02") and dob.max() <= pd.Timestamp("2026-09-30")
    areas = pd.read_csv(settings.reference_dir / "areas.csv", dtype={"imd_decile": int})
    assert list(areas.columns) == ["postcode_sector", "ward_code", "ward_name", "imd_decile"]
    assert areas.postcode_sector.is_unique
    assert areas.groupby("ward_code").ward_name.nunique().eq(1).all()
    assert areas.ward_code.nunique() >= 8
    assert areas.groupby("ward_code").size().min() >= 2
    assert areas.imd_decile.between(1, 10).all() and areas.imd_decile.nunique() >= 5
    assert areas.postcode_sector.str.fullmatch(r"[A-Z]{2}\d{1,2} \d").all()
    pc = c.postcode.str.fullmatch(r"[A-Z]{2}\d{1,2} \d[A-Z]{2}")
    assert pc.all()
    assert c.postcode.str[:-2].isin(areas.postcode_sector).all()
    ward = c.postcode.str[:-2].map(areas.set_index("postcode_sector").ward_code)
    assert (ward == c.ward_code).all()
    for agency in contract.AGENCIES:
        pcs = _raw(settings, agency, "people").postcode
        assert pcs[pcs != ""].str[:-2].isin(areas.postcode_sector).all()


def test_ward_name_words_are_not_names(county):
    settings, _ = county
    areas = pd.read_csv(settings.reference_dir / "areas.csv")
    bad = nm.all_name_words()
    for name in areas.ward_name.unique():
        for word in re.split(r"[\s-]+", name):
            assert word.lower() not in bad, name
    # and the whole pool, for any county size
    many = nm.ward_names(150, np.random.default_rng(0))
    assert len(set(many)) == 150
    assert not {w.lower() for n in many for w in n.split()} & bad


def test_strong_identifiers(county):
    settings, _ = county
    c = _truth(settings, "children")
    assert nhs_valid(c.nhs_number.to_numpy()).all() and c.nhs_number.is_unique
    upn = c.upn.dropna()
    assert upn.str.fullmatch(r"[A-Z]\d{12}").all() and upn.is_unique
    rates = {}
    for agency in contract.AGENCIES:
        p = _raw(settings, agency, "people")
        rates[agency] = (p.nhs_number != "").mean(), (p.upn != "").mean()
        assert p.nhs_number[p.nhs_number != ""].str.fullmatch(r"\d{10}").all()
    assert rates["health"][0] > 0.97 and rates["police"][0] < 0.25
    assert rates["education"][1] > 0.99 and rates["health"][1] == 0
    h = _raw(settings, "health", "people")
    assert nhs_valid(h.nhs_number[h.nhs_number != ""].to_numpy()).mean() > 0.98


def _bad_rows(settings: Settings, agency: str) -> pd.DataFrame:
    ev = _raw(settings, agency, "events")
    ev["row_number"] = np.arange(1, len(ev) + 1)
    date = pd.to_datetime(ev.event_date, format="%Y-%m-%d", errors="coerce")
    bad_date = date.isna() | (date >= pd.Timestamp(settings.extract_date))
    bad_type = ~ev.event_type.isin(contract.EVENT_TYPES[agency])
    val = pd.to_numeric(ev.value.where(ev.value != ""), errors="coerce")
    bad_value = (ev.event_type == "attendance") & ~val.between(0, 100)
    bad_value |= (ev.event_type == "placement_start") & ~val.isin(list(contract.PLACEMENT_KINDS))
    ev["bad"] = bad_date | bad_type | bad_value
    return ev


def test_event_types_and_entry_errors(county):
    settings, fig = county
    errors = _truth(settings, "entry_errors")
    assert list(errors.columns)[:5] == ["agency", "kind", "row_number", "column", "error"]
    assert len(errors) == fig["entry_errors"]
    assert set(errors.error) <= set(generate.ENTRY_ERROR_KINDS)
    for agency in contract.AGENCIES:
        ev = _bad_rows(settings, agency)
        listed = errors[errors.agency == agency]
        assert set(ev.row_number[ev.bad]) == set(listed.row_number)  # every bad row listed
        for row in listed.itertuples():
            assert ev.at[row.row_number - 1, row.column] == row.bad_value
        good = ev[~ev.bad]
        assert set(good.event_type) <= set(contract.EVENT_TYPES[agency])
        valued = good.event_type.isin(contract.VALUED_EVENT_TYPES)
        assert (good.value[valued] != "").all() and (good.value[~valued] == "").all()
        people = _raw(settings, agency, "people")
        assert ev.source_id.isin(people.source_id).all()


def test_entry_errors_injected_at_rate():
    rng = np.random.default_rng(0)
    n = 200_000
    ev = pd.DataFrame(
        {
            "event_date": "2020-01-01",
            "event_type": np.where(np.arange(n) % 2, "attendance", "suspension"),
            "value": np.where(np.arange(n) % 2, "95.0", ""),
        }
    )
    errs = generate.inject_entry_errors(rng, "education", ev, "2026-10-01")
    assert 15 < len(errs) < 70
    assert len({e["row_number"] for e in errs}) == len(errs)


def test_outcomes_are_csc_events(county):
    settings, fig = county
    out = _truth(settings, "outcomes")
    assert set(out.type) <= set(contract.OUTCOME_EVENT_TYPES)
    assert len(out) == fig["outcomes"] > 0
    ev = _raw(settings, "csc", "events")
    ev = ev[ev.event_type.isin(contract.OUTCOME_EVENT_TYPES)]
    people = _raw(settings, "csc", "people")
    truth = _truth(settings, "people_csc")
    pid = ev.source_id.map(dict(zip(people.source_id, truth.person_id, strict=True)))
    got = sorted(zip(pid, ev.event_date, ev.event_type, strict=True))
    want = sorted(zip(out.person_id, out.date.astype(str), out.type, strict=True))
    assert got == want
    share_cp = (out.type == "cp_plan_start").mean()
    assert 0.55 < share_cp < 0.85


def test_oracle_shape(county):
    settings, _ = county
    o = _truth(settings, "oracle")
    c = _truth(settings, "children")
    assert list(o.columns) == ["person_id", "month", "p_true", "p_observable", "state"]
    assert o.p_true.dtype == np.float32 and o.state.dtype == np.int8
    assert o.p_true.between(0, 1).all()
    # the observable oracle: a posterior of the same risk given the child's own record, so it
    # covers every row, follows p_true, and has its mean (the tower property)
    assert o.p_observable.dtype == np.float32 and o.p_observable.between(0, 1).all()
    assert np.corrcoef(o.p_true, o.p_observable)[0, 1] > 0.3
    assert abs(o.p_observable.mean() / o.p_true.mean() - 1) < 0.1
    assert not o.duplicated(["person_id", "month"]).any()
    months = pd.to_datetime(o.month)
    assert months.min() == pd.Timestamp("2019-01-01")
    assert months.max() == pd.Timestamp("2026-09-01")
    assert (months.dt.day == 1).all()
    # every child from its birth month (or 2019-01) to 2026-09
    dob = pd.to_datetime(c.set_index("person_id").dob)
    first = dob.dt.to_period("M").clip(lower=pd.Period("2019-01", "M"))
    expect = (pd.Period("2026-09", "M") - first).map(lambda x: x.n) + 1
    assert (o.groupby("person_id").size().reindex(expect.index) == expect).all()
    # p_true rises with the state of the month
    assert o.groupby("state").p_true.mean().is_monotonic_increasing


def test_oracle_matches_monte_carlo(county):
    settings, _ = county
    o = _truth(settings, "oracle")
    c = _truth(settings, "children").set_index("person_id")
    states = _truth(settings, "household_states")
    o = o[pd.to_datetime(o.month) > pd.Timestamp("2019-01-01")]
    # a spread of cases: the riskiest, a high one, a median one, an infant, one near 18
    o = o.sort_values("p_true", ignore_index=True)
    dob = pd.to_datetime(o.person_id.map(c.dob))
    age = (pd.to_datetime(o.month) - dob).dt.days / 365.25
    picks = [len(o) - 1, int(len(o) * 0.99), len(o) // 2]
    picks += [int(np.flatnonzero(age < 0.5)[-1]), int(np.flatnonzero(age > 17.5)[-1])]
    rng = np.random.default_rng(1)
    sims = 100_000
    for i in picks:
        row = o.iloc[i]
        child = c.loc[row.person_id]
        month = pd.Timestamp(row.month)
        t = (month.year - 2019) * 12 + month.month - 1
        prev = (month - pd.DateOffset(months=1)).date()
        hs = states[(states.household_id == child.household_id) & (states.month == prev)]
        s_prev = int(hs.state.iloc[0])
        P = pr.transition_matrices(pr.deprivation(np.array([child.imd_decile])))
        ages = pr.age_in_month(np.array([np.datetime64(child.dob)]), t + np.arange(12))
        # the reference implementation agrees with the fast one in the file
        ref = pr.oracle_probability(np.array([s_prev]), np.array([child.u]), ages[None, :], P)
        assert ref[0] == pytest.approx(row.p_true, rel=1e-5, abs=1e-7)
        # Monte Carlo of the same process
        Pn = np.broadcast_to(P, (sims, 3, 3))
        s = np.full(sims, s_prev, dtype=np.int64)
        hit = np.zeros(sims, dtype=bool)
        for k in range(12):
            s = pr.draw_next(rng, s, Pn)
            hit |= rng.random(sims) < pr.outcome_hazard(child.u, s, ages[k])
        p_mc = hit.mean()
        se = np.sqrt(row.p_true * (1 - row.p_true) / sims)
        assert abs(p_mc - row.p_true) < 4.5 * se + 2e-5, (i, p_mc, row.p_true)


def test_messy_identifiers_present(county):
    settings, _ = county
    c = _truth(settings, "children").set_index("person_id")
    messy = {}
    for agency in contract.AGENCIES:
        p = _raw(settings, agency, "people")
        t = _truth(settings, f"people_{agency}")
        truth = c.loc[t.person_id]
        messy[agency] = {
            "first": (p.first_name.to_numpy() != truth.first_name.to_numpy()).mean(),
            "surname": (
                p.surname.str.lower().to_numpy() != truth.surname.str.lower().to_numpy()
            ).mean(),
            "dob": ((p.dob != "") & (p.dob.to_numpy() != truth.dob.astype(str).to_numpy())).mean(),
            "dob_missing": (p.dob == "").mean(),
        }
    assert 0.01 < messy["health"]["first"] < 0.15
    assert messy["police"]["first"] > messy["health"]["first"]
    assert 0.003 < messy["health"]["dob"] < 0.05
    assert messy["police"]["dob_missing"] > messy["health"]["dob_missing"]
    p = _raw(settings, "police", "people")
    assert (p.first_name.isin(nm.NICKNAMES.values())).any()


def test_deterministic(tmp_path):
    a = Settings.from_env(tmp_path / "a")
    b = Settings.from_env(tmp_path / "b")
    c = Settings.from_env(tmp_path / "c")
    generate.run(a, children=500, seed=3)
    generate.run(b, children=500, seed=3)
    generate.run(c, children=500, seed=4)
    assert _digest(a.home) == _digest(b.home)
    assert _digest(a.home) != _digest(c.home)


def test_other_extract_date(tmp_path):
    settings = Settings(home=tmp_path, extract_date="2025-04-01")
    fig = generate.run(settings, children=400, seed=5, entry_error_rate=0)
    assert fig["months"] == 75 and fig["entry_errors"] == 0
    c = _truth(settings, "children")
    dob = pd.to_datetime(c.dob)
    assert dob.min() >= pd.Timestamp("2007-04-02") and dob.max() <= pd.Timestamp("2025-03-31")
    assert pd.to_datetime(_truth(settings, "oracle").month).max() == pd.Timestamp("2025-03-01")
    for agency in contract.AGENCIES:
        ev = _bad_rows(settings, agency)
        assert not ev.bad.any()
        assert (ev.extract_date == "2025-04-01").all()


# ------------------------------------------------------------------ episodes in care


def _person_events(settings: Settings, agency: str = "csc") -> pd.DataFrame:
    ev = _raw(settings, agency, "events")
    people = _raw(settings, agency, "people")
    truth = _truth(settings, f"people_{agency}")
    ev["person_id"] = ev.source_id.map(dict(zip(people.source_id, truth.person_id, strict=True)))
    return ev


def test_episodes_in_care_well_formed(county):
    settings, fig = county
    eps = _truth(settings, "episodes")
    out = _truth(settings, "outcomes")
    la = out[out.type == "looked_after_start"]
    assert len(eps) == len(la) == fig["care_episodes"] > 0  # every start begins an episode
    assert sorted(zip(eps.person_id, eps.start, strict=True)) == sorted(
        zip(la.person_id, la.date, strict=True)
    )
    extract = pd.Timestamp(settings.extract_date)
    start, end = pd.to_datetime(eps.start), pd.to_datetime(eps.end)
    closed = end.notna()
    assert (end[closed] >= start[closed]).all() and (end[closed] < extract).all()
    assert (closed == (eps.end_reason != "open")).all()
    assert set(eps.end_reason) <= {"exit", "age_18", "new_start", "open"}
    assert fig["in_care_at_extract"] == int((~closed).sum()) > 0
    # episodes of one child never overlap; a new start ends the open one the day before
    eps = eps.assign(start=start, end=end).sort_values(["person_id", "start"])
    nxt = eps.groupby("person_id").start.shift(-1)
    has_next = nxt.notna()
    assert (eps.end[has_next] < nxt[has_next]).all()
    ns = eps.end_reason == "new_start"
    assert (eps.end[ns] == nxt[ns] - pd.Timedelta(days=1)).all()
    kinds = set(contract.PLACEMENT_KINDS)
    assert set(eps.first_kind) <= kinds and set(eps.last_kind) <= kinds

    ev = _person_events(settings)
    assert (pd.to_datetime(ev.event_date, errors="coerce") < extract).sum() >= len(ev) - len(
        _truth(settings, "entry_errors").query("agency == 'csc'")
    )
    place = ev[ev.event_type == "placement_start"]
    assert set(place.value.astype(int)) <= kinds
    assert len(place) == len(eps) + eps.n_moves.sum()
    ends = ev[ev.event_type == "looked_after_end"]
    assert sorted(zip(ends.person_id, ends.event_date, strict=True)) == sorted(
        zip(eps.person_id[closed], eps.end[closed].dt.strftime("%Y-%m-%d"), strict=True)
    )
    # each entry placement is on its start date with the episode's first kind
    first = place.merge(
        eps.assign(event_date=eps.start.dt.strftime("%Y-%m-%d")), on=["person_id", "event_date"]
    )
    assert len(first) >= len(eps)
    assert (eps.end_reason == "exit").mean() > 0.4  # most episodes of 2019-2024 have ended


def test_episode_process_exits_at_18_and_mix():
    """The process alone: the 18th birthday ends an episode, a new start ends the open one the
    day before, nothing on/after the extract, and a long run gives the stock mix and durations
    the parameters were chosen for (synth/placements.py docstring)."""
    n = 20000
    rng = np.random.default_rng(1)
    start = np.datetime64("2010-01-01") + rng.integers(0, 365, n).astype("timedelta64[D]")
    dob = np.full(n, np.datetime64("2000-01-01"))
    dob[:100] = np.datetime64("1993-02-15")  # 18 on 2011-02-15, within the window
    dob[100] = np.datetime64("1992-02-29")  # leap day: 18 on 2010-03-01
    start[100] = np.datetime64("2010-01-05")
    child = np.arange(n)
    child[-1] = child[-2]  # a second start for one child
    start[-2], start[-1] = np.datetime64("2010-03-10"), np.datetime64("2010-06-01")
    ev, eps = pl.make_episodes(rng, child, start, dob, "2030-01-01")
    eps = eps.set_index(["child", "episode"])
    assert (eps.end.dropna() < np.datetime64("2030-01-01")).all()
    assert (ev.event_date < np.datetime64("2030-01-01")).all()
    aged = eps.loc[[(i, 0) for i in range(100)]]
    assert ((aged.end_reason == "age_18") == (aged.end == np.datetime64("2011-02-15"))).all()
    assert (aged.end <= np.datetime64("2011-02-15")).all() and (aged.end_reason == "age_18").any()
    leap = eps.loc[(100, 0)]
    assert leap.end <= np.datetime64("2010-03-01")
    assert leap.end_reason in ("exit", "age_18")
    two = eps.loc[child[-1]]
    assert len(two) == 2
    if two.iloc[0].end_reason == "new_start":
        assert two.iloc[0].end == np.datetime64("2010-05-31")
    assert two.iloc[0].end <= np.datetime64("2010-05-31")
    # steady state, long window: mean episode ~2 years, stock mix near the England target
    months = (eps.end - eps.start).dt.days / 30.44
    assert eps.end.notna().mean() > 0.99
    assert 19 < months.mean() < 26
    p = ev[ev.event_type == "placement_start"]
    assert set(p.value.astype(int)) == set(contract.PLACEMENT_KINDS)
    # stock on 2014-01-01 by kind from the events alone
    day = np.datetime64("2014-01-01")
    e = ev[ev.event_date < day].sort_values("event_date", kind="stable")
    last_kind = e[e.event_type == "placement_start"].groupby("child").value.last()
    ended = set(e.child[e.event_type == "looked_after_end"])
    inside = last_kind[~last_kind.index.isin(list(ended))]
    mix = inside.value_counts(normalize=True)
    assert len(inside) > 500
    assert 0.45 < mix[1.0] < 0.62 and 0.12 < mix[3.0] < 0.25


def test_placement_stream_leaves_other_files_unchanged(tmp_path):
    """The episodes come from their own generator: with them off, every file is byte-identical
    except the csc events, whose rows are the same as the first rows with them on (the episode
    rows follow, numbered on); the same seed gives the same episodes."""
    on = Settings.from_env(tmp_path / "on")
    on2 = Settings.from_env(tmp_path / "on2")
    off = Settings.from_env(tmp_path / "off")
    f_on = generate.run(on, children=600, seed=11)
    generate.run(on2, children=600, seed=11)
    f_off = generate.run(off, children=600, seed=11, placements=False)
    assert _digest(on.home) == _digest(on2.home)
    d_on, d_off = _digest(on.home), _digest(off.home)
    csc_events = str((on.agency_dir / contract.file_name("csc", "events")).relative_to(on.home))
    episodes = str((on.truth_dir / "episodes.parquet").relative_to(on.home))
    assert set(d_on) - set(d_off) == {episodes}
    for name in d_off:
        if name != csc_events:
            assert d_on[name] == d_off[name], name
    a, b = _raw(on, "csc", "events"), _raw(off, "csc", "events")
    assert len(a) > len(b) and a.iloc[: len(b)].equals(b)
    extra = a.iloc[len(b) :]
    assert set(extra.event_type) == {"placement_start", "looked_after_end"}
    assert not b.event_type.isin(["placement_start", "looked_after_end"]).any()
    for key in ("outcomes", "entry_errors", "mean_oracle_p", "mean_observable_oracle_p"):
        assert f_on[key] == f_off[key]
    assert {k: v for k, v in f_on["events"].items() if k != "csc"} == {
        k: v for k, v in f_off["events"].items() if k != "csc"
    }
    assert f_on["events"]["csc"] == f_off["events"]["csc"] + len(extra)
    assert f_on["care_episodes"] > 0 and f_off["care_episodes"] == 0
