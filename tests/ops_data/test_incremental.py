"""Incremental refresh (``source.incremental: true``) through the real runner,
Spark and Delta, on a lakehouse given as a ``file://`` URI (so every table
location goes through the URI code paths).

One scenario, run once for the module: a first run publishes 8 documents; a
refresh adds a file with an exact copy and a near copy of published
documents, a copy of its own new document, a reused id and one new document;
a refresh with no new file; a refresh after one file changed (a document's
text changed, one document deleted from it).
"""
from __future__ import annotations

import json
import os
import time

import pytest

from tests.helpers import clean_texts, dag_test

TABLE = "gold/inc_docs"


def _near(text: str) -> str:
    words = text.split()
    words[3] = "CHANGED"
    return " ".join(words)


def _write(path, rows) -> None:
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


def _spec(src, name="inc_docs"):
    from include.spec import parse

    return parse({"version": 1, "name": name, "schedule": "@daily",
                  "source": {"path": str(src), "format": "jsonl", "id_field": "id",
                             "incremental": True},
                  "steps": [{"op": "exact_dedup"},
                            {"op": "minhash_dedup", "params": {"threshold": 0.8}}],
                  "output": {"table": TABLE}})


@pytest.fixture(scope="module")
def scenario(spark, tmp_path_factory):
    from include.runner import run_pipeline

    base = tmp_path_factory.mktemp("incremental")
    src = base / "src"
    src.mkdir()
    lake = "file://" + str(base / "lake")
    texts = clean_texts(12)
    first = [{"id": f"d{i:02d}", "text": texts[i]} for i in range(8)]
    _write(src / "a.jsonl", first + [{"id": "d08", "text": texts[1]}])  # d08 copies d01
    spec = _spec(src)
    out = {"lake": lake, "src": src, "texts": texts, "spec": spec}
    out["run1"] = run_pipeline(spec, lake=lake)
    _write(src / "b.jsonl", [
        {"id": "a0", "text": texts[2]},         # exact copy of published d02 (a lower id)
        {"id": "n2", "text": _near(texts[3])},  # near copy of published d03
        {"id": "n3", "text": texts[9]},         # new
        {"id": "n4", "text": texts[9]},         # copy of the new n3
        {"id": "d05", "text": texts[10]}])      # an id already published
    out["run2"] = run_pipeline(spec, lake=lake)
    out["run3"] = run_pipeline(spec, lake=lake)  # nothing new
    changed = [dict(r) for r in first if r["id"] != "d06"] + [{"id": "d08", "text": texts[1]}]
    changed[4]["text"] = texts[11]  # d04's text changes; d06 is gone from the file
    time.sleep(1.1)
    _write(src / "a.jsonl", changed)
    out["run4"] = run_pipeline(spec, lake=lake)
    return out


def _ledger(lh, run_id):
    from pyspark.sql import functions as F

    return {r["doc_id"]: r.asDict() for r in lh.read("_system/ledger")
            .where(F.col("run_id") == run_id).collect()}


def test_refresh_reads_new_files_and_dedups_against_the_published_table(scenario):
    from pyspark.sql import functions as F

    from include.lakehouse import Lakehouse

    lh = Lakehouse(scenario["lake"])
    s1, s2 = scenario["run1"], scenario["run2"]
    assert s1["output_rows"] == 8 and s1["output_version"] == 0
    assert s2["source"]["rows"] == 5 and s2["source"]["quarantined"] == 1  # only b.jsonl read
    assert s2["source"]["incremental"]["files_new"] == 1
    assert s2["source"]["incremental"]["files_unchanged"] == 1
    assert s2["output_rows"] == 1 and s2["rows_added"] == 1 and s2["conservation"]["ok"]
    exact, near = s2["steps"]
    assert exact["removed"] == 2 and exact["stats"]["published_duplicates"] == 1
    # Only the new rows got signatures; the published side came from the index.
    assert near["stats"]["signatures_computed"] == 2 and near["stats"]["index_rebuilt"] is False
    ledger = _ledger(lh, s2["run_id"])
    a0 = json.loads(ledger["a0"]["detail"])
    assert ledger["a0"]["rule"] == "exact_duplicate" and a0["survivor"] == "d02" and a0["published"]
    assert json.loads(ledger["n4"]["detail"])["survivor"] == "n3"
    n2 = json.loads(ledger["n2"]["detail"])
    assert ledger["n2"]["rule"] == "near_duplicate" and n2["survivor"] == "d03" and n2["published"]
    q = lh.read("_system/quarantine").where(F.col("run_id") == s2["run_id"]).collect()
    assert [r["doc_id"] for r in q] == ["d05"] and "already published" in q[0]["error"]
    # The published documents are untouched; one MERGE commit added n3.
    hist = lh.history(TABLE)
    assert s2["output_version"] == 1 and hist[-2]["version"] == 1
    assert [h["operation"] for h in hist if h["version"] == 1] == ["MERGE"]
    assert json.loads([h for h in hist if h["version"] == 1][0]["userMetadata"]) == \
        {"pipeline": "inc_docs", "run_id": s2["run_id"]}
    ids = sorted(r["id"] for r in lh.read(TABLE, 1).select("id").collect())
    assert ids == ["d00", "d01", "d02", "d03", "d04", "d05", "d06", "d07", "n3"]


