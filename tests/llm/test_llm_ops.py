"""The LLM ops on real Ray against the real local HTTP server, with a real Delta cache."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest
from llm_testkit import llm, rows, run_op

from include.llm.cache import AnswerCache

pytestmark = pytest.mark.usefixtures("ray_local")


def by_id(table: pa.Table) -> dict[str, dict]:
    return {r["id"]: r for r in table.to_pylist()}


def test_no_row_is_lost_under_faults(server, lake):
    data = rows(60)
    for i, r in enumerate(data):
        r["text"] += f" [score={1 + i % 5}]"
    data[7]["text"] += " [malformed]"
    data[13]["text"] += " [malformed]"
    data[21]["text"] += " [fail500]"
    server.configure(rate_429=0.15, retry_after_s=0.05, rate_500=0.1, rate_malformed=0.1,
                     rate_timeout=0.03, hang_s=2, seed=1)
    out, ctx = run_op("llm_score", data, llm(server, threshold=3, max_retries=8, timeout_s=0.5,
                                             concurrency=8), lake)
    got = by_id(out)
    assert sorted(got) == sorted(r["id"] for r in data)  # every row comes back once
    quarantined = {k for k, r in got.items() if r["_quarantine"]}
    removed = {k for k, r in got.items() if r["_reason"]}
    kept = set(got) - quarantined - removed
    assert quarantined == {"d007", "d013", "d021"}
    assert len(kept) + len(removed) + len(quarantined) == 60
    bad = json.loads(got["d007"]["_detail"])
    assert got["d007"]["_quarantine"].startswith("llm_answer_invalid") and bad["attempts"] == 9
    assert bad["raw"].startswith('{"')  # the raw answer is kept for the quarantine table
    assert got["d021"]["_quarantine"].startswith("llm_request_failed: HTTP 500")
    for i, r in enumerate(data):
        row = got[r["id"]]
        if r["id"] in quarantined:
            continue
        assert row["llm_score"] == 1 + i % 5
        assert (row["_reason"] == "llm_score_below_threshold") == (row["llm_score"] < 3)
    detail = json.loads(got["d000"]["_detail"])
    assert detail["score"] == 1 and detail["rationale"] and detail["threshold"] == 3
    stats = ctx.extras["stats"]
    srv = server.stats()
    assert stats["requests"] == srv["requests"] and stats["retries"] > 0
    assert srv["429"] and srv["500"] and srv["timeout"] and srv["malformed"]
    assert stats["removed"] == len(removed) and stats["quarantined"] == 3
    assert set(stats["latency_ms"]) == {"p50", "p90", "p99"}


def test_rerun_sends_zero_requests_and_only_new_prompts_are_asked(server, lake):
    params = llm(server, threshold=2)
    first, _ = run_op("llm_score", rows(20), params, lake)
    assert server.stats()["requests"] == 20
    server.reset()
    again, ctx = run_op("llm_score", rows(20), params, lake)
    assert server.stats().get("requests", 0) == 0
    assert ctx.extras["stats"]["cache_hits"] == 20 and ctx.extras["stats"]["requests"] == 0
    key = ["id", "llm_score", "_reason"]
    assert sorted(again.select(key).to_pylist(), key=str) == \
        sorted(first.select(key).to_pylist(), key=str)
    run_op("llm_score", rows(25), params, lake)  # five new rows
    assert server.stats()["requests"] == 5
    server.reset()
    run_op("llm_score", rows(25), {**params, "rubric": "5 = perfect, 1 = useless"}, lake)
    assert server.stats()["requests"] == 25  # a changed prompt is asked again
    assert AnswerCache(lake).count() == 50


def test_annotate_adds_typed_fields(server, lake):
    data = rows(6)
    for i, r in enumerate(data):
        r["text"] += f" [difficulty={1 + i % 5}] [topic=t{i % 2}]"
    out, _ = run_op("llm_annotate", data, llm(server), lake)
    got = by_id(out)
    assert out.schema.field("difficulty").type == pa.int64()
    assert [got[r["id"]]["difficulty"] for r in data] == [1, 2, 3, 4, 5, 1]
    assert got["d001"]["topic"] == "t1"
    assert json.loads(got["d003"]["llm_annotations"]) == {"difficulty": 4, "topic": "t1"}
    assert all(r["_quarantine"] is None and r["_reason"] is None for r in got.values())


def test_augment_selected_rows_with_lineage(server, lake):
    data = [{**r, "difficulty": 1 + i % 5} for i, r in enumerate(rows(10))]
    data[9]["text"] += " [malformed]"  # difficulty 5: selected, never answered validly
    out, ctx = run_op("llm_augment", data, llm(server, where="difficulty >= 4", n=2,
                                               max_retries=1), lake)
    got = by_id(out)
    parents = [r["id"] for r in data if r["difficulty"] >= 4 and r["id"] != "d009"]
    assert parents == ["d003", "d004", "d008"]
    created = {k: r for k, r in got.items() if r["_parent_id"]}
    assert {k for k, r in created.items() if not r["_quarantine"]} == \
        {f"aug:t:s1:{p}:{j}" for p in parents for j in range(2)}
    for k, r in created.items():
        assert r["_parent_id"] == k.split(":")[3]
    assert created["aug:t:s1:d009:failed"]["_quarantine"].startswith("llm_answer_invalid")
    assert all(got[r["id"]]["_parent_id"] is None and got[r["id"]]["_reason"] is None
               for r in data)  # every input row is kept
    assert out.num_rows == 10 + 6 + 1
    assert server.stats()["requests"] == 4 + 1  # unselected rows are never sent
    assert ctx.extras["stats"]["added"] == 7


def test_synthesize_rows_from_seeds(server, lake):
    seeds = ["algebra word problems", {"id": "geo", "prompt": "geometry [malformed]"}]
    out, _ = run_op("llm_synthesize", rows(2), llm(server, seeds=seeds, n=3, max_retries=0), lake)
    got = by_id(out)
    made = {k: r for k, r in got.items() if r["_parent_id"] and not r["_quarantine"]}
    assert len(made) == 3
    sid = next(iter(made.values()))["_parent_id"].split(":", 1)[1]
    assert set(made) == {f"synth:t:s1:{sid}:{i}" for i in range(3)}
    assert all(r["_parent_id"] == f"synth:{sid}" and r["text"] for r in made.values())
    assert json.loads(made[f"synth:t:s1:{sid}:0"]["_detail"])["seed"] == "algebra word problems"
    assert got["synth:t:s1:geo:failed"]["_parent_id"] == "synth:geo"
    assert got["synth:t:s1:geo:failed"]["_quarantine"]
    assert got["d000"]["_parent_id"] is None and got["d001"]["_quarantine"] is None


def test_rewrite_keeps_the_original_in_the_detail(server, lake):
    data = rows(4)
    data[2]["text"] += " [malformed]"
    out, ctx = run_op("llm_rewrite", data, llm(server, max_retries=1), lake)
    got = by_id(out)
    for r in data:
        row = got[r["id"]]
        if r["id"] == "d002":
            assert row["_quarantine"] and row["text"] == r["text"] and row["_changed"] is None
            continue
        assert row["_changed"] == "llm_rewrite" and row["text"] != r["text"]
        assert json.loads(row["_detail"]) == {"before": r["text"]}
    assert ctx.extras["stats"]["changed"] == 3


def test_bad_where_fails_before_any_request(server, lake):
    from ray_jobs.where import WhereError

    with pytest.raises(WhereError, match="unknown column"):
        run_op("llm_augment", rows(3), llm(server, where="difficulty >= 4"), lake)
    assert server.stats().get("requests", 0) == 0


def test_an_endpoint_outage_fails_the_stage_and_keeps_the_answers(server, lake):
    from ray_jobs.llm_stage import LLMStageError

    # 10 requests answered, then 503s for longer than the retries last: rows
    # failing because the endpoint does are not quarantined, the stage fails.
    server.configure(outage_after=10, outage_s=30)
    params = llm(server, concurrency=2, batch_size=2, max_retries=1, max_failed_fraction=0.1)
    with pytest.raises(LLMStageError, match=r"rows failed at the endpoint \(last: HTTP 503"):
        run_op("llm_score", rows(40), params, lake)
    kept = AnswerCache(lake).count()
    assert 0 < kept <= 10  # what was answered before the outage is cached
    server.configure(outage_after=0)  # the endpoint is back
    server.reset()
    out, ctx = run_op("llm_score", rows(40), params, lake)
    assert out.num_rows == 40 and out.column("_quarantine").null_count == 40
    assert ctx.extras["stats"]["cache_hits"] == kept and server.stats()["requests"] == 40 - kept


def test_generated_ids_are_namespaced_by_pipeline_and_step(server, lake):
    """Before: every augment of d000 was d000-aug0, whichever step or pipeline made it."""
    made = []
    for pipeline, step in (("a", 2), ("a", 4), ("b", 2)):
        for name, params in (("llm_augment", {}), ("llm_synthesize", {"seeds": ["s"]})):
            out, _ = run_op(name, rows(2), llm(server, **params), lake, pipeline=pipeline,
                            step=step)
            made += [r["id"] for r in out.to_pylist() if r["_parent_id"]]
    assert len(made) == 3 * (2 + 1) and len(set(made)) == len(made)
    assert "aug:a:s4:d001:0" in made and any(m.startswith("synth:b:s2:") for m in made)
