"""The local OpenAI-compatible server and the retrying client, over real HTTP."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from include.llm.answers import Request
from include.llm.client import ChatClient
from include.prompts import load_template
from include.testing.openai_server import expected_answer

SCHEMA = load_template("llm_score").schema


def chat(server, content: str, schema=SCHEMA):
    body = {"model": "m", "messages": [{"role": "user", "content": content}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "s", "schema": schema}}}
    return httpx.post(f"{server.url}/chat/completions", json=body, timeout=10)


def test_answers_are_deterministic_and_follow_markers(server):
    a, b = chat(server, "rate this [score=2]"), chat(server, "rate this [score=2]")
    answer = json.loads(a.json()["choices"][0]["message"]["content"])
    assert answer["score"] == 2 and isinstance(answer["rationale"], str)
    assert a.json()["choices"] == b.json()["choices"]
    assert answer == expected_answer([{"role": "user", "content": "rate this [score=2]"}], SCHEMA)
    assert a.json()["usage"]["prompt_tokens"] > 0
    assert server.stats()["requests"] == 2


def test_injected_429_carries_retry_after_and_500s(server):
    server.configure(rate_429=1.0, retry_after_s=1.5)
    r = chat(server, "x")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1.5"
    server.configure(rate_429=0, rate_500=1.0)
    assert chat(server, "y").status_code == 500
    server.configure(rate_500=0)
    assert chat(server, "z [fail500]").status_code == 500
    bad = chat(server, "w [malformed]").json()["choices"][0]["message"]["content"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad)


def request(**kw) -> Request:
    t = load_template("llm_score")
    return Request(template=t, schema=t.schema, backoff_base_s=0.01, backoff_cap_s=0.05, **kw)


def complete(server, text: str, req: Request, concurrency: int = 4):
    async def go():
        client = ChatClient(server.url, "k", "m", concurrency)
        try:
            return await client.complete([{"role": "user", "content": text}], req)
        finally:
            await client.close()

    return asyncio.run(go())


def test_client_honours_retry_after(server):
    server.configure(rate_429=0.999, retry_after_s=0.4)
    t0 = time.perf_counter()
    out = complete(server, "slow down [score=4]", request(max_retries=1))
    assert out.attempts == 2 and time.perf_counter() - t0 >= 0.4
    assert out.error and out.error.startswith("HTTP 429")
    server.configure(rate_429=0.5)
    out = complete(server, "eventually [score=4]", request(max_retries=8))
    assert out.error is None and out.parsed["score"] == 4
    assert out.attempts == server.stats()["requests"] - 2


def test_client_retries_malformed_then_reports_raw_answer(server):
    out = complete(server, "never valid [malformed]", request(max_retries=2))
    assert out.attempts == 3 and out.parsed is None
    assert out.error.startswith("malformed answer: invalid JSON")
    assert out.raw and out.raw.startswith('{"')
    server.reset()
    server.configure(rate_malformed=0.6, seed=3)
    out = complete(server, "sometimes valid [score=5]", request(max_retries=10))
    assert out.error is None and out.parsed["score"] == 5


def test_client_times_out_and_retries(server):
    server.configure(rate_timeout=0.999, hang_s=3)
    out = complete(server, "hangs", request(max_retries=1, timeout_s=0.3))
    assert out.attempts == 2 and out.error == "timeout after 0.3s"


def test_client_does_not_retry_a_bad_request():
    from include.llm.client import RequestRejected
    from include.testing.openai_server import OpenAIServer

    # A wrong URL: 404 is final, asking again cannot help, and it says nothing
    # about the row, so the client raises instead of returning a row error.
    with OpenAIServer() as s:
        req = request(max_retries=5)

        async def go():
            client = ChatClient(s.url + "/missing", "k", "m", 1)
            try:
                return await client.complete([{"role": "user", "content": "x"}], req)
            finally:
                await client.close()

        with pytest.raises(RequestRejected, match="HTTP 404"):
            asyncio.run(go())
