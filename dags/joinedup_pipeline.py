"""The hub pipeline as an Airflow 3 DAG: thin orchestration only.

One task per stage from `joinedup.stages.PIPELINE_STAGES`, in order: the linkage unit's stages
(ingest and validate its people encodings, link, hand the token -> child id mapping to the hub),
then the analytics hub's (ingest and validate attributes and events, assemble, features, train,
score, forecast, publish), each calling the same stage function as the CLI and the tests
(`joinedup.stages.run_stage`), which runs it with its own unit's settings and store.  In a
deployment where the linkage unit is another organisation, it runs the `link_*` tasks (or this DAG
with `JOINEDUP_UNIT=linkage`) and the hub the rest (`JOINEDUP_UNIT=hub`).  Each task declares the warehouse
layer it produces as an Asset.  Heavy libraries (pandas, GX, Splink, scikit-learn) are imported
inside the stage functions, never at parse time.  Stages are idempotent, so a retry or a rerun
of a failed run is safe.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from joinedup.stages import HUB_STAGES, LINKAGE_STAGES, PIPELINE_STAGES, STAGES

#: the layer each stage produces, as an Asset (data-aware scheduling and lineage in the UI)
PRODUCES: dict[str, str] = {
    "link_ingest": "joinedup://linkage_unit/raw",
    "link_validate": "joinedup://linkage_unit/staging",
    "link": "joinedup://linkage_unit/handoff",
    "ingest": "joinedup://warehouse/raw",
    "validate": "joinedup://warehouse/staging",
    "assemble": "joinedup://warehouse/linked",
    "features": "joinedup://warehouse/features",
    "train": "joinedup://models/registry",
    "score": "joinedup://warehouse/scores",
    "forecast": "joinedup://warehouse/forecast",
    "publish": "joinedup://warehouse/published",
}


def _stage_task(name: str):
    @task(task_id=name, outlets=[Asset(PRODUCES[name])], doc_md=STAGES[name].summary)
    def _run(**context) -> dict:
        from joinedup.config import Settings
        from joinedup.stages import run_stage

        return run_stage(name, Settings.from_env(), run_id=context["run_id"])

    return _run()


@dag(
    dag_id="joinedup_pipeline",
    description="Ingest, validate, link, score and publish the agencies' pseudonymised extracts",
    schedule=os.environ.get("JOINEDUP_SCHEDULE") or None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": int(os.environ.get("JOINEDUP_TASK_RETRIES", "0")),
        "retry_delay": timedelta(minutes=5),
    },
    tags=["joinedup"],
    doc_md=__doc__,
)
def joinedup_pipeline():
    unit = os.environ.get("JOINEDUP_UNIT", "")
    names = {"linkage": LINKAGE_STAGES, "hub": HUB_STAGES}.get(unit, PIPELINE_STAGES)
    previous = None
    for name in names:
        current = _stage_task(name)
        if previous is not None:
            previous >> current
        previous = current


joinedup_pipeline()
