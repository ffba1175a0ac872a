"""One structured LLM call for the agent (planner, ask, op drafts).

Uses the project's OpenAI-compatible client (``include.llm.client.ChatClient``:
one retry budget shared by HTTP errors and answers that are not valid JSON
for the schema, ``Retry-After`` honoured, exponential back-off with jitter),
the endpoint resolution of the LLM ops (``OPENAI_BASE_URL`` /
``OPENAI_API_KEY`` / ``DATAMILL_LLM_MODEL``, or the Airflow connection
``datamill_llm`` inside a task), temperature 0, ``response_format`` with
the JSON schema, and the LLM ops' answer cache (``include.llm.cache``: a
Delta table in the lakehouse keyed by endpoint, model, template, generation
params and the rendered prompt), so asking the same thing twice sends one request.
"""
from __future__ import annotations

import asyncio
import json
import os
from typing import Any

DEFAULT_MODEL = "smollm2"


class LLMCallError(RuntimeError):
    """The endpoint could not give a valid answer (after the retry budget)."""


def endpoint():
    from include.llm.credentials import LLMConfigError, resolve_engine

    try:
        return resolve_engine(None, os.environ.get("DATAMILL_LLM_MODEL") or DEFAULT_MODEL)
    except LLMConfigError as exc:
        raise LLMCallError(f"--llm openai needs an OpenAI-compatible endpoint: {exc} (for a "
                           "local model: `datamill llm-server --model smollm2` and "
                           "OPENAI_BASE_URL=http://127.0.0.1:8000/v1)") from None


def call(template: str, variables: dict[str, Any], schema: dict[str, Any], *,
         max_tokens: int = 768, max_retries: int | None = None,
         timeout_s: float | None = None) -> tuple[Any, dict[str, Any]]:
    """(parsed answer, call info). Raises ``LLMCallError`` when no valid answer came."""
    from include.config import lake_root
    from include.llm.answers import Request, input_hash
    from include.llm.cache import AnswerCache
    from include.prompts import load_template

    cfg = endpoint()
    tpl = load_template(template)
    req = Request(template=tpl, schema=schema, variables=variables, temperature=0.0,
                  max_tokens=max_tokens,
                  max_retries=int(os.environ.get("DATAMILL_AGENT_LLM_RETRIES", max_retries or 4)),
                  timeout_s=float(timeout_s or os.environ.get("DATAMILL_AGENT_LLM_TIMEOUT", 120)),
                  backoff_base_s=0.2, backoff_cap_s=5.0)
    messages = req.messages({})
    key = input_hash(messages)
    info: dict[str, Any] = {"model": cfg.model, "endpoint": cfg.base_url, "template": tpl.id,
                            "cached": False}
    from include.llm.engine import endpoint_id

    where = endpoint_id(cfg)
    cache = AnswerCache(lake_root())
    try:
        hit = cache.lookup(where, cfg.model, tpl.id, req.params_hash()).get(key)
    except Exception:  # noqa: BLE001 - an unreadable cache only costs a request
        hit = None
    if hit is not None:
        parsed, err = req.validate(hit)
        if err is None:
            return parsed, {**info, "cached": True, "attempts": 0}

    async def go():
        from include.llm.client import ChatClient

        client = ChatClient(cfg.base_url, cfg.api_key, cfg.model, concurrency=1)
        try:
            return await client.complete(messages, req)
        finally:
            await client.close()

    out = asyncio.run(go())
    info.update(attempts=out.attempts, prompt_tokens=out.prompt_tokens,
                completion_tokens=out.completion_tokens,
                latency_ms=round(out.latency_ms, 1), raw=(out.raw or "")[:4000])
    if out.error:
        info["error"] = out.error
        raise LLMCallError(f"the LLM endpoint gave no valid answer after {out.attempts} "
                           f"attempt(s): {out.error}")
    try:
        cache.append([{"endpoint": where, "model": cfg.model, "template": tpl.id, "params_hash": req.params_hash(),
                       "input_hash": key, "answer": json.dumps(out.parsed, sort_keys=True),
                       "prompt_tokens": out.prompt_tokens,
                       "completion_tokens": out.completion_tokens}])
    except Exception:  # noqa: BLE001 - not caching is not a reason to fail the plan
        info["cache_error"] = True
    return out.parsed, info
