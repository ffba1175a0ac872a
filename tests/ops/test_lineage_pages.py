"""OpenLineage from every datamill task, and the Lineage and Runs pages.

``dag.test()`` runs a pipeline with the provider's file transport (as
``make airflow`` configures it); every task must give a COMPLETE event with
its datasets and datamill's facets, whose numbers agree with the run's
records. Then a real api-server serves the plugin over that lakehouse and
Chromium looks at both pages, as a person would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.browser import AirflowServices, artefact, browser, login, plugin_frame
from tests.helpers import ROOT, clean_texts, write_spec

pytestmark = pytest.mark.timeout(1500)

SPEC = """
version: 1
name: lin
source: {{path: {src}, format: jsonl, id_field: id, text_field: text}}
steps:
  - op: normalize
  - op: quality_filter
    params: {{min_words: 40}}
  - op: pii_redact
  - op: exact_dedup
  - op: gx_validate
    params:
      expectations:
        - {{type: expect_column_values_to_not_be_null, kwargs: {{column: text}}}}
        - {{type: expect_column_value_lengths_to_be_between, kwargs: {{column: text, min_value: 1000000}}}}
      on_fail: warn
output: {{table: gold/lin}}
"""
TASKS = ["ingest", "s1_normalize__s2_quality_filter__s3_pii_redact", "s4_exact_dedup",
         "s5_gx_validate", "publish"]


DAG_TEST = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.openlineage.plugins.openlineage import OpenLineageProviderPlugin
assert OpenLineageProviderPlugin.listeners, "OpenLineage provider disabled"
dag = DagBag(dag_folder=sys.argv[1]).dags["datamill__lin"]
assert [t.task_id for t in dag.tasks] == json.loads(sys.argv[2]), [t.task_id for t in dag.tasks]
run = dag.test()
states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print("DAG_TEST_RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id,
                                       "tasks": states}), flush=True)
"""


@pytest.fixture(scope="module")
def lineage_run(airflow_db, tmp_path_factory):
    work = tmp_path_factory.mktemp("lineage")
    src, pipelines, lake = work / "src", work / "pipelines", work / "lake"
    for d in (src, pipelines, lake / "_system/lineage"):
        d.mkdir(parents=True)
    texts = clean_texts(12)
    rows = [{"id": f"d{i:02d}", "text": t} for i, t in enumerate(texts)]
    rows[3]["text"] += " Mail jane.doe@example.org for details."
    rows.append({"id": "dup", "text": texts[0]})          # exact copy of d00
    rows.append({"id": "short", "text": "Too short to keep."})
    (src / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    write_spec(pipelines / "lin.yaml", SPEC.format(src=src))
    events = lake / "_system/lineage/events.jsonl"
    # A metadata DB of its own: the session's DB is shared with the real schedulers
    # and dag-processors of other tests' Airflow stacks, whose dag-processor marks this
    # DAG stale (not in its pipelines folder) and whose scheduler then deactivates
    # its Asset, failing the publish task ("inactive assets in its outlets").
    db_url = f"sqlite:///{work / 'airflow.db'}"
    env = dict(os.environ, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=db_url)
    res = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    # A fresh interpreter: the provider reads its transport when Airflow loads
    # plugins, which an earlier test in this process may already have done.
    env = dict(env, DATAMILL_PIPELINES_DIR=str(pipelines), DATAMILL_LAKE=str(lake),
               AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
                   {"type": "file", "log_file_path": str(events), "append": True}),
               AIRFLOW__OPENLINEAGE__NAMESPACE="datamill",
               AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD="True")
    res = subprocess.run([sys.executable, "-c", DAG_TEST, str(ROOT / "dags"), json.dumps(TASKS)],
                         env=env, capture_output=True, text=True, timeout=1200, cwd=str(ROOT))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("DAG_TEST_RESULT "))
    run = json.loads(line.split(" ", 1)[1])
    # dag.test() logs each task to stdout: a failed task's traceback is there.
    assert run["state"] == "success", (run["tasks"], res.stdout[-6000:])
    evs = [json.loads(line) for line in events.read_text().splitlines()]
    return {"lake": lake, "src": src, "run_id": run["run_id"], "events": evs, "db_url": db_url}


def _complete(evs, task):
    found = [e for e in evs if e["eventType"] == "COMPLETE"
             and e["job"]["name"] == f"datamill__lin.{task}"]
    assert len(found) == 1, (task, [e["job"]["name"] for e in evs])
    return found[0]


def test_every_task_completes_with_its_datasets(lineage_run):
    lake, evs = lineage_run["lake"], lineage_run["events"]
    for task in TASKS:
        e = _complete(lineage_run["events"], task)
        assert e["inputs"] and e["outputs"], task
        for d in e["inputs"] + e["outputs"]:
            assert d["namespace"] == "file" and os.path.isabs(d["name"]), d
        dm = e["run"]["facets"]["datamill"]
        assert dm["run_id"] == lineage_run["run_id"] and dm["task"] == task
    names = lambda e, k: [d["name"] for d in e[k]]  # noqa: E731
    assert names(_complete(evs, "ingest"), "inputs") == [str(lineage_run["src"])]
    assert str(lake / "bronze/lin") in names(_complete(evs, "ingest"), "outputs")
    assert names(_complete(evs, "publish"), "outputs") == [str(lake / "gold/lin")]
    # the DAG run itself completes too (the provider's own event)
    assert any(e["eventType"] == "COMPLETE" and e["job"]["name"] == "datamill__lin" for e in evs)


