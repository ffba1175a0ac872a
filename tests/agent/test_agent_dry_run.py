"""The dry run: a sample of the real source through the real engines (Spark, Delta)."""
from __future__ import annotations

import json

from include.agent.graph import plan
from include.agent.review_store import ReviewStore


def test_dry_run_funnel_on_a_sample_and_the_llm_steps_it_could_not_run(spark, docs_source):
    st = plan("Normalize the text, remove documents with fewer than 40 words, remove exact "
              "duplicates, and score each with an LLM judge", source=str(docs_source),
              name="dry", dry_run_rows=13)
    assert st["status"] == "ok", st.get("refusal")
    assert [s["op"] for s in st["spec"]["steps"]] == ["normalize", "quality_filter",
                                                      "exact_dedup", "llm_score"]
    dr = st["dry_run"]
    # No LLM endpoint here: the scan steps ran, the LLM step is listed as not run.
    assert dr["status"] == "partial" and dr["not_run"] == ["llm_score"], dr
    assert dr["rows"] == 13 and dr["source_rows"] == 13 and dr["conservation_ok"]
    funnel = {f["op"]: f for f in dr["funnel"]}
    assert list(funnel) == ["normalize", "quality_filter", "exact_dedup"]
    assert funnel["normalize"]["rows_in"] == 13
    # The sample is the source's first records: the 13th is an exact copy of the first
    # (both pass the quality rules), and exact_dedup removes it.
    assert funnel["quality_filter"]["removed"] == 0 and funnel["exact_dedup"]["removed"] == 1
    assert dr["output_rows"] == funnel["exact_dedup"]["kept"]
    assert dr["sample_row"]["id"].startswith("d")
    # The prompt shown to the reviewer is rendered for that sample row.
    prompt = st["prompts"][0]
    assert prompt["op"] == "llm_score" and prompt["sample_id"] == dr["sample_row"]["id"]
    assert dr["sample_row"]["text"][:60] in prompt["messages"][-1]["content"]

    path = ReviewStore().save_round(st)
    saved = json.loads((path / "dry_run.json").read_text())
    assert saved["funnel"] == dr["funnel"]
    md = (path / "plan.md").read_text()
    assert "| 3 | exact_dedup |" in md and "| - | llm_score | not run |" in md