def test_refresh_without_new_files_reads_nothing_and_commits_nothing(scenario):
    s3 = scenario["run3"]
    assert s3["source"]["rows"] == 0 and s3["output_rows"] == 0 and s3["rows_added"] == 0
    assert s3["output_version"] == 1 and s3["table_changed"] is False
    assert s3["source"]["incremental"]["files_unchanged"] == 2


def test_changed_file_replaces_its_earlier_rows(scenario):
    from include.lakehouse import Lakehouse
    from include.trace import trace

    lh = Lakehouse(scenario["lake"])
    s4 = scenario["run4"]
    assert s4["source"]["incremental"]["files_changed"] == 1
    assert s4["source"]["rows"] == 8  # a.jsonl again; b.jsonl not
    assert s4["rows_retracted"] == 1 and s4["rows_added"] == 0
    assert s4["rows_replaced"] == 7 and s4["output_version"] == 2
    rows = {r["id"]: r["text"] for r in lh.read(TABLE).collect()}
    assert "d06" not in rows and rows["d04"] == scenario["texts"][11]
    assert set(rows) == {"d00", "d01", "d02", "d03", "d04", "d05", "d07", "n3"}
    ledger = _ledger(lh, s4["run_id"])
    assert ledger["d06"]["action"] == "retracted" and ledger["d06"]["rule"] == "source_file_changed"
    assert json.loads(ledger["d06"]["detail"])["file"].endswith("a.jsonl")
    events = [e["event"] for e in trace("d06", lh.root)]
    assert events.count("kept") == 3 and events[-1] == "retracted"  # v0, v1 (run 2 and 3)


def test_a_file_deleted_between_manifest_and_read_is_quarantined(scenario, spark):
    from pyspark.sql import functions as F

    from include.lakehouse import Lakehouse
    from spark_jobs import manifest
    from spark_jobs.incremental import ingest_new_files

    lh, src = Lakehouse(scenario["lake"]), scenario["src"]
    _write(src / "c.jsonl", [{"id": "c1", "text": scenario["texts"][5] + " more"}])
    p = manifest.plan(spark, lh, "inc_docs", str(src))
    assert [os.path.basename(s.path) for s in p.new] == ["c.jsonl"]
    os.remove(src / "c.jsonl")
    rows, bad, info, finish = ingest_new_files(spark, scenario["spec"], lh, "probe", plan=p)
    rows, bad = rows.cache(), bad.cache()
    assert rows.count() == 0
    got = bad.collect()
    assert len(got) == 1 and got[0]["raw"] == str(src / "c.jsonl")
    assert got[0]["error"].startswith(manifest.MISSING)
    finish(rows, bad)
    statuses = {r["path"]: r["status"] for r in lh.read("_system/files")
                .where(F.col("run_id") == "probe").collect()}
    assert statuses == {str(src / "c.jsonl"): "missing"}


def test_refresh_of_a_table_another_pipeline_published_is_refused(scenario):
    from include.runner import StageError, run_pipeline

    with pytest.raises(StageError, match="published by pipeline 'inc_docs'"):
        run_pipeline(_spec(scenario["src"], name="inc_other"), lake=scenario["lake"])


def test_the_spec_schedule_drives_the_dag(tmp_path):
    import yaml

    from include.dag_factory import build_dag
    from include.spec import load_spec

    raw = _spec(tmp_path).raw
    path = tmp_path / "inc_docs.yaml"
    path.write_text(yaml.safe_dump({**raw, "schedule": "0 2 * * *"}))
    dag = build_dag(load_spec(path), str(path))
    assert dag.timetable.expression == "0 2 * * *"
    assert [t.task_id for t in dag.tasks][-1] == "publish"


