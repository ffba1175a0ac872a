"""The generated DAGs under real Airflow: import, parse time, dag.test()."""
import json
import time

import pytest

from include.lakehouse import Lakehouse
from include.runner import run_pipeline
from tests.conftest import ROOT, clean_texts, write_spec

SPEC = """
version: 1
name: af
source: {{path: {src}, format: jsonl, id_field: id}}
steps:
  - op: normalize
  - op: quality_filter
    params: {{min_words: 40}}
output: {{table: gold/af}}
"""


def _dagbag():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # older layout
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_dag_file_imports_fast(airflow_db):
    bag = _dagbag()
    assert bag.import_errors == {}
    assert "datamill__stdlib_docs" in bag.dags
    for stat in bag.dagbag_stats:
        assert stat.duration.total_seconds() < 1.0, stat
    dag = bag.dags["datamill__stdlib_docs"]
    assert dag.max_active_runs == 1
    assert [t.task_id for t in dag.tasks] == ["ingest", "s1_normalize__s2_quality_filter",
                                             "s3_exact_dedup", "s4_minhash_dedup", "publish"]
    assert "s2_quality_filter__min_words" in dag.params
    assert all(t.retries >= 1 for t in dag.tasks)


@pytest.fixture
def src(tmp_path):
    p = tmp_path / "src.jsonl"
    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(clean_texts(30))]
    rows += [{"id": "tiny", "text": "too short to keep"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return p


def test_dag_test_matches_cli_run(airflow_db, spark, tmp_path, src, monkeypatch):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    spec_path = write_spec(pipelines / "af.yaml", SPEC.format(src=src))
    dag_lake, cli_lake = tmp_path / "dag_lake", tmp_path / "cli_lake"
    # dag.test() re-parses the dags folder, so the spec must be found there.
    monkeypatch.setenv("DATAMILL_PIPELINES_DIR", str(pipelines))
    monkeypatch.setenv("DATAMILL_LAKE", str(dag_lake))
    dag = _dagbag().dags["datamill__af"]
    run = dag.test()
    assert run.state == "success"
    run_pipeline(str(spec_path), lake=str(cli_lake))
    rows = lambda p: sorted((r.id, r.text) for r in Lakehouse(p).read("gold/af").collect())
    assert rows(dag_lake) == rows(cli_lake) and len(rows(dag_lake)) == 30

    # A UI trigger's params override the spec for that run only.
    run = dag.test(run_conf={"s2_quality_filter__min_words": 120})
    assert run.state == "success"
    assert len(rows(dag_lake)) < 30
