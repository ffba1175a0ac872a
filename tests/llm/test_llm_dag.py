"""LLM specs as Airflow DAGs (the DAG factory, dag.test()) against the real
local HTTP server: the gold table, conservation and the run summary's LLM
figures; and a real Airflow retry of a stage whose endpoint went away, which
resumes from the answer cache."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml

from include.config import PROJECT_ROOT
from include.lakehouse import LEDGER, QUARANTINE, RUNS, Lakehouse
from include.llm.cache import AnswerCache
from tests.helpers import dag_test

pytestmark = pytest.mark.usefixtures("ray_local", "airflow_db")

# (id, text, score the server will give); a1/a2 are paraphrases.
DOCS = [
    ("a1", "The cat sat on the mat in the warm afternoon sun.", 4),
    ("a2", "In the warm afternoon sun, the cat was sitting on the mat.", 4),
    ("b1", "To reset your password, open the settings page and click 'Forgot password'.", 4),
    ("c1", "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.", 2),
    ("c2", "The recipe calls for two cups of flour, one egg and a pinch of salt.", 3),
    ("c3", "Python lists are mutable, while tuples cannot be changed after they are created.", 5),
    ("c4", "The train to Berlin leaves from platform nine at half past seven.", 1),
    ("c5", "The stock market fell sharply on Monday after weak economic data was released.", 4),
]


def _dag(tmp_path, monkeypatch, spec: dict, rows: list[dict]):
    """The DAG the factory builds for ``spec`` over ``rows``; (dag, lake)."""
    from airflow.dag_processing.dagbag import DagBag

    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"version": 1, "source": {"path": str(src), "format": "jsonl", "id_field": "id",
                                     "text_field": "text"}, **spec}
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    lake = tmp_path / "lake"
    # dag.test() re-parses the dags folder, so the spec must be found there.
    monkeypatch.setenv("DATAMILL_PIPELINES_DIR", str(pipelines))
    monkeypatch.setenv("DATAMILL_LAKE", str(lake))
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[f"datamill__{spec['name']}"], lake


def _summary(lake, spark) -> dict:
    runs = Lakehouse(lake).read(RUNS).collect()
    assert len(runs) == 1
    return json.loads(runs[0]["summary"])


def test_llm_spec_runs_as_a_dag(server, tmp_path, monkeypatch, spark, capfd):
    rows = [{"id": i, "text": f"{t} [score={s}]"} for i, t, s in DOCS]
    rows[-1]["text"] += " [malformed]"  # c5: never a valid annotation
    llm = {"engine": {"base_url": server.url, "model": "test-model"}, "backoff_base_s": 0.01,
           "max_retries": 1, "concurrency": 4, "batch_size": 2}
    spec = {"name": "llm_dag", "output": {"table": "gold/llm_dag"}, "steps": [
        {"op": "llm_annotate", "params": llm},
        {"op": "llm_score", "params": {**llm, "threshold": 3, "price_per_1m_input_tokens": 2.5,
                                       "price_per_1m_output_tokens": 10}},
        {"op": "semantic_dedup", "params": {"threshold": 0.8}}]}
    dag, lake = _dag(tmp_path, monkeypatch, spec, rows)
    assert [t.task_id for t in dag.tasks] == [
        "ingest", "s1_llm_annotate", "s2_llm_score", "s3_semantic_dedup", "publish"]
    dag_test(dag, capfd)

    lh = Lakehouse(lake)
    gold = {r["id"]: r.asDict() for r in lh.read("gold/llm_dag").collect()}
    assert set(gold) == {"a1", "b1", "c2", "c3"}
    assert [gold[k]["llm_score"] for k in ("a1", "b1", "c2", "c3")] == [4, 4, 3, 5]
    assert all(json.loads(r["llm_annotations"])["difficulty"] in range(1, 6)
               for r in gold.values())
    removed = {r["doc_id"]: (r["op"], r["rule"]) for r in
               lh.read(LEDGER).where("action = 'removed'").collect()}
    assert removed == {"c1": ("llm_score", "llm_score_below_threshold"),
                       "c4": ("llm_score", "llm_score_below_threshold"),
                       "a2": ("semantic_dedup", "semantic_duplicate")}
    [q] = lh.read(QUARANTINE).collect()
    assert (q["doc_id"], q["op"]) == ("c5", "llm_annotate")
    assert q["error"].startswith("llm_answer_invalid")

    summary = _summary(lake, spark)
    assert summary["conservation"]["ok"] and summary["output_rows"] == 4
    assert summary["source"]["rows"] == 8
    annotate, score, dedup = summary["steps"]
    assert (annotate["quarantined"], score["removed"], dedup["removed"]) == (1, 2, 1)
    # The run summary carries each LLM stage's requests, tokens, latency and cost.
    assert annotate["stats"]["requests"] == 7 + 2 and score["stats"]["requests"] == 7
    assert server.stats()["requests"] == 16
    for stats in (annotate["stats"], score["stats"]):
        assert stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0
        assert set(stats["latency_ms"]) == {"p50", "p90", "p99"}
        assert stats["latency_ms"]["p50"] <= stats["latency_ms"]["p99"]
    assert score["stats"]["cost_usd"] == pytest.approx(
        (score["stats"]["prompt_tokens"] * 2.5 + score["stats"]["completion_tokens"] * 10) / 1e6)
    assert annotate["stats"]["cost_usd"] == 0  # no prices given


def test_airflow_retry_resumes_from_the_cache(server, tmp_path, monkeypatch, spark, capfd):
    n = 40
    rows = [{"id": f"d{i:02d}", "text": f"document {i} [score={1 + i % 5}]"} for i in range(n)]
    params = {"engine": {"base_url": server.url, "model": "test-model"}, "threshold": 1,
              "concurrency": 4, "batch_size": 4, "max_retries": 1, "backoff_base_s": 0.01,
              "backoff_cap_s": 0.02, "max_failed_fraction": 0}
    spec = {"name": "llm_retry", "output": {"table": "gold/llm_retry"},
            "steps": [{"op": "llm_score", "params": params}]}
    dag, lake = _dag(tmp_path, monkeypatch, spec, rows)
    task = dag.get_task("s1_llm_score")
    assert task.retries >= 1  # the factory's own retry policy
    # The factory waits 30 s (exponential) before a retry; the endpoint here is
    # back after 1 s, so the test waits 3 s instead of idling.
    task.retry_delay = timedelta(seconds=3)
    # The endpoint answers 12 requests, then 503s everything for a second.
    server.configure(outage_after=12, outage_s=1.0)
    dr = dag_test(dag, capfd)

    ti = dr.get_task_instance("s1_llm_score")
    assert ti.try_number == 2  # the first try failed, Airflow's retry succeeded
    retry_started = ti.start_date.timestamp()
    first = [r for r in server.log if r["t"] < retry_started]
    second = [r for r in server.log if r["t"] >= retry_started]
    assert {r["outcome"] for r in first} == {"ok", "outage"}

    cache = AnswerCache(lake)
    from deltalake import DeltaTable

    entries = DeltaTable(cache.path).to_pyarrow_table().to_pylist()
    kept = {e["input_hash"] for e in entries if e["created_at"].timestamp() < retry_started}
    asked = {r["messages_sha256"] for r in server.log}
    assert len(asked) == n and 0 < len(kept) < n  # the first try's answers were kept
    # The retry asked exactly the prompts with no cached answer, each once.
    assert sorted(r["messages_sha256"] for r in second) == sorted(asked - kept)
    assert {r["outcome"] for r in second} == {"ok"}
    # One cached answer per prompt: nothing asked twice was stored twice.
    assert sorted(e["input_hash"] for e in entries) == sorted(asked)

    gold = Lakehouse(lake).read("gold/llm_retry").collect()
    assert sorted(r["id"] for r in gold) == [r["id"] for r in rows]  # none lost, none twice
    assert {r["id"]: r["llm_score"] for r in gold} == {r["id"]: 1 + i % 5
                                                        for i, r in enumerate(rows)}
    summary = _summary(lake, spark)
    assert summary["conservation"]["ok"] and summary["output_rows"] == n
    [score] = summary["steps"]
    assert score["stats"]["cache_hits"] == len(kept)
    assert score["stats"]["requests"] == len(second) == n - len(kept)


def test_every_ray_op_runs_as_a_dag(server, tmp_path, monkeypatch, spark, capfd):
    """The shipped example spec (all seven Ray ops, embedded defaults) as a DAG,
    on the first 30 bundled docstrings, the endpoint from $OPENAI_BASE_URL."""
    from tests.helpers import run_cli

    example = yaml.safe_load((PROJECT_ROOT / "ray_jobs/examples/llm_funnel.yaml").read_text())
    with open(PROJECT_ROOT / example["source"]["path"]) as f:
        rows = [json.loads(next(f)) for _ in range(30)]
    spec = {k: v for k, v in example.items() if k not in ("version", "source")}
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    lake = tmp_path / "lake"
    # the example's embed_quality_score needs a model: the documented first step
    res = run_cli("quality-model", "train", "--lake", str(lake))
    assert res.returncode == 0, res.stderr
    dag, lake = _dag(tmp_path, monkeypatch, spec, rows)
    ops = [s["op"] for s in example["steps"]]
    assert [t.task_id for t in dag.tasks] == [
        "ingest", *[f"s{i}_{op}" for i, op in enumerate(ops, 1)], "publish"]
    dag_test(dag, capfd)

    summary = _summary(lake, spark)
    assert summary["conservation"]["ok"], summary["conservation"]
    assert [s["op"] for s in summary["steps"]] == ops
    by_op = {s["op"]: s for s in summary["steps"]}
    assert by_op["llm_synthesize"]["added"] == 4  # 2 seeds x n=2
    assert by_op["llm_score"]["stats"]["requests"] > 0
    lh = Lakehouse(lake)
    gold = {r["id"]: r.asDict() for r in lh.read("gold/llm_funnel").collect()}
    assert len(gold) == summary["output_rows"] > 0
    # every op that adds columns left them on the published rows
    assert {"quality_score", "llm_annotations", "llm_score"} <= set(next(iter(gold.values())))
    added = lh.read(LEDGER).where("action = 'added'").collect()
    parents = {json.loads(r["detail"])["parent_id"] for r in added}
    assert {"synth:ctx_managers", "synth:generators"} <= parents  # synthesized: their seed
    assert any(r["op"] == "llm_rewrite" for r in lh.read(LEDGER).collect())


def test_a_ray_task_attaches_to_the_warm_ray_head(server, tmp_path, monkeypatch, spark, capfd):
    """`make airflow`'s warm Ray head: with the connection its supervisor exports
    (include/local_services.airflow_env), a DAG's Ray task runs on that head's
    workers instead of starting a Ray of its own."""
    import ray

    from include.local_services import RayHead, airflow_env

    rows = [{"id": f"d{i}", "text": f"document {i} [score={1 + i % 5}]"} for i in range(12)]
    params = {"engine": {"base_url": server.url, "model": "test-model"}, "threshold": 3,
              "max_retries": 1, "backoff_base_s": 0.01}
    spec = {"name": "llm_warm_ray", "output": {"table": "gold/llm_warm_ray"},
            "steps": [{"op": "llm_score", "params": params}]}
    dag, lake = _dag(tmp_path, monkeypatch, spec, rows)
    # The hook exports the address for the engine; restored (unset) afterwards.
    monkeypatch.setenv("DATAMILL_RAY_ADDRESS", "")
    monkeypatch.delenv("DATAMILL_RAY_ADDRESS")
    ray.shutdown()  # this worker's local Ray (later tests start their own again)
    with RayHead(tmp_path / "ray", num_cpus=2) as head:
        for k, v in airflow_env(None, None, head).items():
            monkeypatch.setenv(k, v)
        try:
            dag_test(dag, capfd)
            # the head's GCS (Ray names the node by its own address, not 127.0.0.1)
            gcs = ray.get_runtime_context().gcs_address
            assert gcs.rsplit(":", 1)[1] == str(head.port), (gcs, head.address)
        finally:
            ray.shutdown()
        workers = list((head.temp_dir / "session_latest" / "logs").glob("python-core-worker-*"))
        assert workers, "no worker of the warm head ran the task"
    gold = {r["id"]: r["llm_score"] for r in Lakehouse(lake).read("gold/llm_warm_ray").collect()}
    assert gold == {r["id"]: 1 + i % 5 for i, r in enumerate(rows) if 1 + i % 5 >= 3}