def test_a_retried_refresh_publish_commits_nothing(scenario):
    from include.lakehouse import Lakehouse
    from include.runner import run_task

    lh = Lakehouse(scenario["lake"])
    s4 = scenario["run4"]
    versions = [h["version"] for h in lh.history(TABLE)]
    again = run_task("inc_docs", "publish", s4["run_id"], scenario["lake"])
    assert [h["version"] for h in lh.history(TABLE)] == versions
    assert again["output_version"] == s4["output_version"]
    assert (again["rows_replaced"], again["rows_retracted"]) == (7, 1)


def _jaccard5(x: str, y: str) -> float:
    def grams(t):
        w = t.split()
        return {tuple(w[i:i + 5]) for i in range(len(w) - 4)}
    a, b = grams(x), grams(y)
    return len(a & b) / len(a | b)


def test_a_near_copy_of_an_earlier_removed_copy_is_removed(spark, tmp_path):
    """Near-duplication is not transitive: ``n`` is a near copy of ``b``, which
    the first run removed as a near copy of ``s``, but ``n`` is too far from
    ``s`` itself. A full rerun puts all three in one cluster; the refresh
    matches ``b`` in the index and removes ``n`` for ``b``'s survivor."""
    from include.lakehouse import Lakehouse
    from include.runner import run_pipeline

    def edit(words, at):
        return " ".join(f"edit{i}" if i in at else w for i, w in enumerate(words))

    words = [f"word{i}" for i in range(120)]
    s_text, b_text, n_text = " ".join(words), edit(words, {20, 60}), edit(words, {20, 60, 90, 110})
    assert _jaccard5(s_text, b_text) > 0.8 and _jaccard5(b_text, n_text) > 0.8
    assert _jaccard5(s_text, n_text) < 0.75
    src = tmp_path / "src"
    src.mkdir()
    lake = str(tmp_path / "lake")
    spec = _spec(src, name="inc_chain")
    _write(src / "a.jsonl", [{"id": "s", "text": s_text}, {"id": "t", "text": b_text}])
    first = run_pipeline(spec, lake=lake)
    assert first["output_rows"] == 1  # t removed for s
    _write(src / "b.jsonl", [{"id": "n", "text": n_text}])
    refresh = run_pipeline(spec, lake=lake)
    assert refresh["output_rows"] == 0 and refresh["table_changed"] is False
    lh = Lakehouse(lake)
    n = _ledger(lh, refresh["run_id"])["n"]
    detail = json.loads(n["detail"])
    assert (n["rule"], detail["survivor"], detail["published"]) == ("near_duplicate", "s", True)
    assert sorted(r["id"] for r in lh.read(TABLE).collect()) == ["s"]


@pytest.mark.usefixtures("airflow_db")
def test_publish_asset_events_carry_the_version_and_rows_added(spark, tmp_path, monkeypatch,
                                                              capfd):
    """Through Airflow (``dag.test``): each publish's Asset event says which table
    version it made and how many rows it added; a refresh with nothing new
    skips the publish task and emits no event."""
    import yaml
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from include.config import PROJECT_ROOT
    from include.lakehouse import Lakehouse

    texts = clean_texts(12)
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "a.jsonl", [{"id": f"d{i:02d}", "text": texts[i]} for i in range(6)])
    raw = {**_spec(src, name="inc_assets").raw, "output": {"table": "gold/inc_assets"}}
    raw["steps"] = [{"op": "exact_dedup"}]
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "inc_assets.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("DATAMILL_PIPELINES_DIR", str(pipelines))
    monkeypatch.setenv("DATAMILL_LAKE", str(tmp_path / "lake"))
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["datamill__inc_assets"]

    def events():
        with create_session() as session:
            rows = session.scalars(select(AssetEvent).where(
                AssetEvent.source_dag_id == dag.dag_id).order_by(AssetEvent.id)).all()
            return [dict(e.extra or {}) for e in rows]

    dag_test(dag, capfd)
    # a refresh: one more file, an exact copy of a published document and 2 new ones
    _write(src / "b.jsonl", [{"id": "n1", "text": texts[0]}, {"id": "n2", "text": texts[7]},
                             {"id": "n3", "text": texts[8]}])
    dag_test(dag, capfd)
    nothing = dag_test(dag, capfd)
    assert nothing.get_task_instance("publish").state == "skipped"
    lh = Lakehouse(str(tmp_path / "lake"))
    got = [(e["table"], e["version"], e["rows"], e["rows_added"]) for e in events()]
    assert got == [("gold/inc_assets", 0, 6, 6), ("gold/inc_assets", 1, 2, 2)], got
    assert lh.version("gold/inc_assets") == 1
