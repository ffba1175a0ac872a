"""Any OpenAI-compatible endpoint, answered from a pool of warm async Ray actors.

The work is I/O-bound and the stage's rows are already on the driver (the
late funnel is small), so what costs time besides the requests is starting
the pool. Plain Ray actors rather than Ray Data's ``map_batches`` actor pool:
a Ray Data map worker imports Ray Data itself (3 s on an idle 2-core machine)
and starts only once the dataset executes, while an ``OpenAIWorker`` imports
our aiohttp client only and is launched by ``start()`` before the stage reads
its input, so its start overlaps that read.

The driver renders prompts and answers cache hits itself (cached rows never
travel) and keeps a sliding window of batches in flight on each actor, large
enough that all of the actor's ``concurrency`` request slots stay busy from
the first batch to the last: no ramp-up, no stall at batch boundaries. Each
actor runs its batches on one event loop sharing one connection pool and one
semaphore.
"""
from __future__ import annotations

import asyncio
import functools
import json
import math
from typing import TYPE_CHECKING, Any, Iterator

from include.llm.answers import Request
from include.llm.credentials import EngineConfig
from include.llm.engine import LLMEngine, render, result_columns

if TYPE_CHECKING:
    import pyarrow as pa

# Actors are I/O-bound: a fraction of a CPU each, so a pool fits beside other stages.
WORKER_CPUS = 0.25


class OpenAIWorker:
    """A warm actor: one client, one connection pool, ``concurrency`` requests in flight."""

    def __init__(self, config: EngineConfig, concurrency: int, rate_limit_rps: float):
        # The HTTP client and the schema validator are the slow imports of a
        # worker's start: done here, while the driver prepares the first batch.
        import aiohttp  # noqa: F401
        import jsonschema  # noqa: F401

        self.config, self.concurrency, self.rate_limit_rps = config, concurrency, rate_limit_rps
        self._client = None

    async def answer(self, prompts: list[list[dict[str, str]]],
                     request: Request) -> list[dict[str, Any]]:
        from include.llm.client import ChatClient

        if self._client is None:  # created on the actor's event loop
            self._client = ChatClient(self.config.base_url, self.config.api_key,
                                      self.config.model, self.concurrency, self.rate_limit_rps)
        outs = await asyncio.gather(*(self._client.complete(m, request) for m in prompts))
        return [{"_llm_answer": o.raw,
                 "_llm_parsed": None if o.error else json.dumps(o.parsed, sort_keys=True),
                 "_llm_error": o.error, "_llm_attempts": o.attempts,
                 "_llm_prompt_tokens": o.prompt_tokens,
                 "_llm_completion_tokens": o.completion_tokens,
                 "_llm_latency_ms": o.latency_ms, "_llm_cached": False} for o in outs]


@functools.cache
def _remote_worker():
    import ray

    return ray.remote(num_cpus=WORKER_CPUS)(OpenAIWorker)


class OpenAIEngine(LLMEngine):
    def __init__(self, config: EngineConfig, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.per_worker = math.ceil(self.concurrency / self.workers)
        # Rows queued per actor: two rounds of its request slots plus a batch,
        # so slots are refilled while a finished batch travels back.
        self.window = math.ceil(2 * self.per_worker / self.batch_size) + 1
        self._actors: list = []

    def start(self) -> None:
        if self._actors:
            return
        rps = self.rate_limit_rps / self.workers if self.rate_limit_rps else 0.0
        self._actors = [_remote_worker().remote(self.config, self.per_worker, rps)
                        for _ in range(self.workers)]

    def stop(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors = []

    def answer(self, table: pa.Table, request: Request,
               cached: dict[str, str]) -> Iterator[pa.Table]:
        import ray

        self.start()
        request_ref = ray.put(request)
        load = [0] * len(self._actors)
        inflight: dict[Any, tuple[int, pa.Table, list[dict[str, Any]], list[int]]] = {}

        def collect() -> pa.Table:
            [ref], _ = ray.wait(list(inflight), num_returns=1)
            actor, batch, results, todo = inflight.pop(ref)
            load[actor] -= 1
            for i, answer in zip(todo, ray.get(ref)):
                results[i].update(answer)
            return result_columns(batch, results)

        try:
            for start in range(0, table.num_rows, self.batch_size):
                batch = table.slice(start, self.batch_size)
                results, todo, prompts = [], [], []
                for i, row in enumerate(batch.to_pylist()):
                    messages, result = render(row, request, cached)
                    results.append(result)
                    if messages is not None:
                        todo.append(i)
                        prompts.append(messages)
                if not todo:
                    yield result_columns(batch, results)
                    continue
                while min(load) >= self.window:
                    yield collect()
                actor = load.index(min(load))
                ref = self._actors[actor].answer.remote(prompts, request_ref)
                inflight[ref] = (actor, batch, results, todo)
                load[actor] += 1
            while inflight:
                yield collect()
        finally:
            self.stop()
