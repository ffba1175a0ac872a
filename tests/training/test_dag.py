"""The training DAG under real Airflow: one DAG per config, scheduled on the
gold tables' Assets, and a full dag.test() run."""
from __future__ import annotations

import json

import yaml

from include.config import PROJECT_ROOT
from include.lineage import asset_uri


def _dagbag():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # older layout
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "datamill_training.py"))


def test_shipped_configs_build_dags(airflow_db):
    bag = _dagbag()
    assert bag.import_errors == {}
    dag = bag.dags["datamill__train__mix_demo"]
    assert [t.task_id for t in dag.tasks] == ["prepare_tokens", "train", "evaluate", "publish"]
    assert dag.get_task("train").retries >= 1


def test_training_dag_runs_on_asset_trigger_and_publishes(airflow_db, spark, gold_lake, make_config,
                                                          tmp_path, monkeypatch):
    cfg = make_config("dagrun", name="dagrun", train={"steps": 4, "eval_every": 2},
                      mixer={"strategy": "doremi"})
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "dagrun.yaml").write_text(yaml.safe_dump(cfg.raw))
    monkeypatch.setenv("DATAMILL_TRAINING_CONFIGS_DIR", str(configs))
    monkeypatch.setenv("DATAMILL_LAKE", str(gold_lake))
    dag = _dagbag().dags["datamill__train__dagrun"]

    # The pipelines' publish tasks emit exactly these (include.lineage.asset_uri).
    names = {a.name for a in dag.timetable.asset_condition.objects}
    assert names == {asset_uri(gold_lake, f"gold/{d}") for d in cfg.domains}

    run = dag.test()
    assert run.state == "success"
    out = cfg.output_dir
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["complete"]
    assert json.loads((out / "eval.json").read_text())["step"] == 4
    assert (out / "report.html").exists() and (out / "training.png").exists()

    # A retried train task (here: a new run) resumes from the last checkpoint
    # and has nothing left to do.
    run = dag.test()
    assert run.state == "success"
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == 4