def test_facets_carry_the_runs_numbers(lineage_run):
    from include.quality.gate import QUALITY
    from include.runs import read_system, run_record, step_rows

    lake, evs, run_id = lineage_run["lake"], lineage_run["events"], lineage_run["run_id"]
    steps = {s["step_index"]: s for s in step_rows(lake, "lin", run_id)}
    fused = _complete(evs, TASKS[1])
    funnel = fused["run"]["facets"]["datamill"]["steps"]
    assert [(f["op"], f["rows_in"], f["kept"], f["removed"], f["quarantined"]) for f in funnel] == \
        [(steps[i]["op"], steps[i]["rows_in"], steps[i]["kept"], steps[i]["removed"],
          steps[i]["quarantined"]) for i in (1, 2, 3)]
    assert funnel[1]["removed"] >= 1   # 'short' fails min_words
    silver = next(d for d in fused["outputs"] if d["name"].endswith("03_pii_redact"))
    assert silver["outputFacets"]["outputStatistics"]["rowCount"] == steps[3]["kept"]
    assert {"id", "text"} <= {f["name"] for f in silver["facets"]["schema"]["fields"]}
    text = silver["facets"]["columnLineage"]["fields"]["text"]
    assert [(f["name"], f["field"]) for f in text["inputFields"]] == [(str(lake / "bronze/lin"), "text")]
    tr = text["inputFields"][0]["transformations"][0]
    assert tr["masking"] is True and "pii_redact" in tr["description"] and "normalize" in tr["description"]

    publish = _complete(evs, "publish")
    record = run_record(lake, "lin", run_id)
    gold = publish["outputs"][0]
    assert gold["outputFacets"]["outputStatistics"]["rowCount"] == record["summary"]["output_rows"]
    assert gold["facets"]["version"]["datasetVersion"] == str(record["output_version"])
    assert publish["run"]["facets"]["datamill"]["output"]["conservation"]["ok"] is True

    gate = _complete(evs, "s5_gx_validate")
    dq = gate["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    recorded = read_system(lake, QUALITY, pipeline="lin", run_ids=[run_id])
    assert len(dq) == len(recorded) >= 2
    assert {a["assertion"]: a["success"] for a in dq}["expect_column_value_lengths_to_be_between"] \
        is False   # on_fail: warn: the run went on, the assertion says it failed
    assert all(a["assertion"] != "expect_column_values_to_not_be_null" or a["success"] for a in dq)


@pytest.fixture(scope="module")
def af(lineage_run, tmp_path_factory):
    with AirflowServices(tmp_path_factory.mktemp("af_pages"), db_url=lineage_run["db_url"],
                         env={"DATAMILL_LAKE": str(lineage_run["lake"])}) as services:
        yield services


def test_lineage_page(af, lineage_run):
    status, body = af.request("GET", "/datamill/lineage/api/lineage?table=gold/lin")
    assert status == 200, body
    run = next(r for r in body["runs"] if r["run_id"] == lineage_run["run_id"])
    assert [t["task"] for t in run["tasks"]] == TASKS
    assert all(t["state"] == "COMPLETE" for t in run["tasks"]) and run["dag_state"] == "COMPLETE"
    with browser(height=2000) as b:
        page = b.new_page()
        login(page, af, "viewer")
        page.goto(af.url("/plugin/datamill-lineage"))
        frame = plugin_frame(page)
        frame.wait_for_selector(".lineage-run table", timeout=90_000)
        text = frame.inner_text("#runs")
        assert all(t in text for t in TASKS) and "gold/lin" in text and "bronze/lin" in text
        assert "quality 1/" in text   # the gate's assertions, one of them failed
        frame.fill("#doc_id", "short")
        frame.click("#trace-form button")
        frame.wait_for_selector("#trace table", timeout=300_000)
        trace = frame.inner_text("#trace")
        assert "quality_filter" in trace and "removed" in trace
        page.screenshot(path=artefact("lineage_page.png"), full_page=True)


def test_runs_page(af, lineage_run):
    with browser() as b:
        page = b.new_page()
        login(page, af, "viewer")
        page.goto(af.url("/plugin/datamill-runs"))
        frame = plugin_frame(page)
        frame.wait_for_selector(f".run[data-run-id='{lineage_run['run_id']}'] .funnel",
                                timeout=90_000)
        card = frame.locator(f".run[data-run-id='{lineage_run['run_id']}']")
        funnel = card.locator(".funnel").inner_text()
        assert all(op in funnel for op in ("source", "normalize", "quality_filter", "pii_redact",
                                            "exact_dedup", "gx_validate"))
        assert "quality_filter / min_words" in card.locator(".reasons").inner_text()
        assert "1: success" in card.locator(".tries").inner_text()
        assert card.locator("a.lineage-link").count() == 1
        page.screenshot(path=artefact("runs_page.png"), full_page=True)
        card.locator("a.lineage-link").click()   # to this run's lineage
        frame.wait_for_selector(f".lineage-run[data-run-id='{lineage_run['run_id']}']",
                                timeout=90_000)
        assert frame.locator(".lineage-run").count() == 1
