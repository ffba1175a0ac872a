"""LLM engines behind one interface, picked once from the resolved config.

``engine.start()`` starts the engine's workers without waiting for them, so
they come up while the stage reads its input. ``engine.answer(table, request,
cached)`` takes the stage's rows as an Arrow table on the driver, renders each
row's prompt, answers it (from ``cached`` when the prompt's hash is there,
else from the model) and yields the rows, with the result columns of
``include.llm.answers.RESULT_COLUMNS``, in batches as they are answered, so
the caller can store answers while the stage runs. It never drops a row: a
row whose answer stays invalid after the retry budget comes back with
``_llm_error`` and the raw answer. ``engine.stop()`` releases the workers.

- ``OpenAIEngine`` (``include.llm.openai_engine``): any OpenAI-compatible
  endpoint, from a pool of warm async Ray actors.
- ``VLLMEngine`` (``include.llm.vllm_engine``): in-cluster GPU engines through
  ``ray.data.llm``.

Each is imported only when chosen.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from include.llm.answers import RESULT_COLUMNS, Request, input_hash
from include.llm.client import RequestRejected, public_url
from include.llm.credentials import EngineConfig

if TYPE_CHECKING:
    import pyarrow as pa


class PromptTemplateError(RuntimeError):
    """The stage's template cannot render a row: a set-up error, like a refused request."""


def endpoint_id(config: EngineConfig) -> str:
    """Who answers: the engine kind and where it is, so that two endpoints
    serving the same model name never share cached answers."""
    where = public_url(config.base_url) if config.base_url else config.model
    return f"{config.kind}:{where}"


def configuration_error(exc: BaseException | None) -> Exception | None:
    """The set-up error behind ``exc`` (Ray wraps a worker's exception), if any."""
    for _ in range(8):
        if exc is None:
            return None
        inner = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError
        if isinstance(inner, BaseException):
            exc = inner
            continue
        if isinstance(exc, (RequestRejected, PromptTemplateError)):
            return exc
        exc = exc.__cause__
    return None


class LLMEngine:
    def __init__(self, config: EngineConfig, *, concurrency: int = 8, workers: int = 1,
                 batch_size: int = 32, rate_limit_rps: float = 0.0):
        self.config = config
        self.concurrency = max(1, int(concurrency))
        self.workers = max(1, int(workers))
        self.batch_size = max(1, int(batch_size))
        self.rate_limit_rps = float(rate_limit_rps or 0.0)

    def start(self) -> None:
        """Start the workers now (engines whose workers start lazily do nothing)."""

    def answer(self, table: pa.Table, request: Request,
               cached: dict[str, str]) -> Iterator[pa.Table]:  # pragma: no cover
        raise NotImplementedError

    def stop(self) -> None:
        """Release the workers."""


def make_engine(config: EngineConfig, **kwargs: Any) -> LLMEngine:
    if config.kind == "vllm":
        from include.llm.vllm_engine import VLLMEngine

        return VLLMEngine(config, **kwargs)
    from include.llm.openai_engine import OpenAIEngine

    return OpenAIEngine(config, **kwargs)


def result_columns(batch: pa.Table, results: list[dict[str, Any]]) -> pa.Table:
    """``batch`` with the result columns appended (input columns keep their types)."""
    import pyarrow as pa

    for name, typ in RESULT_COLUMNS.items():
        values = [r.get(name) for r in results]
        arr = pa.array(values, type=pa.type_for_alias(typ))
        if name in batch.column_names:
            batch = batch.set_column(batch.column_names.index(name), name, arr)
        else:
            batch = batch.append_column(name, arr)
    return batch


def render(row: dict[str, Any], request: Request, cached: dict[str, str]
           ) -> tuple[list[dict[str, str]] | None, dict[str, Any]]:
    """(messages to send, partial result) or (None, finished result: cache hit or render error)."""
    try:
        messages = request.messages(row)
    except Exception as exc:  # noqa: BLE001 - any render failure is the template's
        # Rows share their columns, so a template that fails on one row is
        # wrong for the stage (a null it does not expect included: it should
        # say ``| default(...)``); failing beats quarantining every row.
        which = row.get("id", row.get("seed_id"))
        raise PromptTemplateError(f"prompt template error in {request.template.id} on row "
                                  f"{which!r}: {type(exc).__name__}: {exc}") from None
    key = input_hash(messages)
    if key in cached:
        return None, {"_llm_key": key, "_llm_answer": cached[key], "_llm_parsed": cached[key],
                      "_llm_attempts": 0, "_llm_prompt_tokens": 0,
                      "_llm_completion_tokens": 0, "_llm_cached": True}
    return messages, {"_llm_key": key}
