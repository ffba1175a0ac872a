"""A misconfigured LLM stage fails fast with the server's message; a row the
endpoint refuses for its own size is quarantined; answers are cached per endpoint."""
from __future__ import annotations

import asyncio

import pytest
from llm_testkit import llm, rows, run_op

from include.llm.cache import AnswerCache
from include.testing.openai_server import OpenAIServer

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.mark.parametrize("setting,needle", [
    ({"reject_json_schema": True}, "HTTP 400: response_format 'json_schema' is not supported"),
    ({"api_key": "the-right-key"}, "HTTP 401: Incorrect API key provided"),
    ({"models": "other-model"}, "HTTP 404: The model `test-model` does not exist"),
])
def test_a_refused_configuration_fails_the_stage_fast(server, lake, setting, needle):
    from ray_jobs.llm_stage import LLMStageError

    server.configure(**setting)
    params = llm(server, concurrency=4, batch_size=4, max_retries=3)
    with pytest.raises(LLMStageError) as exc:
        run_op("llm_score", rows(60), params, lake)
    msg = str(exc.value)
    assert needle in msg and server.url in msg and "test-model" in msg
    # The first refusal stops the stage: no retries, no pass over all 60 rows;
    # only the requests already in flight (concurrency 4) were sent.
    assert server.stats()["requests"] <= 4
    assert AnswerCache(lake).count() == 0


def test_a_prompt_template_error_fails_before_any_request(server, lake):
    import pyarrow as pa

    from include.llm.answers import Request
    from include.prompts import PromptTemplate
    from include.registry import StepContext, apply_defaults, get_op
    from ray_jobs.engine import to_ray
    from ray_jobs.llm_stage import LLMStageError, run_llm, start_engine

    template = PromptTemplate(name="broken", version=1, system="", user="Rate {{ txet }}",
                              schema={"type": "object", "properties": {}})
    params = apply_defaults(get_op("llm_score").meta, llm(server))
    ctx = StepContext(pipeline="t", run_id="r1", step_index=1, op="llm_score", lake=lake)
    with pytest.raises(LLMStageError, match=r"prompt template error.*'txet' is undefined"):
        run_llm(to_ray(pa.Table.from_pylist(rows(5))), params, ctx,
                Request(template=template, schema=template.schema), start_engine(params))
    assert server.stats().get("requests", 0) == 0


@pytest.mark.parametrize("setting,needle", [
    ({"max_prompt_chars": 600}, "HTTP 400: This model's maximum context length"),
    ({"max_body_bytes": 2500}, "HTTP 413: request body"),
])
def test_a_row_too_long_for_the_endpoint_is_quarantined(server, lake, setting, needle):
    server.configure(**setting)
    data = rows(8)
    data[3]["text"] += " and on" * 300  # this row alone is over the endpoint's limit
    out, ctx = run_op("llm_score", data, llm(server, max_retries=3), lake)
    got = {r["id"]: r for r in out.to_pylist()}
    assert [k for k, r in got.items() if r["_quarantine"]] == ["d003"]
    assert got["d003"]["_quarantine"].startswith(f"llm_request_failed: {needle}")
    assert server.stats()["requests"] == 8  # refused once, not retried
    assert ctx.extras["stats"]["failed"] == 1


def test_client_sorts_refusals_into_configuration_and_row():
    from include.llm.answers import Request
    from include.llm.client import ChatClient, RequestRejected
    from include.prompts import load_template

    t = load_template("llm_score")
    req = Request(template=t, schema=t.schema, max_retries=4, backoff_base_s=0.01)

    async def ask(url, key="k", model="m", text="x"):
        client = ChatClient(url, key, model, 1)
        try:
            return await client.complete([{"role": "user", "content": text}], req)
        finally:
            await client.close()

    with OpenAIServer(api_key="sk", models="m", max_prompt_chars=50) as s:
        for kwargs, status in (({"key": "wrong"}, 401), ({"key": "sk", "model": "nope"}, 404)):
            with pytest.raises(RequestRejected) as exc:
                asyncio.run(ask(s.url, **kwargs))
            assert exc.value.status == status and s.url in str(exc.value)
        with pytest.raises(RequestRejected, match="HTTP 404"):
            asyncio.run(ask(s.url + "/missing", key="sk"))  # a wrong base URL
        out = asyncio.run(ask(s.url, key="sk", text="y" * 80))
        assert out.attempts == 1 and out.error.startswith("HTTP 400: This model's maximum")
        assert s.stats()["requests"] == 3


def test_two_endpoints_with_one_model_name_never_share_answers(server, lake):
    params = llm(server)
    run_op("llm_score", rows(12), params, lake)
    assert server.stats()["requests"] == 12
    with OpenAIServer() as other:
        _, ctx = run_op("llm_score", rows(12), llm(other), lake)
        assert other.stats()["requests"] == 12 and ctx.extras["stats"]["cache_hits"] == 0
    server.reset()
    _, ctx = run_op("llm_score", rows(12), params, lake)
    assert server.stats().get("requests", 0) == 0 and ctx.extras["stats"]["cache_hits"] == 12
    assert AnswerCache(lake).count() == 24
