"""What every LLM op shares: its params, the cached engine call and its stats.

``run_llm`` resolves the engine (spec, Airflow connection, environment),
looks up the stage's cached answers, lets the engine answer the rest on Ray,
streams the answers back to the driver while appending new ones to the cache
(so an interrupted stage resumes where it stopped) and puts request, token,
latency and cost figures into ``ctx.extras["stats"]`` for the run summary.
"""
from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pyarrow as pa

from include.llm.answers import Request
from include.llm.cache import AnswerCache
from include.llm.credentials import resolve_engine
from include.llm.engine import make_engine
from include.prompts import load_template
from include.registry import StepContext

CACHE_FLUSH_ROWS = 256


def llm_params(template: str) -> dict[str, Any]:
    """JSON-schema properties every LLM op accepts (``template`` defaults to the op's own)."""
    return {
        "engine": {"type": "object", "default": {},
                   "description": "where the model is: {kind: openai|vllm, base_url, model, "
                                  "api_key_env, tensor_parallel_size, ...}; no secrets"},
        "model": {"type": ["string", "null"], "default": None},
        "template": {"type": "string", "default": template,
                     "description": "prompt template 'name' or 'name/vN' in include/prompts"},
        "concurrency": {"type": "integer", "minimum": 1, "default": 16,
                        "description": "requests in flight across all workers"},
        "workers": {"type": "integer", "minimum": 1, "default": 1,
                    "description": "warm model workers (Ray actors)"},
        "batch_size": {"type": "integer", "minimum": 1, "default": 32},
        "rate_limit_rps": {"type": "number", "minimum": 0, "default": 0,
                           "description": "max requests per second, 0 = unlimited"},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 60},
        "max_retries": {"type": "integer", "minimum": 0, "default": 4},
        "backoff_base_s": {"type": "number", "minimum": 0, "default": 0.5,
                           "description": "first back-off; doubles per retry, full jitter"},
        "backoff_cap_s": {"type": "number", "minimum": 0, "default": 20},
        "temperature": {"type": "number", "minimum": 0, "default": 0},
        "max_tokens": {"type": "integer", "minimum": 1, "default": 512},
        "response_format": {"enum": ["json_schema", "json_object"], "default": "json_schema"},
        "cache": {"type": "boolean", "default": True},
        "price_per_1m_input_tokens": {"type": "number", "minimum": 0, "default": 0},
        "price_per_1m_output_tokens": {"type": "number", "minimum": 0, "default": 0},
    }


def build_request(params: dict[str, Any], *, schema: dict[str, Any] | None = None,
                  variables: dict[str, Any] | None = None) -> Request:
    template = load_template(params["template"])
    return Request(template=template, schema=schema or template.schema,
                   variables=variables or {}, temperature=float(params["temperature"]),
                   max_tokens=int(params["max_tokens"]), max_retries=int(params["max_retries"]),
                   timeout_s=float(params["timeout_s"]),
                   backoff_base_s=float(params["backoff_base_s"]),
                   backoff_cap_s=float(params["backoff_cap_s"]),
                   response_format=params["response_format"])


def run_llm(ds, params: dict[str, Any], ctx: StepContext, request: Request) -> pa.Table:
    """Every row of ``ds`` with the ``_llm_*`` result columns, as one Arrow table."""
    t0 = time.time()
    config = resolve_engine(params.get("engine"), params.get("model"))
    engine = make_engine(config, concurrency=params["concurrency"], workers=params["workers"],
                         batch_size=params["batch_size"], rate_limit_rps=params["rate_limit_rps"])
    cache = AnswerCache(ctx.lake) if params["cache"] else None
    template_id, params_hash = request.template.id, request.params_hash()
    cached = cache.lookup(config.model, template_id, params_hash) if cache else {}

    tables, pending = [], []
    for batch in engine.generate(ds, request, cached).iter_batches(batch_format="pyarrow",
                                                                   batch_size=None):
        tables.append(batch)
        if cache is None:
            continue
        for r in batch.select(["_llm_key", "_llm_parsed", "_llm_cached", "_llm_prompt_tokens",
                               "_llm_completion_tokens"]).to_pylist():
            if r["_llm_parsed"] is not None and not r["_llm_cached"]:
                pending.append({"model": config.model, "template": template_id,
                                "params_hash": params_hash, "input_hash": r["_llm_key"],
                                "answer": r["_llm_parsed"],
                                "prompt_tokens": r["_llm_prompt_tokens"],
                                "completion_tokens": r["_llm_completion_tokens"]})
        if len(pending) >= CACHE_FLUSH_ROWS:
            cache.append(pending)
            pending = []
    if cache is not None:
        cache.append(pending)
    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    if table is None:
        from ray_jobs.engine import to_arrow

        table = to_arrow(ds)
        for name, typ in (("_llm_parsed", pa.string()), ("_llm_error", pa.string()),
                          ("_llm_answer", pa.string()), ("_llm_attempts", pa.int64())):
            table = table.append_column(name, pa.array([], typ))
    ctx.extras.setdefault("stats", {}).update(
        llm_stats(table, params, config.kind, config.model, template_id, time.time() - t0))
    return table


def llm_stats(table: pa.Table, params: dict[str, Any], kind: str, model: str, template: str,
              seconds: float) -> dict[str, Any]:
    def col(name: str) -> list:
        return table.column(name).to_pylist() if name in table.column_names else []

    cached = [bool(c) for c in col("_llm_cached")]
    attempts = [a or 0 for a in col("_llm_attempts")]
    latency = [lat for lat, c in zip(col("_llm_latency_ms"), cached) if lat is not None and not c]
    p_tok = sum(t or 0 for t in col("_llm_prompt_tokens"))
    c_tok = sum(t or 0 for t in col("_llm_completion_tokens"))
    asked = sum(1 for a, c in zip(attempts, cached) if a and not c)
    requests = sum(attempts)
    pct = ({f"p{q}": round(float(np.percentile(latency, q)), 1) for q in (50, 90, 99)}
           if latency else {})
    return {
        "engine": kind, "model": model, "template": template, "rows": table.num_rows,
        "cache_hits": sum(cached), "rows_asked": asked, "requests": requests,
        "retries": requests - asked, "failed": sum(1 for e in col("_llm_error") if e),
        "prompt_tokens": p_tok, "completion_tokens": c_tok, "latency_ms": pct,
        "cost_usd": round(p_tok * params["price_per_1m_input_tokens"] / 1e6
                          + c_tok * params["price_per_1m_output_tokens"] / 1e6, 6),
        "requests_per_s": round(requests / seconds, 2) if seconds else None,
        "seconds": round(seconds, 3),
    }


def failure_detail(row: dict[str, Any]) -> str:
    """The ``_detail`` of a row quarantined for its answer: the raw answer and why."""
    return json.dumps({"error": row.get("_llm_error"), "raw": row.get("_llm_answer"),
                       "attempts": row.get("_llm_attempts")}, sort_keys=True)


def quarantine_reason(error: str | None) -> str:
    return f"llm_answer_invalid: {error}" if error and error.startswith("malformed") \
        else f"llm_request_failed: {error}"
