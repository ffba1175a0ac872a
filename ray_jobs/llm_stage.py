"""What every LLM op shares: its params, the cached engine call and its stats.

``run_llm`` resolves the engine (spec, Airflow connection, environment),
looks up the stage's cached answers, lets the engine answer the rest on Ray
and stores new answers in the cache as they arrive (every
``CACHE_FLUSH_ROWS`` rows or ``CACHE_FLUSH_S`` seconds, and whatever has
arrived when the stage fails), so a retried Airflow task resumes where the
failed one stopped. Request, token, latency and cost figures go into
``ctx.extras["stats"]`` for the run summary.

A row whose answer stays malformed, or that the endpoint refuses for its own
size (HTTP 413, or 400/422 over the context length), is quarantined: asking
again cannot help. A refusal of the set-up — auth (401/403), an unknown model
or URL (404), a schema or response format the endpoint rejects (400/422) —
or a prompt template that cannot render fails the stage at the first
occurrence with the server's message (``include.llm.client.refusal``):
quarantining every row of a misconfigured stage would publish an empty
table as a success. Rows that fail because the endpoint is failing (5xx,
429, timeouts, connection errors) say nothing about the row, so when more
than ``max_failed_fraction`` of the stage's rows fail that way the stage
stops and fails instead of quarantining good data, and the orchestrator's
retry resumes from the cache.

Imports of numpy, pyarrow and the LLM client are inside the functions: the op
modules import this one, and DAG parsing loads the op catalogue.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from include.llm.credentials import ENGINE_SCHEMA
from include.registry import Op, StepContext

if TYPE_CHECKING:
    import pyarrow as pa

    from include.llm.answers import Request
    from include.llm.engine import LLMEngine

CACHE_FLUSH_ROWS = 256
CACHE_FLUSH_S = 10.0
# Errors that belong to the row, not to the endpoint (see module docstring).
ROW_ERRORS = ("malformed answer", "HTTP 400", "HTTP 413", "HTTP 422")


class LLMStageError(RuntimeError):
    pass


def llm_params(template: str) -> dict[str, Any]:
    """JSON-schema properties every LLM op accepts (``template`` defaults to the op's own)."""
    return {
        "engine": {**ENGINE_SCHEMA, "default": {}},
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
        "max_failed_fraction": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.1,
                                "description": "fail the stage (answers so far are cached) "
                                               "once more than this fraction of its rows fail "
                                               "because the endpoint does (5xx, 429, timeouts, "
                                               "connection errors), instead of quarantining them"},
        "temperature": {"type": "number", "minimum": 0, "default": 0},
        "max_tokens": {"type": "integer", "minimum": 1, "default": 512},
        "response_format": {"enum": ["json_schema", "json_object"], "default": "json_schema"},
        "cache": {"type": "boolean", "default": True},
        "price_per_1m_input_tokens": {"type": "number", "minimum": 0, "default": 0},
        "price_per_1m_output_tokens": {"type": "number", "minimum": 0, "default": 0},
    }


def build_request(params: dict[str, Any], *, schema: dict[str, Any] | None = None,
                  variables: dict[str, Any] | None = None) -> Request:
    from include.llm.answers import Request
    from include.prompts import load_template

    template = load_template(params["template"])
    return Request(template=template, schema=schema or template.schema,
                   variables=variables or {}, temperature=float(params["temperature"]),
                   max_tokens=int(params["max_tokens"]), max_retries=int(params["max_retries"]),
                   timeout_s=float(params["timeout_s"]),
                   backoff_base_s=float(params["backoff_base_s"]),
                   backoff_cap_s=float(params["backoff_cap_s"]),
                   response_format=params["response_format"])


def start_engine(params: dict[str, Any]) -> LLMEngine:
    """The stage's engine with its workers starting (not yet ready)."""
    from include.llm.credentials import resolve_engine
    from include.llm.engine import make_engine

    config = resolve_engine(params.get("engine"), params.get("model"))
    engine = make_engine(config, concurrency=params["concurrency"], workers=params["workers"],
                         batch_size=params["batch_size"], rate_limit_rps=params["rate_limit_rps"])
    engine.start()
    return engine


