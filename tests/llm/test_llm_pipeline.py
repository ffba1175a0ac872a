"""LLM ops from a spec through the runner: Spark -> Ray -> Spark, Delta lakehouse."""
from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.usefixtures("ray_local")


def test_spec_with_llm_steps_conserves_every_row(server, tmp_path):
    from include.lakehouse import LEDGER, QUARANTINE, Lakehouse
    from include.runner import run_pipeline

    src = tmp_path / "src.jsonl"
    lines = [{"id": f"d{i}", "text": f"exercise {i} [difficulty={1 + i % 5}] [score={1 + i % 5}]"}
             for i in range(10)]
    lines[6]["text"] += " [malformed]"
    src.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    engine = {"base_url": server.url, "model": "test-model"}
    fast = {"engine": engine, "backoff_base_s": 0.01, "max_retries": 1}
    spec = {"version": 1, "name": "llm_t",
            "source": {"path": str(src), "format": "jsonl", "id_field": "id", "text_field": "text"},
            "steps": [{"op": "llm_annotate", "params": fast},
                      {"op": "llm_augment", "params": {**fast, "where": "difficulty >= 4", "n": 2}},
                      {"op": "llm_score", "params": {**fast, "threshold": 3}}],
            "output": {"table": "gold/llm_t"}}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    lake = tmp_path / "lake"
    summary = run_pipeline(str(spec_path), lake=str(lake))

    annotate, augment, score = summary["steps"]
    assert annotate["quarantined"] == 1  # d6 never answered validly
    assert augment["added"] == 8  # d3, d4, d8, d9 (difficulty >= 4), two variants each
    assert score["rows_in"] == 9 + 8
    assert summary["output_rows"] + sum(s["removed"] + s["quarantined"] for s in summary["steps"]) \
        == summary["source"]["rows"] + augment["added"]
    assert score["stats"]["requests"] == 17 and annotate["stats"]["template"] == "llm_annotate/v1"

    lh = Lakehouse(lake)
    out = {r["id"]: r.asDict() for r in lh.read("gold/llm_t").collect()}
    assert {"aug:llm_t:s2:d3:0", "aug:llm_t:s2:d3:1"} <= set(out) | {r["doc_id"] for r in
                                                  lh.read(LEDGER).collect()}
    assert all(r["llm_score"] >= 3 for r in out.values())
    q = lh.read(QUARANTINE).where("op = 'llm_annotate'").collect()
    assert [r["doc_id"] for r in q] == ["d6"] and "llm_answer_invalid" in q[0]["error"]
    added = lh.read(LEDGER).where("action = 'added'").collect()
    assert {json.loads(r["detail"])["parent_id"] for r in added} == {"d3", "d4", "d8", "d9"}

