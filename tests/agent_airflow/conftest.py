"""A real Airflow (api-server, dag-processor, scheduler) per test module of
this folder (the agent DAG's, the Data agent page's), with its own review
store, pipelines folder and lakehouse. HITL on Airflow 3.3 waits in
``awaiting_input`` and needs no triggerer.

Module scope, not package scope: this folder is no Python package, so a
package-scoped stack lived to the end of the session (seen: its dag-processor
and scheduler still running 30 minutes after the folder's tests), working on
the session's metadata DB while later modules ran ``dag.test()`` on it; a
dag-processor that does not see a DAG marks it stale there, and a scheduler
then deactivates its Assets, which fails a publish task with outlets."""
from __future__ import annotations

import json

import pytest

from tests.browser import AirflowServices
from tests.helpers import ROOT

# The DAG files the test Airflow parses: the agent DAG and the pipelines DAG
# (which builds approved specs); the training DAG is not needed here.
DAG_FILES = ("datamill_agent.py", "datamill_pipelines.py")


@pytest.fixture(scope="module")
def agent_af(airflow_db, tmp_path_factory):
    work = tmp_path_factory.mktemp("agent_af")
    dags = work / "dags"
    dags.mkdir()
    for name in DAG_FILES:
        (dags / name).symlink_to(ROOT / "dags" / name)
    dirs = {k: work / k for k in ("pipelines", "review", "lake")}
    for d in dirs.values():
        d.mkdir()
    (dirs["lake"] / "_system" / "lineage").mkdir(parents=True)  # the file transport's folder
    env = {"AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "DATAMILL_PIPELINES_DIR": str(dirs["pipelines"]),
           "DATAMILL_REVIEW_DIR": str(dirs["review"]),
           "DATAMILL_LAKE": str(dirs["lake"]),
           "DATAMILL_REVIEWER": "nobody-should-use-this",
           "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
           "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
           "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false",
           # OpenLineage as `make airflow` sets it: JSONL under the lakehouse.
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
               {"type": "file", "log_file_path": str(dirs["lake"] / "_system" / "lineage"
                                                     / "events.jsonl"), "append": True}),
           "AIRFLOW__OPENLINEAGE__NAMESPACE": "datamill",
           "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True"}
    with AirflowServices(work, components=("api-server", "dag-processor", "scheduler"),
                         env=env, start_timeout=300) as af:
        af.dirs = dirs
        af.env_overrides = env
        yield af
