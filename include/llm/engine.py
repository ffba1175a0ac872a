"""LLM engines behind one interface, picked once from the resolved config.

``engine.generate(ds, request, cached) -> ds`` takes a Ray Dataset of rows,
renders each row's prompt, answers it (from ``cached`` when the prompt's hash
is there, else from the model) and returns every row with the result columns
of ``include.llm.answers.RESULT_COLUMNS``. It never drops a row: a row whose
answer stays invalid after the retry budget comes back with ``_llm_error``
and the raw answer.

- ``OpenAIEngine``: any OpenAI-compatible endpoint, from a warm actor pool
  (``map_batches`` with a callable class); each actor keeps one HTTP
  connection pool and runs many requests concurrently on its event loop.
- ``VLLMEngine`` (``include.llm.vllm_engine``): in-cluster GPU engines through
  ``ray.data.llm``; imported only when chosen.
"""
from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pyarrow as pa

from include.llm.answers import RESULT_COLUMNS, Request, input_hash
from include.llm.credentials import EngineConfig


class LLMEngine:
    def __init__(self, config: EngineConfig, *, concurrency: int = 8, workers: int = 1,
                 batch_size: int = 32, rate_limit_rps: float = 0.0):
        self.config = config
        self.concurrency = max(1, int(concurrency))
        self.workers = max(1, int(workers))
        self.batch_size = max(1, int(batch_size))
        self.rate_limit_rps = float(rate_limit_rps or 0.0)

    def generate(self, ds, request: Request, cached: dict[str, str]):  # pragma: no cover
        raise NotImplementedError


def make_engine(config: EngineConfig, **kwargs: Any) -> LLMEngine:
    if config.kind == "vllm":
        from include.llm.vllm_engine import VLLMEngine

        return VLLMEngine(config, **kwargs)
    return OpenAIEngine(config, **kwargs)


def result_columns(batch: pa.Table, results: list[dict[str, Any]]) -> pa.Table:
    """``batch`` with the result columns appended (input columns keep their types)."""
    for name, typ in RESULT_COLUMNS.items():
        values = [r.get(name) for r in results]
        arr = pa.array(values, type=pa.type_for_alias(typ))
        if name in batch.column_names:
            batch = batch.set_column(batch.column_names.index(name), name, arr)
        else:
            batch = batch.append_column(name, arr)
    return batch


def render(row: dict[str, Any], request: Request, cached: dict[str, str]
           ) -> tuple[list[dict[str, str]] | None, dict[str, Any] | None]:
    """(messages to send, None) or (None, finished result: cache hit or render error)."""
    try:
        messages = request.messages(row)
    except Exception as exc:  # noqa: BLE001 - a template that cannot render this row
        return None, {"_llm_error": f"prompt template error: {exc}", "_llm_attempts": 0,
                      "_llm_cached": False}
    key = input_hash(messages)
    if key in cached:
        return None, {"_llm_key": key, "_llm_answer": cached[key], "_llm_parsed": cached[key],
                      "_llm_attempts": 0, "_llm_prompt_tokens": 0,
                      "_llm_completion_tokens": 0, "_llm_cached": True}
    return messages, {"_llm_key": key}


class OpenAIWorker:
    """A warm actor: one client, one connection pool, ``concurrency`` requests in flight."""

    def __init__(self, config: EngineConfig, request: Request, cached: Any,
                 concurrency: int, rate_limit_rps: float):
        import ray

        self.config, self.request = config, request
        self.cached = ray.get(cached) if isinstance(cached, ray.ObjectRef) else cached
        self.concurrency, self.rate_limit_rps = concurrency, rate_limit_rps
        self._client = None

    async def __call__(self, batch: pa.Table) -> pa.Table:
        from include.llm.client import ChatClient

        if self._client is None:  # created on the actor's event loop
            self._client = ChatClient(self.config.base_url, self.config.api_key,
                                      self.config.model, self.concurrency, self.rate_limit_rps)
        results = await asyncio.gather(*(self._one(row) for row in batch.to_pylist()))
        return result_columns(batch, list(results))

    async def _one(self, row: dict[str, Any]) -> dict[str, Any]:
        messages, done = render(row, self.request, self.cached)
        if messages is None:
            return done
        out = await self._client.complete(messages, self.request)
        return {**done, "_llm_answer": out.raw,
                "_llm_parsed": None if out.error else json.dumps(out.parsed, sort_keys=True),
                "_llm_error": out.error, "_llm_attempts": out.attempts,
                "_llm_prompt_tokens": out.prompt_tokens,
                "_llm_completion_tokens": out.completion_tokens,
                "_llm_latency_ms": out.latency_ms, "_llm_cached": False}


class OpenAIEngine(LLMEngine):
    def generate(self, ds, request: Request, cached: dict[str, str]):
        import ray

        per_worker = math.ceil(self.concurrency / self.workers)
        rps = self.rate_limit_rps / self.workers if self.rate_limit_rps else 0.0
        return ds.map_batches(
            OpenAIWorker, batch_format="pyarrow",
            batch_size=max(self.batch_size, per_worker),
            fn_constructor_kwargs={"config": self.config, "request": request,
                                   "cached": ray.put(cached), "concurrency": per_worker,
                                   "rate_limit_rps": rps},
            # Several blocks in flight per actor, all on its one event loop, so the
            # concurrency slots stay full across block boundaries. I/O-bound: a
            # fraction of a CPU each, so the pool fits beside other stages.
            compute=ray.data.ActorPoolStrategy(size=self.workers,
                                               max_concurrent_calls_per_actor=4),
            num_cpus=0.25)
