"""The training DAG under real Airflow: one DAG per config, scheduled on the
gold tables' Assets; a dag.test() run trains, evaluates and publishes (summary
in XCom, the model as an Asset, the report as an extra link); new data
published between two DAG runs is trained on, not skipped."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from include.config import PROJECT_ROOT
from include.lineage import asset_uri
from tests.helpers import dag_test


def _dagbag():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # older layout
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "datamill_training.py"))


def _xcom(run, task_id: str, key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=run.dag_id, run_id=run.run_id,
                                                 task_id=task_id, key=key).one()
        return XComModel.deserialize_value(row)


def test_shipped_configs_build_dags(airflow_db):
    bag = _dagbag()
    assert bag.import_errors == {}
    dag = bag.dags["datamill__train__mix_demo"]
    assert [t.task_id for t in dag.tasks] == ["prepare_tokens", "train", "evaluate", "publish"]
    assert dag.get_task("train").retries >= 1
    publish = dag.get_task("publish")
    assert [a.name for a in publish.outlets] == ["datamill_model__mix_demo"]
    assert [link.name for link in publish.operator_extra_links] == ["Training report"]


def test_training_dag_trains_publishes_and_retrains_on_new_data(airflow_db, spark, gold_lake,
                                                                 make_config, tmp_path, monkeypatch,
                                                                 capfd):
    from training import corpora

    lake = tmp_path / "lake"                  # its own lake: this test publishes new data
    shutil.copytree(gold_lake, lake, ignore=shutil.ignore_patterns("_system"))
    cfg = make_config("dagrun", name="dagrun", train={"steps": 4, "eval_every": 2},
                      mixer={"strategy": "odm"})
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "dagrun.yaml").write_text(yaml.safe_dump(cfg.raw))
    monkeypatch.setenv("DATAMILL_TRAINING_CONFIGS_DIR", str(configs))
    monkeypatch.setenv("DATAMILL_LAKE", str(lake))
    dag = _dagbag().dags["datamill__train__dagrun"]

    # The pipelines' publish tasks emit exactly these (include.lineage.asset_uri).
    names = {a.name for a in dag.timetable.asset_condition.objects}
    assert names == {asset_uri(lake, f"gold/{d}") for d in cfg.domains}

    run = dag_test(dag, capfd)
    summary = _xcom(run, "train")                        # the run summary is in XCom
    assert summary["steps"] == 4 and summary["complete"] and summary["resumed_from"] is None
    assert summary["run_id"] == run.run_id
    run_dir = Path(summary["run_dir"])
    assert json.loads((run_dir / "eval.json").read_text())["step"] == 4
    assert (run_dir / "report.html").exists() and (run_dir / "training.png").exists()
    published = _xcom(run, "publish")
    assert published["published"] and Path(published["model"], "model.pt").exists()
    assert published["report_url"].endswith(
        f"/datamill/training/run?dag_id=datamill__train__dagrun&run_id={run.run_id.replace(':', '%3A').replace('+', '%2B')}")
    assert _xcom(run, "publish", "_link_TrainingReportLink") == published["report_url"]
    first_versions = summary["data_versions"]

    # A pipeline publishes a new version of one domain table; the next DAG
    # run trains on it: a new run folder, from step 0, on version 1.
    corpora.write_tables(spark, lake, {"changelog": corpora.changelogs(90)[10:]})
    run2 = dag_test(dag, capfd)
    again = _xcom(run2, "train")
    assert again["resumed_from"] is None and again["steps"] == 4 and again["complete"]
    assert again["data_versions"]["changelog"] == first_versions["changelog"] + 1
    assert again["fingerprint"] != summary["fingerprint"]
    assert again["tokenizer_sha256"] != summary["tokenizer_sha256"]
    assert again["run_dir"] != summary["run_dir"] and run_dir.exists()
    meta = json.loads((cfg.output_dir / "model" / "model.json").read_text())
    assert meta["run_id"] == run2.run_id and meta["data_versions"] == again["data_versions"]

    # OpenLineage: each task names the tables (at the versions it read) and folders.
    def lineage(task_id):
        ti = run2.get_task_instance(task_id)
        got = dag.get_task(task_id).get_openlineage_facets_on_complete(ti)
        assert got is not None, task_id
        return ({i.name: i.facets for i in got.inputs}, {o.name: o.facets for o in got.outputs})

    ins, outs = lineage("prepare_tokens")
    for d in cfg.domains:
        facets = ins[str((lake / "gold" / d).resolve())]
        assert facets["version"].datasetVersion == str(again["data_versions"][d])
        assert "text" in {f.name for f in facets["schema"].fields}
    assert list(outs) == [str(Path(_xcom(run2, "prepare_tokens")["dir"]).resolve())]
    assert list(lineage("train")[1]) == [str(Path(again["run_dir"]).resolve())]
    assert list(lineage("evaluate")[0]) == [str(Path(again["run_dir"]).resolve())]
    assert list(lineage("publish")[1]) == [str((cfg.output_dir / "model").resolve())]
    start = dag.get_task("prepare_tokens").get_openlineage_facets_on_start()
    assert len(start.inputs) == len(cfg.domains) and start.outputs == []
