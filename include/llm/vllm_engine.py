"""In-cluster GPU engines through Ray Data's LLM processors (``ray.data.llm``).

``vLLMEngineProcessorConfig`` + ``build_processor`` run vLLM replicas as a
warm actor pool with continuous batching; answers are constrained to the
schema with guided decoding (``structured_outputs={"json": schema}``) and then
validated like any other engine's. Rows whose answer is still invalid are
sent through the processor again, up to ``max_retries`` passes, then come
back with ``_llm_error``. vLLM and its Ray Data stages are imported only when
this engine is chosen (``engine: {kind: vllm, model: ...}``); they need a GPU.
The replicas start when the dataset executes, so ``start()`` is a no-op here.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import pyarrow as pa

from include.llm.answers import Request
from include.llm.credentials import VLLM_OPTIONS
from include.llm.engine import LLMEngine, render, result_columns


class VLLMEngine(LLMEngine):
    def _processor(self, request: Request):
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        # Only the closed set of credentials.VLLM_OPTIONS reaches vLLM; nothing
        # from a spec is passed through as free-form engine kwargs.
        engine_kwargs = {"tensor_parallel_size": 1, "max_model_len": 4096,
                         **{k: self.config.options[k] for k in VLLM_OPTIONS
                            if k in self.config.options}}
        cfg = vLLMEngineProcessorConfig(
            model_source=self.config.model, engine_kwargs=engine_kwargs,
            concurrency=self.workers, batch_size=self.batch_size)
        sampling = {"temperature": request.temperature, "max_tokens": request.max_tokens,
                    "structured_outputs": {"json": request.schema}}

        def pre(row: dict[str, Any]) -> dict[str, Any]:
            return {**row, "messages": json.loads(row["_llm_messages"]),
                    "sampling_params": sampling}

        def post(row: dict[str, Any]) -> dict[str, Any]:
            raw = row.get("generated_text")
            parsed, err = request.validate(raw)
            keep = {k: v for k, v in row.items() if k not in _VLLM_COLUMNS}
            return {**keep, "_llm_answer": raw,
                    "_llm_parsed": None if err else json.dumps(parsed, sort_keys=True),
                    "_llm_error": f"malformed answer: {err}" if err else None,
                    "_llm_attempts": int(row.get("_llm_attempts") or 0) + 1,
                    "_llm_prompt_tokens": int(row.get("num_input_tokens") or 0),
                    "_llm_completion_tokens": int(row.get("num_generated_tokens") or 0),
                    "_llm_latency_ms": float(row.get("time_taken_llm") or 0.0) * 1000}

        return build_processor(cfg, preprocess=pre, postprocess=post)

    def answer(self, table: pa.Table, request: Request,
               cached: dict[str, str]) -> Iterator[pa.Table]:
        import ray

        yield from self._generate(ray.data.from_arrow(table), request, cached).iter_batches(
            batch_format="pyarrow", batch_size=None)

    def _generate(self, ds, request: Request, cached: dict[str, str]):
        def prepare(batch: pa.Table) -> pa.Table:
            results, messages = [], []
            for row in batch.to_pylist():
                msgs, done = render(row, request, cached)
                messages.append(json.dumps(msgs) if msgs is not None else None)
                results.append(done)
            return result_columns(batch, results).append_column(
                "_llm_messages", pa.array(messages, pa.string()))

        ds = ds.map_batches(prepare, batch_format="pyarrow")
        done = ds.filter(lambda r: r["_llm_messages"] is None)
        todo = ds.filter(lambda r: r["_llm_messages"] is not None)
        processor = self._processor(request)
        for attempt in range(request.max_retries + 1):
            answered = processor(todo).materialize()
            ok = answered.filter(lambda r: r["_llm_error"] is None)
            done = done.union(ok)
            todo = answered.filter(lambda r: r["_llm_error"] is not None)
            if attempt == request.max_retries or todo.count() == 0:
                break
        return done.union(todo).drop_columns(["_llm_messages"])


# Columns ray.data.llm's stages add that our rows do not carry on.
_VLLM_COLUMNS = {"messages", "sampling_params", "generated_text", "generated_tokens",
                 "num_input_tokens", "num_generated_tokens", "time_taken_llm", "prompt",
                 "prompt_token_ids", "request_id", "params", "embeddings", "metrics",
                 "batch_uuid", "finish_reason", "tokenized_prompt", "__inference_error__"}
