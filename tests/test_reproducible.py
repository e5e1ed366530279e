"""Runs repeat: the same seed and inputs give the same links, model, metrics, gate outcome and
scores (issue 11).

* The demo path twice (`joinedup demo`: the synthetic agencies' key derived from the seed): every
  figure and score is the same, times and paths apart.
* The model whatever key the agencies use: a child id is a pseudonym that changes with the key
  even when every link is the same.  Renaming every child id in the hub (what another key does
  to identical links) and training again gives the same version and the same metrics.json: no
  choice in training or evaluation reads the ids.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from joinedup.config import Settings
from joinedup.stages import run_stage
from warehouse.db import connect

pytestmark = pytest.mark.slow
CHILDREN = 1500
STAGES = ("link_ingest", "link_validate", "link", "ingest", "validate", "assemble", "features",
          "train", "score")  # fmt: skip
#: keys whose values are times, paths or the run's own ids
VOLATILE = {"fit_seconds", "seconds", "seconds_total", "created_at", "checked_at", "run_id",
            "evaluated_at",
            "model_card", "key_file", "delivered_to", "outbox", "outputs", "peak_rss_mb",
            "outputs_markdown", "outputs_html", "steps", "files"}  # fmt: skip


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("/"):
        return "<path>"  # a file under the run's own home
    return obj


def _run(home: Path) -> tuple[Settings, dict]:
    s = Settings.from_env(home)
    figures = {
        "synth": run_stage("synth", s, children=CHILDREN, seed=42),
        "keygen": run_stage("keygen", s, synthetic_seed=42),
        "pseudonymise": run_stage("pseudonymise", s),
    }
    figures.update({name: run_stage(name, s, run_id="repro") for name in STAGES})
    return s, figures


def _metrics(s: Settings, version: str) -> dict:
    return json.loads((s.models_dir / version / "metrics.json").read_text())


def _scores(s: Settings) -> list[tuple]:
    with connect(s, read_only=True) as con:
        return con.execute(
            "SELECT child_id, as_of, round(score, 9), rank, reasons::VARCHAR "
            "FROM scores.current ORDER BY child_id"
        ).fetchall()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("a") / "home"), _run(tmp_path_factory.mktemp("b") / "home")


def test_the_demo_run_repeats_exactly(two_runs):
    (a, fa), (b, fb) = two_runs
    assert a.key_file.read_bytes() == b.key_file.read_bytes()  # derived from the seed
    for stage in STAGES:
        assert _strip(fa[stage]) == _strip(fb[stage]), stage
    version = fa["train"]["version"]
    assert fb["train"]["version"] == version
    assert _strip(_metrics(a, version)) == _strip(_metrics(b, version))
    assert _scores(a) == _scores(b)


def test_the_model_does_not_depend_on_the_child_ids(two_runs, tmp_path):
    (a, fa), _ = two_runs
    home = tmp_path / "home"
    shutil.copytree(a.home, home)
    s = Settings.from_env(home)
    shutil.rmtree(s.models_dir)
    with connect(s) as con:  # every child id renamed, one to one: what another key does
        tables = con.execute(
            "SELECT DISTINCT schema_name, table_name FROM duckdb_columns() "
            "WHERE column_name = 'child_id' AND schema_name NOT IN ('audit') "
            "AND table_name NOT IN (SELECT view_name FROM duckdb_views())"
        ).fetchall()
        for schema, table in tables:
            con.execute(
                f"UPDATE {schema}.{table} SET child_id = 'C' || substr(md5('other key' || "
                "child_id), 1, 10)"
            )
        renamed = con.execute("SELECT min(child_id) FROM features.child_month").fetchone()[0]
    with connect(a, read_only=True) as con:
        original = con.execute("SELECT min(child_id) FROM features.child_month").fetchone()[0]
    assert renamed != original
    figures = run_stage("train", s, run_id="renamed")
    assert figures["version"] == fa["train"]["version"]
    assert _strip(_metrics(s, figures["version"])) == _strip(_metrics(a, figures["version"]))
