"""`joinedup linkage evaluate`: labelled files and FEBRL, our path vs plain Splink."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from joinedup import cli, contract
from linkage import febrl, labelled, plain
from tests.test_linkage import make_county


# ---------------------------------------------------------------- FEBRL mapping
def test_febrl_maps_to_the_raw_contract_with_truth():
    (label, f3), = febrl.load("febrl3")  # fmt: skip
    assert label == "febrl3" and len(f3) == 5000
    assert list(f3.columns) == [*contract.RAW_PEOPLE_COLUMNS, febrl.TRUTH_COLUMN]
    assert f3["entity_id"].nunique() == 2000
    assert f3["source_id"].is_unique
    assert set(f3["sex"]) == {""}
    iso = f3["dob"].str.match(r"^\d{4}-\d{2}-\d{2}$")
    assert iso.mean() > 0.9  # YYYYMMDD became YYYY-MM-DD; the rest is empty or corrupt
    assert (f3["nhs_number"] != "").all()
    a, b = febrl.load("febrl4")
    assert [a[0], b[0]] == ["febrl4_A", "febrl4_B"]
    assert len(a[1]) == len(b[1]) == 5000
    assert set(a[1]["entity_id"]) == set(b[1]["entity_id"])  # one duplicate in B per A record
    (_, none), = febrl.load("febrl3", soc_sec_id_as="none")  # fmt: skip
    assert (none["nhs_number"] == "").all()


def test_febrl_entity_and_dob():
    ids = pd.Series(["rec-12-org", "rec-12-dup-0", "rec-7-dup-13"])
    assert febrl.entity_of(ids).tolist() == ["12", "12", "7"]
    with pytest.raises(ValueError, match="rec_id"):
        febrl.entity_of(pd.Series(["12"]))
    assert febrl._dob("19560409") == "1956-04-09"
    assert febrl._dob("19561340") == "1956-13-40"  # invalid kept: it can still match exactly
    assert febrl._dob(float("nan")) == ""
    with pytest.raises(ValueError, match="unknown FEBRL"):
        febrl.load("febrl9")


# ---------------------------------------------------------------- input checks
def _write(tmp_path, name: str, df: pd.DataFrame):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def _raw(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_id": [f"S{i}" for i in range(n)],
            "first_name": ["Ann"] * n,
            "surname": ["Lee"] * n,
            "dob": ["2010-01-02"] * n,
            "sex": ["F"] * n,
            "postcode": ["JU1 2AB"] * n,
            "person_id": ["P1"] * n,
        }
    )


def test_bad_input_names_file_and_column(tmp_path):
    ok = _write(tmp_path, "ok.csv", _raw())
    with pytest.raises(ValueError, match=r"ok\.csv: no truth column 'truth'"):
        labelled.read_people_file(ok, "truth")
    bad = _write(tmp_path, "nodob.csv", _raw().drop(columns="dob"))
    with pytest.raises(ValueError, match=r"nodob\.csv: lacks raw people column\(s\) 'dob'"):
        labelled.read_people_file(bad, "person_id")
    with pytest.raises(ValueError, match=r"missing\.csv: cannot read"):
        labelled.read_people_file(tmp_path / "missing.csv", "person_id")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81\x00" * 50)
    with pytest.raises(ValueError, match=r"binary\.csv: cannot read"):
        labelled.read_people_file(binary, "person_id")
    dup = _raw()
    dup.loc[1, "source_id"] = "S0"
    with pytest.raises(ValueError, match="'source_id' is not unique"):
        labelled.evaluate_sources([("dup.csv", dup)], "person_id", isolate=False)
    empty_truth = _raw()
    empty_truth.loc[0, "person_id"] = ""
    with pytest.raises(ValueError, match="truth column 'person_id' has empty values"):
        labelled.evaluate_sources([("t.csv", empty_truth)], "person_id", isolate=False)


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    ok = _write(tmp_path, "ok.csv", _raw())
    rc = cli.main(["--home", str(tmp_path / "h"), "--json", "linkage", "evaluate",
                   "--truth-column", "nope", str(ok)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "ok.csv" in err and "'nope'" in err
    rc = cli.main(["--home", str(tmp_path / "h"), "linkage", "evaluate", str(ok)])
    assert rc == 2 and "--truth-column" in capsys.readouterr().err
    rc = cli.main(["--home", str(tmp_path / "h"), "linkage", "evaluate"])
    assert rc == 2 and "--dataset" in capsys.readouterr().err


def test_agencies_from_file_names_then_in_order():
    assert labelled.assign_agencies(["a.csv", "b.csv"]) == ["health", "police"]
    assert labelled.assign_agencies(["x.csv", "/d/health_people.csv"]) == ["police", "health"]
    with pytest.raises(ValueError, match="same agency"):
        labelled.assign_agencies(["health_people.csv", "d/health_people.csv"])
    with pytest.raises(ValueError, match="at most 4"):
        labelled.assign_agencies([f"f{i}.csv" for i in range(5)])


# ---------------------------------------------------------------- a small synthetic county
@pytest.fixture(scope="module")
def county_files(tmp_path_factory):
    from joinedup.config import Settings

    home = tmp_path_factory.mktemp("evalcounty")
    s = Settings(home=home)
    make_county(s, n=300, seed=11)
    files = []
    for name, df in labelled.synth_sources(s.agency_dir, s.truth_dir):
        path = home / "labelled" / name
        path.parent.mkdir(exist_ok=True)
        df.to_csv(path, index=False)
        files.append(path)
    return files


def test_link_plain_contract(county_files):
    raw = pd.concat(
        [pd.read_csv(p, dtype=str, keep_default_na=False).assign(agency=p.stem.split("_")[0])
         for p in county_files],
        ignore_index=True,
    )  # fmt: skip
    out = plain.link_plain(raw, seed=3, threshold=0.95)
    assert list(out.columns) == ["unique_id", "cluster_id"]
    assert len(out) == len(raw) and out["unique_id"].is_unique
    assert set(out["unique_id"]) == set(raw["agency"] + ":" + raw["source_id"])
    fig = out.attrs["figures"]
    assert fig["comparisons"] >= fig["pairs_scored"] >= fig["pairs_above_threshold"] > 0
    assert set(fig["seconds"]) == {"prepare", "train", "predict", "cluster"}
    # plaintext Splink links the county well: most people's records end up together
    truth = raw.set_index(raw["agency"] + ":" + raw["source_id"])["person_id"]
    per_person = out.assign(p=out["unique_id"].map(truth)).groupby("p")["cluster_id"].nunique()
    assert (per_person == 1).mean() > 0.9


def test_cli_json_on_synthetic_files(county_files, tmp_path, capsys):
    """The whole command, each path in its own spawn child: one JSON object, both paths."""
    rc = cli.main(["--home", str(tmp_path), "--json", "linkage", "evaluate",
                   "--truth-column", "person_id", "--seed", "5", *map(str, county_files)])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    fig = json.loads(out)
    assert fig["dataset"] == "files" and fig["measured_in_separate_processes"] is True
    assert [f["agency"] for f in fig["files"]] == ["health", "police", "education", "csc"]
    assert fig["records"] == sum(f["rows"] for f in fig["files"])
    for path in ("ours", "plain"):
        r = fig[path]
        for key in ("precision", "recall", "f1", "children", "persons", "clusters_exact",
                    "clusters_mixed", "persons_split", "comparisons", "pairs_scored"):  # fmt: skip
            assert key in r, (path, key)
        assert r["records"] == fig["records"] and r["persons"] == fig["persons"]
        assert r["seconds_total"] > 0 and r["peak_rss_mb"] > 50
    # plain Splink has no twin guard: on this county (8% twins) it merges some twins
    assert fig["ours"]["f1"] > 0.95 and fig["plain"]["f1"] > 0.8
    assert fig["ours"]["clusters_mixed"] <= fig["plain"]["clusters_mixed"]
    assert fig["ours"]["without_guard"]["f1"] > 0.8
    assert fig["f1_ratio_ours_to_plain"] == pytest.approx(
        fig["ours"]["f1"] / fig["plain"]["f1"], abs=1e-4
    )
    assert fig["meets_target"] == (fig["f1_ratio_ours_to_plain"] >= 0.99)
    # figures only: no names, dates of birth or ids from the files reach the output
    raw = pd.read_csv(county_files[0], dtype=str, keep_default_na=False)
    for value in (raw["surname"].iloc[0], raw["dob"].iloc[0], raw["source_id"].iloc[0]):
        assert value not in out


@pytest.mark.slow
def test_synthetic_county_target(county_files):
    sources = [(p.name, labelled.read_people_file(p, "person_id")) for p in county_files]
    fig = labelled.evaluate_sources(sources, "person_id", seed=42, isolate=False)
    assert "peak_rss_mb" not in fig["ours"]  # not separable in one process
    assert fig["ours"]["f1"] >= labelled.TARGET_F1_RATIO * fig["plain"]["f1"], fig


# ---------------------------------------------------------------- FEBRL: the target
@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["febrl3", "febrl4"])
def test_febrl_ours_within_one_percent_of_plain_splink(dataset):
    """The issue's target on data we did not write: our pseudonymised, guarded path reaches
    0.99 of plain Splink's F1 on the plaintext.  FEBRL's soc_sec_id is corrupted in ~10% of
    duplicates and has no check digit, so it is evidence, not a verified id (the default for
    FEBRL; `--verified-ids` shows what trusting it would cost)."""
    fig = labelled.evaluate_dataset(dataset, seed=42, isolate=False)
    ours, base = fig["ours"], fig["plain"]
    assert fig["ids_treated_as_verified"] is False
    assert base["f1"] > 0.95  # plain Splink is a sound baseline on FEBRL
    assert ours["precision"] >= base["precision"] - 1e-9
    assert ours["f1"] >= labelled.TARGET_F1_RATIO * base["f1"], {
        k: (ours[k], base[k]) for k in ("precision", "recall", "f1", "persons_split")
    }
    # and the encoding alone (our scores clustered without any guard) loses nothing either
    assert ours["without_guard"]["f1"] >= labelled.TARGET_F1_RATIO * base["f1"]
