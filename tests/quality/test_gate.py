"""The Great Expectations gate on real Spark + Delta: a passing gate publishes
once, a failing one stops the run before publishing (CLI exit 1, Airflow
task failed) and leaves the published table exactly as it was."""
import json

from include.lakehouse import Lakehouse
from include.quality.gate import QUALITY
from tests.helpers import ROOT, run_cli, write_spec

FAILING = """
version: 1
name: qdocs
source: {{path: {src}, format: jsonl, id_field: id}}
steps:
  - op: gx_validate
    params:
      suite: datamill_defaults
      expectations:
        - {{type: expect_column_value_lengths_to_be_between, kwargs: {{column: text, max_value: 300}}}}
        - {{type: expect_table_row_count_to_be_between, kwargs: {{max_value: 5}}}}
        - {{type: expect_column_values_to_be_in_set, kwargs: {{column: text, value_set: [a], severity: warning}}}}
output: {{table: gold/qdocs}}
"""


def _rows(lh, table, version=None):
    return sorted((r.id, r.text) for r in lh.read(table, version).collect())


def _commits(lake, table):
    return sorted(p.name for p in (lake / table / "_delta_log").glob("*.json"))


def test_passing_gate_publishes_once(published):
    lake, _, summary = published
    gate = next(s for s in summary["steps"] if s["op"] == "gx_validate")
    assert gate["stats"]["suite"] == "datamill_defaults" and gate["stats"]["failed"] == 0
    assert gate["removed"] == 0 and gate["kept"] == gate["rows_in"]
    assert _commits(lake, "gold/qdocs") == ["00000000000000000000.json"]
    lh = Lakehouse(lake)
    results = [r for r in lh.read(QUALITY).collect() if r.run_id == summary["run_id"]]
    assert len(results) == 6 and all(r.success for r in results)
    assert {r.expectation for r in results} >= {"expect_column_values_to_be_unique",
                                                "expect_column_value_lengths_to_be_between"}
    # GX's Data Docs site lives in the lake, not in a temp folder.
    docs = lake / "_reports" / "data_docs"
    assert (docs / "index.html").is_file()
    page = gate["stats"]["data_docs"]
    assert page.startswith(str(docs.resolve())) and summary["run_id"] in page


def test_failing_gate_exits_1_names_failures_and_keeps_the_table(published, tmp_path):
    lake, first_spec, first = published
    lh = Lakehouse(lake)
    before_rows, before_commits = _rows(lh, "gold/qdocs"), _commits(lake, "gold/qdocs")
    src = tmp_path / "src.jsonl"
    src.write_text((first_spec.parent / "src.jsonl").read_text())
    spec = write_spec(tmp_path / "qdocs.yaml", FAILING.format(src=src))
    r = run_cli("run", str(spec), "--lake", str(lake))
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-3000:]
    err = r.stderr
    assert "quality gate failed at step 1 (gx_validate, suite datamill_defaults): 2 of 9 " \
           "expectations failed; nothing was published" in err
    assert "expect_column_value_lengths_to_be_between(column='text', max_value=300); observed" in err
    reached = first["source"]["rows"] - first["source"]["quarantined"]
    assert f"expect_table_row_count_to_be_between(max_value=5); observed {reached}" in err
    lengths = next(line for line in err.splitlines() if "max_value=300" in line)
    assert " rows (" in lengths and "unexpected " in lengths
    # The warning-severity failure is recorded but does not block.
    assert "expect_column_values_to_be_in_set" not in err.split("Results:")[0]
    assert not r.stdout.strip()  # no run summary: the run did not finish

    assert _commits(lake, "gold/qdocs") == before_commits
    assert _rows(lh, "gold/qdocs") == before_rows
    failed = {x.expectation: x for x in lh.read(QUALITY).collect()
              if x.run_id != first["run_id"] and not x.success}
    assert set(failed) == {"expect_column_value_lengths_to_be_between",
                           "expect_table_row_count_to_be_between",
                           "expect_column_values_to_be_in_set"}
    assert failed["expect_table_row_count_to_be_between"].observed_value == str(reached)
    lengths = failed["expect_column_value_lengths_to_be_between"]
    assert lengths.element_count == reached and 0 < lengths.unexpected_count < reached
    assert f"unexpected {lengths.unexpected_count} of {reached} rows" in err
    assert failed["expect_column_values_to_be_in_set"].severity == "warning"
    # The Data Docs site lists every run's validation, not only the latest.
    index = (lake / "_reports" / "data_docs" / "index.html").read_text()
    other = next(x.run_id for x in failed.values())
    assert first["run_id"] in index and other in index


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_airflow_gate_task_fails_and_publish_never_runs(airflow_db, spark, tmp_path, monkeypatch):
    from include.runner import run_pipeline

    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(
        ["A short note about parsing files.", "Another line of plain prose text.",
         "The third document in this tiny table.", "<img src=x onerror=alert(1)> is markup."])]
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    spec = write_spec(pipelines / "qgate.yaml", f"""
version: 1
name: qgate
source: {{path: {src}, format: jsonl, id_field: id}}
steps:
  - op: gx_validate
    params:
      expectations:
        - {{type: expect_table_row_count_to_be_between, kwargs: {{max_value: 3}}}}
        - {{type: expect_column_value_lengths_to_be_between, kwargs: {{column: text, max_value: 10}}}}
output: {{table: gold/qgate}}
""")
    lake = tmp_path / "lake"
    # on_fail: warn records the failure and publishes.
    warned = run_pipeline(str(spec), lake=str(lake), overrides=["gx_validate.on_fail=warn"])
    gate = warned["steps"][0]["stats"]
    assert gate["failed"] == 2 and any("observed 4" in f for f in gate["failures"])
    assert warned["output_rows"] == 4
    # GX renders unexpected values as raw HTML; a document's markup must show as text.
    page = open(gate["data_docs"], encoding="utf-8").read()
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x onerror" not in page
    lh = Lakehouse(lake)
    before = (_commits(lake, "gold/qgate"), _rows(lh, "gold/qgate"))

    monkeypatch.setenv("DATAMILL_PIPELINES_DIR", str(pipelines))
    monkeypatch.setenv("DATAMILL_LAKE", str(lake))
    dag = _dagbag().dags["datamill__qgate"]
    assert [t.task_id for t in dag.tasks] == ["ingest", "s1_gx_validate", "publish"]
    for t in dag.tasks:
        t.retries = 0  # dag.test() would otherwise sit out the retry delays
    dr = dag.test()
    assert dr.state == "failed"
    assert dr.get_task_instance("s1_gx_validate").state == "failed"
    assert dr.get_task_instance("publish").state in ("upstream_failed", None)
    assert (_commits(lake, "gold/qgate"), _rows(lh, "gold/qgate")) == before
    blocked = {r.expectation: r for r in lh.read(QUALITY).collect() if r.run_id == dr.run_id}
    assert {(k, r.success, r.on_fail) for k, r in blocked.items()} == {
        ("expect_table_row_count_to_be_between", False, "block"),
        ("expect_column_value_lengths_to_be_between", False, "block")}
    assert blocked["expect_table_row_count_to_be_between"].observed_value == "4"
