"""The Airflow DAG parses with no import errors and wires every stage (linkage unit, then hub) in
order."""

from __future__ import annotations

from pathlib import Path

from joinedup.stages import PIPELINE_STAGES

DAGS = Path(__file__).resolve().parent.parent / "dags"


def test_dagbag_has_no_import_errors_and_the_pipeline_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.get_dag("joinedup_pipeline")
    assert dag is not None
    assert [t.task_id for t in dag.topological_sort()] == list(PIPELINE_STAGES)
    for upstream, downstream in zip(PIPELINE_STAGES, PIPELINE_STAGES[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    assert all(dag.get_task(n).outlets for n in PIPELINE_STAGES)


def test_dag_module_imports_no_heavy_libraries():
    import subprocess
    import sys

    dag_file = str(DAGS / "joinedup_pipeline.py")
    code = (
        f"import sys, runpy; runpy.run_path({dag_file!r}); "
        "heavy = [m for m in ('pandas', 'splink', 'great_expectations', 'sklearn') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