class LLMOp(Op):
    """An op answered by an LLM. The Ray engine calls ``prestart`` before it
    reads the step's input, so the model workers start during that read."""

    _engine: LLMEngine | None = None

    def prestart(self, params: dict[str, Any], ctx: StepContext) -> None:
        self._engine = start_engine(params)

    def ask(self, ds, params: dict[str, Any], ctx: StepContext, request: Request) -> pa.Table:
        engine, self._engine = self._engine, None
        return run_llm(ds, params, ctx, request, engine or start_engine(params))


def endpoint_failure(error: str | None) -> bool:
    return bool(error) and not error.startswith(ROW_ERRORS)


def run_llm(ds, params: dict[str, Any], ctx: StepContext, request: Request,
            engine: LLMEngine) -> pa.Table:
    """Every row of ``ds`` with the ``_llm_*`` result columns, as one Arrow table."""
    import pyarrow as pa

    from include.llm.answers import RESULT_COLUMNS
    from include.llm.cache import AnswerCache
    from include.llm.engine import configuration_error, endpoint_id
    from ray_jobs.engine import to_arrow

    t0 = time.time()
    model, template_id, params_hash = engine.config.model, request.template.id, \
        request.params_hash()
    endpoint = endpoint_id(engine.config)
    cache = AnswerCache(ctx.lake) if params["cache"] else None
    tables, pending, failed, flushed_at = [], [], [], time.time()
    try:
        cached = cache.lookup(endpoint, model, template_id, params_hash) if cache else {}
        table = to_arrow(ds)
        limit = params["max_failed_fraction"] * table.num_rows
        for batch in engine.answer(table, request, cached):
            tables.append(batch)
            cols = batch.select(["_llm_key", "_llm_parsed", "_llm_cached", "_llm_error",
                                 "_llm_prompt_tokens", "_llm_completion_tokens"]).to_pylist()
            if cache is not None:
                pending += [{"endpoint": endpoint, "model": model, "template": template_id,
                             "params_hash": params_hash,
                             "input_hash": r["_llm_key"], "answer": r["_llm_parsed"],
                             "prompt_tokens": r["_llm_prompt_tokens"],
                             "completion_tokens": r["_llm_completion_tokens"]}
                            for r in cols if r["_llm_parsed"] is not None and not r["_llm_cached"]]
            failed += [r["_llm_error"] for r in cols if endpoint_failure(r["_llm_error"])]
            if len(failed) > limit:
                kept = "are cached and a retry resumes from them" if cache else \
                    "are not kept (cache: false)"
                raise LLMStageError(
                    f"{ctx.op}: {len(failed)} of {table.num_rows} rows failed at the endpoint "
                    f"(last: {failed[-1]}), more than max_failed_fraction "
                    f"{params['max_failed_fraction']:g}; the answers received so far {kept}")
            if cache is not None and (len(pending) >= CACHE_FLUSH_ROWS
                                      or time.time() - flushed_at >= CACHE_FLUSH_S):
                cache.append(pending)
                pending, flushed_at = [], time.time()
    except Exception as exc:
        refused = configuration_error(exc)
        if refused is None:
            raise
        raise LLMStageError(f"{ctx.op}: stopped at the first refusal, nothing quarantined; "
                            f"fix the step's engine, model, template or response_format: "
                            f"{refused}") from None
    finally:
        try:
            if cache is not None:
                cache.append(pending)
        finally:
            engine.stop()
    if tables:
        out = pa.concat_tables(tables, promote_options="permissive")
    else:  # no rows: the input's columns and empty result columns
        out = table
        for name, typ in RESULT_COLUMNS.items():
            out = out.append_column(name, pa.array([], pa.type_for_alias(typ)))
    ctx.extras.setdefault("stats", {}).update(
        llm_stats(out, params, engine.config.kind, model, template_id, time.time() - t0))
    return out


def llm_stats(table: pa.Table, params: dict[str, Any], kind: str, model: str, template: str,
              seconds: float) -> dict[str, Any]:
    """The stage's figures for the run summary. ``requests`` counts every HTTP
    request sent (retries included); ``latency_ms`` are percentiles of each
    asked row's time to its final answer, retries and back-off included."""
    import numpy as np

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
